"""Pruning methods: which weights go (criteria x granularities x scope), as masks or as removed channels.

Registries: ``CRITERIA`` here, ``GRANULARITIES`` in :mod:`pruner_core.granularities`. Every function is
pure with respect to its inputs except :func:`apply_masks` and :func:`prune_channels`, which change the
module they are given in place (callers pass a copy when the original must survive).

SKELETON (session 2): signatures and docstrings fixed; bodies being filled in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import SpecError
from .granularities import GRANULARITIES, NM_DEFAULT


@dataclass(frozen=True)
class Criterion:
    """One importance criterion: higher score = more important = kept."""

    name: str
    granularities: frozenset[str]
    needs: str  # "weights" | "gradients" | "activations" | "bn"
    description: str


_ALL = frozenset(GRANULARITIES)
CRITERIA: dict[str, Criterion] = {
    c.name: c
    for c in (
        Criterion("l1", _ALL, "weights", "L1 norm of the weights in each group"),
        Criterion("l2", _ALL, "weights", "L2 norm of the weights in each group"),
        Criterion("random", _ALL, "weights", "seeded random scores (a baseline)"),
        Criterion("taylor", _ALL, "gradients", "first-order Taylor |w * dL/dw| summed over the group, from a few batches"),
        Criterion("apoz", frozenset({"channel"}), "activations", "1 - APoZ of the channel after its activation"),
        Criterion("bn_scale", frozenset({"channel"}), "bn", "|gamma| of the BatchNorm that follows the layer"),
        Criterion("wanda", frozenset({"unstructured", "nm"}), "activations", "|w| x L2 norm of its input feature"),
    )
}


def valid_pairs() -> list[tuple[str, str]]:
    """Every (granularity, criterion) pair that can be pruned with."""
    return [(g, c.name) for g in GRANULARITIES for c in CRITERIA.values() if g in c.granularities]


def check_pair(granularity: str, criterion: str) -> None:
    """Raise :class:`SpecError` naming the bad value and the valid choices when the pair is impossible."""
    if granularity not in GRANULARITIES:
        raise SpecError(f"unknown granularity '{granularity}'; valid: {', '.join(GRANULARITIES)}")
    if criterion not in CRITERIA:
        raise SpecError(f"unknown criterion '{criterion}'; valid: {', '.join(CRITERIA)}")
    if granularity not in CRITERIA[criterion].granularities:
        ok = ", ".join(c for c in CRITERIA if granularity in CRITERIA[c].granularities)
        pairs = "; ".join(f"{g}: {', '.join(c for gg, c in valid_pairs() if gg == g)}" for g in GRANULARITIES)
        raise SpecError(
            f"criterion '{criterion}' cannot prune at granularity '{granularity}'; with {granularity} use: {ok}. "
            f"Valid pairs: {pairs}"
        )


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


def scores(module: nn.Module, target: Target, data=None, *, batches: int = 4, batch_size: int = 64) -> dict[str, torch.Tensor]:
    """Importance of every group of every layer in ``target.ratios`` (higher = kept).

    Shapes: unstructured and nm -> the weight's shape; vector -> weight.shape[:-1]; kernel -> [out, in];
    channel -> [out] (for channel, coupled layers' scores are summed by :func:`plan_channels`, not here).
    ``data`` (a :class:`~pruner_core.data.Dataset`) is needed by taylor, apoz and wanda: the first
    ``batches * batch_size`` training samples are used.
    """
    raise NotImplementedError


def compute_masks(module: nn.Module, target: Target, data=None, *, layer_scores: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Boolean keep-masks shaped like each layer's weight (True = kept) for every layer in ``target.ratios``.

    Works for every granularity (for ``channel`` it is the mask of the rows that :func:`plan_channels` would
    remove, used by previews). Layerwise removes ``round(ratio * groups)`` lowest-scored groups per layer,
    like ``torch.nn.utils.prune``; global removes ``round(fraction * all groups)`` lowest across the layers.
    """
    raise NotImplementedError


def apply_masks(module: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Zero the pruned weights of ``module`` in place (no hooks, no reparametrisation)."""
    raise NotImplementedError


def plan_channels(module: nn.Module, target: Target, example: torch.Tensor, data=None) -> list[dict]:
    """Which output channels to remove, as plain data: ``[{"layer": name, "channels": [int, ...]}, ...]``.

    One entry per coupled group (layers tied by residual additions move together; their scores are summed),
    named by the group's first layer in definition order. ``example`` is one input batch for tracing.
    """
    raise NotImplementedError


def prune_channels(module: nn.Module, plan: list[dict], example: torch.Tensor) -> None:
    """Physically remove the channels of ``plan`` from ``module`` in place, with torch-pruning.

    Applying the same plan to a fresh copy of the same base model gives the same architecture, so a
    pruned model is rebuilt from (base model, plan, pruned state dict) without unpickling anything.
    """
    raise NotImplementedError
