"""The units a scan prunes one at a time, each with how to prune it at a ratio and how to put it back.

A unit is a prunable layer the granularity applies to (pruned by a mask), or for ``channel`` a coupled group of
layers whose output channels go together. Channel removal is emulated by zeroing the input channels of every layer
that reads the removed channels (found with the work model's live graph): the removed channels then influence
nothing, which is what physical removal computes, at the cost of a weight copy instead of a graph surgery per ratio.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from pruner_core.errors import SpecError
from pruner_core.graph.layers import prunable_layers
from pruner_core.graph.model_graph import ModelGraph
from pruner_core.io.data import Dataset
from pruner_core.pruning.describe import LayerInfo
from pruner_core.pruning.granularities import GRANULARITIES
from pruner_core.pruning.select import Unit, block_removals, compute_masks, keep_lowest_removed, round_channels, scores
from pruner_core.pruning.target import Target
from pruner_core.sensitivity.result import UnitCurve


@dataclass
class ScanUnit:
    """How to prune one unit of the work model at a ratio, and how to put it back."""

    curve: UnitCurve
    changed: set[str]  # modules whose weights change (decides where the graph is split)
    apply: Callable[[float], int | None]  # prunes at a ratio, returns the kept channels (channel) or None
    saved: dict[str, torch.Tensor]  # original weights of the changed modules

    def restore(self, modules: dict[str, nn.Module]) -> None:
        """Copy the saved weights back into ``modules`` (by name)."""
        with torch.no_grad():
            for name, w in self.saved.items():
                modules[name].weight.copy_(w)


def layer_table(module: nn.Module, infos: list[LayerInfo], granularity: str, criterion: str) -> dict[str, dict]:
    """Per prunable layer: ``type``, ``shape``, ``weights``, ``flops``, ``out``, ``in``, ``groups`` (how many groups
    of weights the granularity and criterion remove from), ``is_output``, ``group`` (coupled group id) and
    ``applies`` (whether the granularity applies to it): what the allocation needs to predict without the model."""
    table = {}
    mods = {name: mod for name, mod, _ in prunable_layers(module)}
    for info in infos:
        w = mods[info.name].weight
        shape = list(w.shape)
        n = w.numel()
        if granularity == "unstructured" and criterion == "wanda":
            groups = n // shape[0]  # wanda removes the same share of every output row
        else:
            groups = math.prod(shape[: GRANULARITIES[granularity].kept_dims(len(shape))])
        table[info.name] = {
            "type": info.type, "shape": shape, "weights": n, "flops": info.flops, "out": shape[0],
            "in": shape[1] if len(shape) > 1 else 1, "groups": groups, "is_output": info.is_output,
            "group": info.group, "applies": info.granularities.get(granularity) is None,
        }
    return table


def mask_units(work: nn.Module, infos: list[LayerInfo], table: dict, settings: dict, data: Dataset,
               modules: dict[str, nn.Module]) -> list[ScanUnit]:
    """One unit per layer the (mask) granularity applies to; scores are computed once, on ``work`` as it is now.

    ``modules`` is read when a unit is applied, so it may be updated later to name the modules actually evaluated.
    """
    g, c = settings["granularity"], settings["criterion"]
    names = [i.name for i in infos if table[i.name]["applies"]]
    if not names:
        return []
    layer_scores = scores(work, Target(g, c, ratios={n: 0.5 for n in names}), data)

    def pruner(name: str):
        def apply(ratio: float) -> None:
            mask = compute_masks(work, Target(g, c, ratios={name: ratio}), data, layer_scores={name: layer_scores[name]})[name]
            with torch.no_grad():
                modules[name].weight.mul_(mask.to(modules[name].weight.dtype))

        return apply

    return [
        ScanUnit(
            UnitCurve(name, [name], table[name]["weights"], table[name]["flops"], table[name]["is_output"]),
            {name}, pruner(name), {name: modules[name].weight.detach().clone()},
        )
        for name in names
    ]


def channel_units(work: nn.Module, infos: list[LayerInfo], table: dict, settings: dict, data: Dataset,
                  modules: dict[str, nn.Module], graph: ModelGraph) -> list[ScanUnit]:
    """One unit per coupled group whose members the channel granularity all applies to; applying it at a ratio zeroes
    the readers' input channels of the group's lowest-scored output channels (scores summed over the members); the
    unit that makes attention heads loses whole heads, as channel pruning removes them. ``graph`` is ``work``'s
    live graph (``work`` opened for head removal).

    Raises:
        SpecError: a reader is a grouped convolution (the emulation zeroes whole input channels: groups=1 only).
    """
    c = settings["criterion"]
    groups: dict[int, list[str]] = {}
    for info in infos:
        groups.setdefault(info.group, []).append(info.name)
    chosen = [members for members in groups.values() if all(table[m]["applies"] for m in members)]
    if not chosen:
        return []
    all_members = [m for members in chosen for m in members]
    member_scores = scores(work, Target("channel", c, ratios={m: 0.5 for m in all_members}), data)
    graph.require_coupling()
    units = []
    for members in chosen:
        out = modules[members[0]].weight.shape[0]
        total = sum(member_scores[m] for m in members)

        def consumers_of(chans: list[int], root=members[0]) -> dict[str, list[int]]:
            found = graph.consumers(root, chans)
            for name in found:
                if getattr(modules[name], "groups", 1) != 1:
                    raise SpecError(f"layer '{name}' is a grouped convolution; the channel scan supports groups=1 only")
            return found

        readers = list(consumers_of([0]))

        blocks = graph.head_blocks(members[0])  # an attention's heads: they go whole

        def apply(ratio: float, total=total, out=out, consumers_of=consumers_of, blocks=blocks,
                  root=members[0]) -> int:
            if blocks:
                chans = block_removals(Unit(root, total, ratio, blocks=blocks), round(ratio * out))
            else:
                n = round_channels(out, round(ratio * out), None)
                chans = torch.nonzero(~keep_lowest_removed(total, n)).flatten().tolist()
            if chans:
                with torch.no_grad():
                    for name, cols in consumers_of(chans).items():
                        modules[name].weight[:, cols] = 0
            return out - len(chans)

        curve = UnitCurve(
            members[0], list(members), sum(table[m]["weights"] for m in members),
            _sum_or_none(table[m]["flops"] for m in members), False, out, readers, kept_channels=[],
        )
        units.append(ScanUnit(curve, set(readers), apply, {r: modules[r].weight.detach().clone() for r in readers}))
    return units


def _sum_or_none(values: Iterable[int | None]) -> int | None:
    values = list(values)
    return None if any(v is None for v in values) else int(sum(values))
