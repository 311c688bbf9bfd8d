"""Selection: scores and ratios in, keep-masks out (True = kept), for every granularity and scope.

Every function is pure with respect to its inputs except :func:`apply_masks`, which zeroes the weights of the
module it is given in place. Ties are removed in flattened layer order.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from pruner_core.errors import SpecError
from pruner_core.graph.layers import Layer, layer_lookup
from pruner_core.graph.model_graph import graph_of
from pruner_core.pruning.criteria import CRITERIA, ScoreJob
from pruner_core.pruning.granularities import GRANULARITIES
from pruner_core.pruning.target import Target, check_target, resolve


def expand(group_keep: torch.Tensor, weight_shape: torch.Size) -> torch.Tensor:
    """A group keep-mask broadcast to the weight's shape (groups index the leading dimensions)."""
    if group_keep.shape == weight_shape:
        return group_keep
    extra = len(weight_shape) - group_keep.dim()
    return group_keep.reshape(*group_keep.shape, *([1] * extra)).expand(weight_shape).contiguous()


def score_stream(
    module: nn.Module,
    layers: list[Layer],
    target: Target,
    data,
    given: dict[str, torch.Tensor] | None = None,
    batches: int = 4,
    batch_size: int = 64,
) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, group scores) per layer in ``layers`` order; lazily where the criterion allows (saves memory)."""
    granularity = GRANULARITIES[target.granularity]
    if given is None:
        job = ScoreJob(module, layers, granularity, target.criterion, target.seed, data, batches, batch_size)
        yield from CRITERIA[target.criterion].score(job)
        return
    for name, mod, _ in layers:
        expected = granularity.group_shape(mod.weight.shape)
        s = given.get(name)
        if s is None or tuple(s.shape) != expected:
            got = "nothing" if s is None else f"shape {list(s.shape)}"
            raise SpecError(f"layer '{name}': scores must have shape {list(expected)}; got {got}")
        yield name, s


def keep_all_but_lowest(parts: list[torch.Tensor], k: int) -> list[torch.Tensor]:
    """Keep-masks of score tensors with exactly the ``k`` lowest scores across all of them removed.

    The k-th smallest score is found by O(n) selection (numpy's introselect on one concatenated copy, several
    times faster than ``torch.kthvalue`` on CPU and far cheaper than sorting); ties at that threshold are
    removed first in flattened order (parts in the given order), the last tied ones are kept.
    """
    n = sum(p.numel() for p in parts)
    if k <= 0 or k >= n:
        return [torch.full(p.shape, k <= 0, dtype=torch.bool) for p in parts]
    flat = torch.cat([p.detach().reshape(-1).cpu() for p in parts])  # a copy: partitioned in place below
    values = flat.numpy()
    values.partition(k - 1)  # the k-th smallest in place, the smaller before it, the larger or equal after
    threshold = torch.tensor(values[k - 1], dtype=flat.dtype)
    above = values[k:]
    extra = int((above == values[k - 1]).sum()) if above.min() == values[k - 1] else 0  # tied beyond the k
    del flat, values
    keeps = [p > threshold for p in parts]
    for p, keep in zip(reversed(parts), reversed(keeps), strict=True):
        if extra <= 0:
            break
        tied = torch.nonzero(p.reshape(-1) == threshold).flatten()[-extra:]
        keep.view(-1)[tied] = True
        extra -= tied.numel()
    return keeps


def keep_lowest_removed(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Keep-mask of one score tensor with exactly its ``k`` lowest removed (see :func:`keep_all_but_lowest`)."""
    return keep_all_but_lowest([scores], k)[0]


def keep_per_row(score: torch.Tensor, ratio: float) -> torch.Tensor:
    """Keep-mask removing the lowest ``ratio`` of every output row (Wanda's comparison group)."""
    rows = score.reshape(score.shape[0], -1)
    k = round(ratio * rows.shape[1])
    keep = torch.ones_like(rows, dtype=torch.bool)
    if k:
        keep.scatter_(1, torch.argsort(rows, dim=1, stable=True)[:, :k], False)
    return keep.reshape(score.shape)


