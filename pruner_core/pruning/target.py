"""What to prune, resolved against one model: granularity, criterion, scope and a ratio per layer.

:meth:`~pruner_core.pruning.recipe.Recipe.target` makes one from a recipe; :mod:`pruner_core.pruning.select` turns it
into masks and :mod:`pruner_core.pruning.channels` into a channel plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from pruner_core.config import options
from pruner_core.errors import SpecError
from pruner_core.graph.layers import Layer, prunable_layers
from pruner_core.graph.model_graph import ModelGraph
from pruner_core.pruning.criteria import check_pair
from pruner_core.pruning.granularities import GRANULARITIES, NM_DEFAULT, LayerFacts, check_nm

SCOPES = tuple(options.SCOPES)


@dataclass
class Target:
    """What to prune, resolved against one model: the recipe minus fine-tuning and schedule.

    ``ratios`` maps every layer to prune (excluded layers are absent) to the fraction removed: of its weights,
    or of its output channels for ``channel``. With ``scope == "global"`` the ratios' weighted mean is the
    global fraction and one threshold is used across the listed layers. ``nm`` ignores ratios (N:M fixes them).
    """

    granularity: str
    criterion: str
    scope: str = "layerwise"
    ratios: dict[str, float] = field(default_factory=dict)
    nm: tuple[int, int] = NM_DEFAULT
    round_to: int | None = None  # channel: keep a multiple of this many channels
    seed: int = 0


def check_target(target: Target) -> None:
    """Refuse an impossible target (pair, scope, N:M, round_to) with a :class:`SpecError` naming the bad value."""
    check_pair(target.granularity, target.criterion)
    if target.scope not in SCOPES:
        raise SpecError(f"unknown scope '{target.scope}'; valid: {', '.join(SCOPES)}")
    if target.granularity == "nm":
        check_nm(*target.nm)
    round_to = target.round_to
    if round_to is not None and (isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1):
        raise SpecError(f"round_to must be a whole number of channels >= 1 (or None); got {round_to!r}")


def check_ratio(name: str, ratio) -> None:
    """A fraction removed must be a number in [0, 1)."""
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 <= ratio < 1:
        raise SpecError(f"layer '{name}': the fraction removed must be in [0, 1); got {ratio!r}")


def resolve(module: nn.Module, target: Target, graph: ModelGraph | None = None) -> list[Layer]:
    """The layers of ``target.ratios`` in definition order, each checked against the granularity (with what the
    model's ``graph`` knows: output layers, layers that follow a concatenation).

    Raises:
        SpecError: an unknown layer, a bad ratio, or a layer the granularity does not apply to.
    """
    layers = prunable_layers(module)
    known = [name for name, _, _ in layers]
    for name, ratio in target.ratios.items():
        if name not in known:
            shown = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
            raise SpecError(f"layer '{name}' is not a prunable layer (Conv1d, Conv2d, Linear) of the model; prunable: {shown}")
        check_ratio(name, ratio)
    eager = not isinstance(module, torch.jit.ScriptModule)
    chosen = [layer for layer in layers if layer[0] in target.ratios]
    granularity = GRANULARITIES[target.granularity]
    for name, mod, kind in chosen:
        facts = LayerFacts(kind, tuple(mod.weight.shape), eager, graph is not None and name in graph.outputs,
                           follows=graph.follows.get(name, ()) if graph else (),
                           attention=graph.attention.get(name, ()) if graph else ())
        reason = granularity.why_not(facts, target.nm)
        if reason:
            raise SpecError(f"layer '{name}' cannot be pruned at granularity '{target.granularity}': {reason}")
    return chosen
