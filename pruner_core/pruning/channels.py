"""Channel pruning: which output channels go (a plan that is plain data), and their physical removal.

A plan is ``[{"layer": name, "channels": [int, ...]}, ...]``, one entry per coupled group, so a pruned model is
rebuilt from (base model, plan, pruned state dict) without unpickling anything. Removal is torch-pruning's, through
the model's one :class:`~pruner_core.graph.model_graph.ModelGraph`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pruner_core.errors import SpecError
from pruner_core.graph.layers import Layer, prunable_layers
from pruner_core.graph.model_graph import ModelGraph, graph_of, live_graph
from pruner_core.pruning.select import Unit, channel_removals, global_fraction, score_stream
from pruner_core.pruning.target import Target, check_target, resolve


def plan_channels(module: nn.Module, target: Target, example: torch.Tensor, data=None, *,
                  graph: ModelGraph | None = None) -> list[dict]:
    """Which output channels to remove, as plain data: ``[{"layer": name, "channels": [int, ...]}, ...]``.

    One entry per coupled group (layers tied by residual additions move together; their scores are summed),
    named by the group's first layer in definition order. ``example`` is one input batch for tracing.

    A group is pruned when any member is in ``target.ratios``; its channel ratio is that of its first listed
    member. Groups losing no channel are left out. Indices refer to the unpruned model.

    Args:
        module: the model (not modified).
        target: a ``channel`` target; ``round_to`` keeps a multiple of that many channels.
        example: one input batch, for torch-pruning's dependency graph.
        data: calibration data (taylor, apoz).
        graph: the module's graph when at hand (else :func:`~pruner_core.graph.model_graph.graph_of`, cached).

    Returns:
        The plan, JSON-serialisable, for :func:`prune_channels`.

    Raises:
        SpecError: a target that is not ``channel``, a listed layer whose outputs are the model's outputs,
            a model torch-pruning cannot trace, or anything :func:`scores` refuses.
    """
    check_target(target)
    if target.granularity != "channel":
        raise SpecError(f"plan_channels removes channels; got granularity '{target.granularity}' (use compute_masks)")
    graph = graph or graph_of(module, tuple(example.shape[1:]))
    graph.require_coupling()
    module = graph.channel_form()  # the same layers, attention opened where its heads can go
    everything = prunable_layers(module)
    group_of, outputs = graph.group_of, graph.outputs
    layers = resolve(module, target, graph)
    if not layers:
        return []
    groups: dict[int, list[Layer]] = {}
    for layer in everything:
        groups.setdefault(group_of[layer[0]], []).append(layer)
    chosen = [members for members in groups.values() if any(name in target.ratios for name, _, _ in members)]
    for members in chosen:
        for name, _, _ in members:
            if name in outputs:
                raise SpecError(f"layer '{name}' is coupled with '{members[0][0]}' but its outputs are the model's outputs")
    members_scores = dict(score_stream(module, [m for members in chosen for m in members], target, data))
    units = [
        Unit(
            members[0][0],
            sum(members_scores[name] for name, _, _ in members),
            next(target.ratios[name] for name, _, _ in members if name in target.ratios),
            math.lcm(*(graph.multiple_of.get(name, 1) for name, _, _ in members)),
            graph.head_blocks(members[0][0]),
        )
        for members in chosen
    ]
    removed = channel_removals(units, target, global_fraction(layers, target.ratios))
    plan = [{"layer": name, "channels": chans} for name, chans in removed.items() if chans]
    if not plan and target.round_to and any(u.ratio > 0 for u in units):
        widest = max(u.scores.numel() for u in units)
        raise SpecError(f"round_to {target.round_to} keeps every channel of every group (the widest has {widest}), so "
                        f"nothing would be pruned; use a round_to below {widest}, or none")
    return plan


def prune_channels(module: nn.Module, plan: list[dict], example: torch.Tensor, *, graph: ModelGraph | None = None) -> None:
    """Physically remove the channels of ``plan`` from ``module`` in place, with torch-pruning.

    Applying the same plan to a fresh copy of the same base model gives the same architecture, so a
    pruned model is rebuilt from (base model, plan, pruned state dict) without unpickling anything.

    Args:
        module: the unpruned model the plan was made for; changed in place (its modes are kept), attention
            opened for head removal first (:func:`~pruner_core.graph.head_forms.open_heads`), even for an empty plan,
            so a channel run's weights always load into the module this gives.
        plan: from :func:`plan_channels`.
        example: one input batch, for torch-pruning's dependency graph.
        graph: a :func:`~pruner_core.graph.model_graph.live_graph` bound to ``module`` (built here when not given);
            pass the same one to every round that prunes the same module.

    Raises:
        SpecError: a plan naming an unknown layer, channels out of range, or every channel of a layer, or a model
            torch-pruning cannot trace.
    """
    if graph is None or not graph.bound_to(module):
        graph = live_graph(module, tuple(example.shape[1:]))  # opens attention in place (graph.head_forms)
    graph.require_coupling()
    modules = dict(module.named_modules())
    for entry in plan:
        name, chans = entry.get("layer"), entry.get("channels")
        layer = modules.get(name) if isinstance(name, str) else None
        if not isinstance(layer, nn.Linear | nn.Conv1d | nn.Conv2d):
            raise SpecError(f"the plan names '{name}', which is not a Conv1d, Conv2d or Linear layer of the model")
        out = layer.weight.shape[0]
        if not isinstance(chans, list) or not all(isinstance(c, int) and 0 <= c < out for c in chans):
            raise SpecError(f"layer '{name}': channels must be a list of indices in [0, {out}); got {chans!r}")
        if len(set(chans)) >= out:
            raise SpecError(f"layer '{name}': the plan removes all {out} output channels")
    if plan:
        graph.remove_channels(plan)