def keep_nm(score: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep the ``n`` best of every ``m`` consecutive input weights (for conv: per output and kernel position)."""
    along_in = score.movedim(1, -1)  # [out, *kernel, in]; a Linear weight is already [out, in]
    groups = along_in.reshape(*along_in.shape[:-1], -1, m)
    best = torch.argsort(groups, dim=-1, descending=True, stable=True)[..., :n]
    keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, best, True)
    return keep.reshape(along_in.shape).movedim(-1, 1).contiguous()


def global_fraction(layers: list[Layer], ratios: dict[str, float]) -> float:
    """The fraction of all weights one global threshold removes: the parameter-weighted mean of the ratios."""
    values = [ratios[name] for name, _, _ in layers]
    if len(set(values)) == 1:
        return values[0]  # exact, so round(fraction * n) matches torch's own count
    sizes = [mod.weight.numel() for _, mod, _ in layers]
    return sum(r * s for r, s in zip(values, sizes, strict=True)) / sum(sizes)


def global_keep(stream: Iterator[tuple[str, torch.Tensor]], fraction: float) -> dict[str, torch.Tensor]:
    """One threshold across every layer's group scores: ``round(fraction * all groups)`` lowest removed."""
    layer_scores = dict(stream)
    n = sum(s.numel() for s in layer_scores.values())
    keeps = keep_all_but_lowest(list(layer_scores.values()), round(fraction * n))
    return dict(zip(layer_scores, keeps, strict=True))


@dataclass
class Unit:
    """Output channels removed together: one layer's, or a coupled group's (scores summed over its members)."""

    name: str
    scores: torch.Tensor  # [out]
    ratio: float
    multiple: int = 1  # the channels kept must be a multiple of this (a GroupNorm's number of groups)
    blocks: list[list[int]] | None = None  # channels that go only together (an attention head's q, k, v rows)


def round_channels(out: int, n_remove: int, round_to: int | None) -> int:
    """Channels to remove so that a multiple of ``round_to`` (rounded up) and at least one (or round_to) stay."""
    keep = out - n_remove
    if round_to:
        keep = max(-(-keep // round_to) * round_to, round_to)
    return out - min(max(keep, 1), out)


def channel_removals(units: list[Unit], target: Target, fraction: float) -> dict[str, list[int]]:
    """The channels each unit loses: its own ratio (layerwise) or its share of one global threshold."""
    if target.scope == "global":
        total = sum(u.scores.numel() for u in units)
        keeps = keep_all_but_lowest([u.scores.float() for u in units], round(fraction * total))
        counts = [int(torch.count_nonzero(~keep)) for keep in keeps]
    else:
        counts = [round(u.ratio * u.scores.numel()) for u in units]
    removed = {}
    for unit, count in zip(units, counts, strict=True):
        if unit.blocks:
            removed[unit.name] = block_removals(unit, count)
            continue
        step = math.lcm(target.round_to or 1, unit.multiple)
        n = round_channels(unit.scores.numel(), count, step if step > 1 else None)
        removed[unit.name] = torch.nonzero(~keep_lowest_removed(unit.scores, n)).flatten().tolist()
    return removed


def block_removals(unit: Unit, count: int) -> list[int]:
    """The channels of the lowest-scoring whole blocks, about ``count`` channels' worth; one block always stays."""
    size = len(unit.blocks[0])
    n = min(round(count / size), len(unit.blocks) - 1)
    block_scores = torch.stack([unit.scores[block].sum() for block in unit.blocks])
    gone = torch.argsort(block_scores, stable=True)[:n].tolist()
    return sorted(c for b in gone for c in unit.blocks[b])


# ---------------------------------------------------------------- public API


def scores(module: nn.Module, target: Target, data=None, *, batches: int = 4, batch_size: int = 64) -> dict[str, torch.Tensor]:
    """Importance of every group of every layer in ``target.ratios`` (higher = kept).

    Shapes: unstructured and nm -> the weight's shape; vector -> weight.shape[:-1]; kernel -> [out, in];
    channel -> [out] (for channel, coupled layers' scores are summed by :func:`plan_channels`, not here).
    ``data`` (a :class:`~pruner_core.io.data.Dataset`) is needed by taylor, apoz and wanda: the first
    ``batches * batch_size`` training samples are used.

    Args:
        module: the model (not modified; its train/eval modes are restored).
        target: granularity, criterion and the layers to score (``ratios``' keys).
        data: calibration data for taylor, apoz and wanda.
        batches: calibration batches.
        batch_size: calibration batch size.

    Returns:
        Group scores per layer, in definition order.

    Raises:
        SpecError: an impossible (granularity, criterion) pair, an unknown layer, a ratio outside [0, 1), a layer
            the granularity does not apply to, missing data, or a layer the criterion cannot score (no ReLU, no BN).

    Example:
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3))
        >>> scores(net, Target("kernel", "l1", ratios={"0": 0.5}))["0"].shape
        torch.Size([4, 1])
    """
    check_target(target)
    layers = resolve(module, target)
    return dict(score_stream(module, layers, target, data, None, batches, batch_size))


def compute_masks(module: nn.Module, target: Target, data=None, *, layer_scores: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Boolean keep-masks shaped like each layer's weight (True = kept) for every layer in ``target.ratios``.

    Works for every granularity (for ``channel`` it is the mask of the rows that :func:`plan_channels` would
    remove, used by previews). Layerwise removes ``round(ratio * groups)`` lowest-scored groups per layer,
    like ``torch.nn.utils.prune``; global removes ``round(fraction * all groups)`` lowest across the layers.
    Exceptions: layerwise unstructured ``wanda`` removes ``round(ratio * row)`` in every output row (as in the
    paper); ``nm`` keeps the N best of every M and ignores ratios and scope; ``channel`` keeps at least one
    channel (or ``round_to``) and a multiple of ``round_to``. Ties are removed in flattened layer order.

    Args:
        module: the model (not modified).
        target: what to prune.
        data: calibration data (taylor, apoz, wanda); for ``channel`` it also lets the model's output
            layers be refused, as :func:`plan_channels` does.
        layer_scores: precomputed :func:`scores` to use instead of computing them.

    Returns:
        ``{layer name: bool tensor shaped like its weight}`` in definition order.

    Raises:
        SpecError: as :func:`scores`, or ``layer_scores`` of the wrong shape.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(4, 2))
        >>> with torch.no_grad():
        ...     _ = net[0].weight.copy_(torch.arange(8.0).reshape(2, 4))
        >>> compute_masks(net, Target("unstructured", "l1", ratios={"0": 0.25}))["0"].sum().item()
        6
    """
    check_target(target)
    graph = None
    if target.granularity == "channel" and data is not None:
        graph = graph_of(module, tuple(data.x_train.shape[1:]))
        graph.require_coupling()
    layers = resolve(module, target, graph)
    if not layers:
        return {}
    stream = score_stream(module, layers, target, data, layer_scores)
    weights = {name: mod.weight for name, mod, _ in layers}
    g = target.granularity
    if g == "nm":
        keep = {name: keep_nm(s, *target.nm) for name, s in stream}
    elif g == "channel":
        units = [Unit(name, s, target.ratios[name]) for name, s in stream]
        removed = channel_removals(units, target, global_fraction(layers, target.ratios))
        keep = {}
        for name, chans in removed.items():
            keep[name] = torch.ones(weights[name].shape[0], dtype=torch.bool)
            keep[name][chans] = False
    elif target.scope == "global":
        keep = global_keep(stream, global_fraction(layers, target.ratios))
    elif target.criterion == "wanda" and g == "unstructured":
        keep = {name: keep_per_row(s, target.ratios[name]) for name, s in stream}
    else:
        keep = {
            name: keep_lowest_removed(s.reshape(-1), round(target.ratios[name] * s.numel())).view(s.shape)
            for name, s in stream
        }
    return {name: expand(keep[name], weights[name].shape) for name in weights}


def apply_masks(module: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Zero the pruned weights of ``module`` in place (no hooks, no reparametrisation).

    Each weight stays the same ``nn.Parameter`` object; biases are left alone. Every mask is checked before
    any weight changes.

    Args:
        module: the model to change.
        masks: ``{layer name: bool keep-mask shaped like its weight}``, as from :func:`compute_masks`.

    Raises:
        SpecError: a layer without a weight, or a mask of another shape.
    """
    modules = layer_lookup(module)
    pairs = []
    for name, mask in masks.items():
        weight = getattr(modules.get(name), "weight", None)
        if not isinstance(weight, torch.Tensor):
            raise SpecError(f"layer '{name}' has no weight to mask")
        if mask.shape != weight.shape:
            raise SpecError(f"layer '{name}': mask of shape {list(mask.shape)} for a weight of shape {list(weight.shape)}")
        pairs.append((weight, mask))
    with torch.no_grad():
        for weight, mask in pairs:
            weight.mul_(mask)  # multiplying by the bool mask is ~2x faster than masked_fill_


