"""Pruning methods: which weights go (criteria x granularities x scope), as masks or as removed channels.

Registries: ``CRITERIA`` here, ``GRANULARITIES`` in :mod:`pruner_core.pruning.granularities`. Every function is
pure with respect to its inputs except :func:`apply_masks` and :func:`prune_channels`, which change the
module they are given in place (callers pass a copy when the original must survive).

A granularity decides which groups of weights exist, a criterion scores them (one score function per
criterion in ``_SCORERS``), and one selection turns scores and ratios into keep-masks. Channels are
removed physically with torch-pruning from a plan that is plain data (replayable on a fresh model).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.fx  # noqa: F401  (torch.fx.symbolic_trace for apoz and bn_scale)
import torch.nn.functional as F
from torch import nn

from pruner_core.errors import SpecError
from pruner_core.graph.describe import coupled_groups, prunable_layers
from pruner_core.pruning.granularities import GRANULARITIES, NM_DEFAULT, LayerFacts


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


SCOPES = ("layerwise", "global")
Layer = tuple[str, nn.Module, str]  # (name, module, type) as listed by describe.prunable_layers


# ---------------------------------------------------------------- validation


def _check_target(target: Target) -> None:
    check_pair(target.granularity, target.criterion)
    if target.scope not in SCOPES:
        raise SpecError(f"unknown scope '{target.scope}'; valid: {', '.join(SCOPES)}")
    n, m = target.nm
    if target.granularity == "nm" and not (isinstance(n, int) and isinstance(m, int) and 1 <= n <= m):
        raise SpecError(f"N:M needs whole numbers with 1 <= N <= M; got {n}:{m}")
    if target.round_to is not None and (isinstance(target.round_to, bool) or not isinstance(target.round_to, int) or target.round_to < 1):
        raise SpecError(f"round_to must be a whole number of channels >= 1 (or None); got {target.round_to!r}")


def _check_ratio(name: str, ratio) -> None:
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 <= ratio < 1:
        raise SpecError(f"layer '{name}': the fraction removed must be in [0, 1); got {ratio!r}")


def _why_not(target: Target, facts: LayerFacts) -> str | None:
    m = target.nm[1]
    if target.granularity == "nm" and m != NM_DEFAULT[1]:  # the registry checks the default M only
        n_in = facts.shape[1]
        what = "features" if facts.type == "Linear" else "channels"
        return f"{n_in} input {what} is not a multiple of M={m}" if n_in % m else None
    return GRANULARITIES[target.granularity].why_not(facts)


def _resolve(module: nn.Module, target: Target, outputs: set[str] = frozenset()) -> list[Layer]:
    """The layers of ``target.ratios`` in definition order, each checked against the granularity."""
    layers = prunable_layers(module)
    known = [name for name, _, _ in layers]
    for name, ratio in target.ratios.items():
        if name not in known:
            shown = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
            raise SpecError(f"layer '{name}' is not a prunable layer (Conv1d, Conv2d, Linear) of the model; prunable: {shown}")
        _check_ratio(name, ratio)
    eager = not isinstance(module, torch.jit.ScriptModule)
    chosen = [layer for layer in layers if layer[0] in target.ratios]
    for name, mod, kind in chosen:
        facts = LayerFacts(kind, tuple(mod.weight.shape), eager, name in outputs)
        reason = _why_not(target, facts)
        if reason:
            raise SpecError(f"layer '{name}' cannot be pruned at granularity '{target.granularity}': {reason}")
    return chosen


# ---------------------------------------------------------------- groups


def _kept_dims(granularity: str, ndim: int) -> int:
    """How many leading weight dimensions index a group (the rest are summed over)."""
    return {"unstructured": ndim, "nm": ndim, "vector": ndim - 1, "kernel": 2, "channel": 1}[granularity]


def _group_shape(granularity: str, weight_shape: torch.Size) -> torch.Size:
    return weight_shape[: _kept_dims(granularity, len(weight_shape))]


def _group_sum(t: torch.Tensor, granularity: str) -> torch.Tensor:
    dims = tuple(range(_kept_dims(granularity, t.dim()), t.dim()))
    return t.sum(dims) if dims else t


def _expand(group_keep: torch.Tensor, weight_shape: torch.Size) -> torch.Tensor:
    """A group keep-mask broadcast to the weight's shape (groups index the leading dimensions)."""
    if group_keep.shape == weight_shape:
        return group_keep
    extra = len(weight_shape) - group_keep.dim()
    return group_keep.reshape(*group_keep.shape, *([1] * extra)).expand(weight_shape).contiguous()


# ---------------------------------------------------------------- criteria


@dataclass
class _Job:
    """Everything a score function needs: the layers to score and where calibration data comes from."""

    module: nn.Module
    layers: list[Layer]
    target: Target
    data: object
    batches: int
    batch_size: int

    def calibration(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.data is None:
            raise SpecError(f"criterion '{self.target.criterion}' needs calibration data; load a data set or use l1 or l2")
        n = self.batches * self.batch_size
        return self.data.x_train[:n], self.data.y_train[:n]

    def calibration_batches(self):
        x, y = self.calibration()
        for i in range(0, len(x), self.batch_size):
            yield x[i : i + self.batch_size], y[i : i + self.batch_size]


@contextmanager
def _evaluating(module: nn.Module):
    """Eval mode for the duration (BatchNorm statistics untouched), every submodule's own mode restored after."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _l1(job: _Job) -> Iterator[tuple[str, torch.Tensor]]:
    for name, mod, _ in job.layers:
        yield name, _group_sum(mod.weight.detach().abs(), job.target.granularity).float()


def _l2(job: _Job) -> Iterator[tuple[str, torch.Tensor]]:
    for name, mod, _ in job.layers:
        w = mod.weight.detach()
        dims = tuple(range(_kept_dims(job.target.granularity, w.dim()), w.dim()))
        yield name, (torch.linalg.vector_norm(w, dim=dims) if dims else w.abs()).float()


def _random(job: _Job) -> Iterator[tuple[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(job.target.seed)
    for name, mod, _ in job.layers:
        yield name, torch.rand(_group_shape(job.target.granularity, mod.weight.shape), generator=gen)


def _taylor(job: _Job) -> Iterator[tuple[str, torch.Tensor]]:
    # autograd.grad returns the gradients without touching any .grad: the caller's module is left as it was
    weights = [mod.weight for _, mod, _ in job.layers]
    flags = [w.requires_grad for w in weights]
    totals: list[torch.Tensor | float] = [0.0] * len(weights)
    count = 0
    try:
        for w in weights:
            w.requires_grad_(True)
        with _evaluating(job.module), torch.enable_grad():
            for xb, yb in job.calibration_batches():
                loss = F.cross_entropy(job.module(xb), yb)
                grads = torch.autograd.grad(loss, weights, allow_unused=True)
                for i, (w, g) in enumerate(zip(weights, grads, strict=True)):
                    if g is not None:
                        totals[i] = totals[i] + _group_sum(w.detach() * g, job.target.granularity).abs()
                count += 1
    finally:
        for w, flag in zip(weights, flags, strict=True):
            w.requires_grad_(flag)
    for (name, mod, _), total in zip(job.layers, totals, strict=True):
        if isinstance(total, float):  # forward() never used this layer
            total = torch.zeros(_group_shape(job.target.granularity, mod.weight.shape))
        yield name, (total / max(count, 1)).float()


def _wanda(job: _Job) -> Iterator[tuple[str, torch.Tensor]]:
    squares: dict[str, torch.Tensor] = {}

    def collect(name: str, channel_dim: int | None):
        def hook(_mod, args):
            x = args[0].detach().float()
            dim = channel_dim if channel_dim is not None else x.dim() - 1
            squares[name] = squares.get(name, 0) + x.pow(2).sum([d for d in range(x.dim()) if d != dim])

        return hook

    for name, mod, _ in job.layers:
        if getattr(mod, "groups", 1) != 1:
            raise SpecError(f"layer '{name}' is a grouped convolution; wanda needs groups=1 (use l1 or l2)")
    handles = [mod.register_forward_pre_hook(collect(name, None if kind == "Linear" else 1)) for name, mod, kind in job.layers]
    try:
        with _evaluating(job.module), torch.no_grad():
            for xb, _ in job.calibration_batches():
                job.module(xb)
    finally:
        for h in handles:
            h.remove()
    for name, mod, _ in job.layers:
        w = mod.weight.detach()
        norm = squares.get(name, torch.zeros(w.shape[1])).sqrt()
        yield name, (w.abs() * norm.reshape(1, -1, *([1] * (w.dim() - 2)))).float()


def _followers(job: _Job):
    """The fx graph and, per layer, (activation node, BatchNorm name) that follow it."""
    from pruner_core.measure.analysis import follow

    try:
        graph = torch.fx.symbolic_trace(job.module)
    except Exception as e:  # data-dependent control flow and the like
        raise SpecError(
            f"criterion '{job.target.criterion}' needs the layer graph, but torch.fx could not trace the model "
            f"({type(e).__name__}); use l1 or l2"
        ) from e
    return graph, follow(graph, [name for name, _, _ in job.layers])


def _apoz(job: _Job) -> Iterator[tuple[str, torch.Tensor]]:
    from pruner_core.measure.analysis import _Counter

    graph, links = _followers(job)
    for name, _, _ in job.layers:
        if links.get(name, (None, None))[0] is None:
            raise SpecError(f"layer '{name}': no ReLU follows it, so its APoZ is undefined; use l1 or l2")
    counter = _Counter(graph, {links[name][0] for name, _, _ in job.layers}, timed=set())
    with _evaluating(job.module), torch.no_grad():
        for xb, _ in job.calibration_batches():
            counter.run(xb)
    for name, _, _ in job.layers:
        act = links[name][0]
        if act not in counter.counts:
            raise SpecError(f"layer '{name}': its ReLU never ran on the calibration data; use l1 or l2")
        yield name, (1 - counter.zeros[act].double() / counter.counts[act]).float()


def _bn_scale(job: _Job) -> Iterator[tuple[str, torch.Tensor]]:
    _, links = _followers(job)
    modules = dict(job.module.named_modules())
    for name, _, _ in job.layers:
        bn = links.get(name, (None, None))[1]
        gamma = getattr(modules.get(bn), "weight", None) if bn is not None else None
        if gamma is None:
            raise SpecError(f"layer '{name}': no affine BatchNorm directly follows it, so it has no BN scale; use l1 or l2")
        yield name, gamma.detach().abs().float()


_SCORERS: dict[str, Callable[[_Job], Iterator[tuple[str, torch.Tensor]]]] = {
    "l1": _l1,
    "l2": _l2,
    "random": _random,
    "taylor": _taylor,
    "apoz": _apoz,
    "bn_scale": _bn_scale,
    "wanda": _wanda,
}
assert set(_SCORERS) == set(CRITERIA), "every criterion needs exactly one score function"


def _score_stream(
    module: nn.Module,
    layers: list[Layer],
    target: Target,
    data,
    given: dict[str, torch.Tensor] | None = None,
    batches: int = 4,
    batch_size: int = 64,
) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, group scores) per layer in ``layers`` order; lazily where the criterion allows (saves memory)."""
    if given is None:
        yield from _SCORERS[target.criterion](_Job(module, layers, target, data, batches, batch_size))
        return
    for name, mod, _ in layers:
        expected = _group_shape(target.granularity, mod.weight.shape)
        s = given.get(name)
        if s is None or s.shape != expected:
            got = "nothing" if s is None else f"shape {list(s.shape)}"
            raise SpecError(f"layer '{name}': scores must have shape {list(expected)}; got {got}")
        yield name, s


# ---------------------------------------------------------------- selection


def _keep_all_but_lowest(parts: list[torch.Tensor], k: int) -> list[torch.Tensor]:
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


def _keep_lowest_removed(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Keep-mask of one score tensor with exactly its ``k`` lowest removed (see :func:`_keep_all_but_lowest`)."""
    return _keep_all_but_lowest([scores], k)[0]


def _keep_per_row(score: torch.Tensor, ratio: float) -> torch.Tensor:
    """Keep-mask removing the lowest ``ratio`` of every output row (Wanda's comparison group)."""
    rows = score.reshape(score.shape[0], -1)
    k = round(ratio * rows.shape[1])
    keep = torch.ones_like(rows, dtype=torch.bool)
    if k:
        keep.scatter_(1, torch.argsort(rows, dim=1, stable=True)[:, :k], False)
    return keep.reshape(score.shape)


def _keep_nm(score: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep the ``n`` best of every ``m`` consecutive input weights (for conv: per output and kernel position)."""
    along_in = score.movedim(1, -1)  # [out, *kernel, in]; a Linear weight is already [out, in]
    groups = along_in.reshape(*along_in.shape[:-1], -1, m)
    best = torch.argsort(groups, dim=-1, descending=True, stable=True)[..., :n]
    keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, best, True)
    return keep.reshape(along_in.shape).movedim(-1, 1).contiguous()


def _global_fraction(layers: list[Layer], ratios: dict[str, float]) -> float:
    """The fraction of all weights one global threshold removes: the parameter-weighted mean of the ratios."""
    values = [ratios[name] for name, _, _ in layers]
    if len(set(values)) == 1:
        return values[0]  # exact, so round(fraction * n) matches torch's own count
    sizes = [mod.weight.numel() for _, mod, _ in layers]
    return sum(r * s for r, s in zip(values, sizes, strict=True)) / sum(sizes)


def _global_keep(stream: Iterator[tuple[str, torch.Tensor]], fraction: float) -> dict[str, torch.Tensor]:
    """One threshold across every layer's group scores: ``round(fraction * all groups)`` lowest removed."""
    layer_scores = dict(stream)
    n = sum(s.numel() for s in layer_scores.values())
    keeps = _keep_all_but_lowest(list(layer_scores.values()), round(fraction * n))
    return dict(zip(layer_scores, keeps, strict=True))


@dataclass
class _Unit:
    """Output channels removed together: one layer's, or a coupled group's (scores summed over its members)."""

    name: str
    scores: torch.Tensor  # [out]
    ratio: float


def _round_channels(out: int, n_remove: int, round_to: int | None) -> int:
    """Channels to remove so that a multiple of ``round_to`` (rounded up) and at least one (or round_to) stay."""
    keep = out - n_remove
    if round_to:
        keep = max(-(-keep // round_to) * round_to, round_to)
    return out - min(max(keep, 1), out)


def _channel_removals(units: list[_Unit], target: Target, fraction: float) -> dict[str, list[int]]:
    """The channels each unit loses: its own ratio (layerwise) or its share of one global threshold."""
    if target.scope == "global":
        total = sum(u.scores.numel() for u in units)
        keeps = _keep_all_but_lowest([u.scores.float() for u in units], round(fraction * total))
        counts = [int(torch.count_nonzero(~keep)) for keep in keeps]
    else:
        counts = [round(u.ratio * u.scores.numel()) for u in units]
    removed = {}
    for unit, count in zip(units, counts, strict=True):
        n = _round_channels(unit.scores.numel(), count, target.round_to)
        removed[unit.name] = torch.nonzero(~_keep_lowest_removed(unit.scores, n)).flatten().tolist()
    return removed


def _output_layers(module: nn.Module, example: torch.Tensor, names: list[str]) -> tuple[dict[str, int], set[str]]:
    """torch-pruning's coupled groups and output layers; SpecError where it cannot trace the model."""
    try:
        with _evaluating(module):
            return coupled_groups(module, example, names)
    except Exception as e:
        raise SpecError(
            f"torch-pruning could not trace the model ({type(e).__name__}: {e}), so coupled channels are unknown; "
            "channels cannot be removed (use a mask granularity such as unstructured or kernel)"
        ) from e


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
    _check_target(target)
    layers = _resolve(module, target)
    return dict(_score_stream(module, layers, target, data, None, batches, batch_size))


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
    _check_target(target)
    outputs: set[str] = set()
    if target.granularity == "channel" and data is not None:
        names = [name for name, _, _ in prunable_layers(module)]
        outputs = _output_layers(module, data.x_train[:1], names)[1]
    layers = _resolve(module, target, outputs)
    if not layers:
        return {}
    stream = _score_stream(module, layers, target, data, layer_scores)
    weights = {name: mod.weight for name, mod, _ in layers}
    g = target.granularity
    if g == "nm":
        keep = {name: _keep_nm(s, *target.nm) for name, s in stream}
    elif g == "channel":
        units = [_Unit(name, s, target.ratios[name]) for name, s in stream]
        removed = _channel_removals(units, target, _global_fraction(layers, target.ratios))
        keep = {}
        for name, chans in removed.items():
            keep[name] = torch.ones(weights[name].shape[0], dtype=torch.bool)
            keep[name][chans] = False
    elif target.scope == "global":
        keep = _global_keep(stream, _global_fraction(layers, target.ratios))
    elif target.criterion == "wanda" and g == "unstructured":
        keep = {name: _keep_per_row(s, target.ratios[name]) for name, s in stream}
    else:
        keep = {
            name: _keep_lowest_removed(s.reshape(-1), round(target.ratios[name] * s.numel())).view(s.shape)
            for name, s in stream
        }
    return {name: _expand(keep[name], weights[name].shape) for name in weights}


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
    modules = dict(module.named_modules())
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


def plan_channels(module: nn.Module, target: Target, example: torch.Tensor, data=None) -> list[dict]:
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

    Returns:
        The plan, JSON-serialisable, for :func:`prune_channels`.

    Raises:
        SpecError: a target that is not ``channel``, a listed layer whose outputs are the model's outputs,
            a model torch-pruning cannot trace, or anything :func:`scores` refuses.
    """
    _check_target(target)
    if target.granularity != "channel":
        raise SpecError(f"plan_channels removes channels; got granularity '{target.granularity}' (use compute_masks)")
    everything = prunable_layers(module)
    group_of, outputs = _output_layers(module, example, [name for name, _, _ in everything])
    layers = _resolve(module, target, outputs)
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
    members_scores = dict(_score_stream(module, [m for members in chosen for m in members], target, data))
    units = [
        _Unit(
            members[0][0],
            sum(members_scores[name] for name, _, _ in members),
            next(target.ratios[name] for name, _, _ in members if name in target.ratios),
        )
        for members in chosen
    ]
    removed = _channel_removals(units, target, _global_fraction(layers, target.ratios))
    return [{"layer": name, "channels": chans} for name, chans in removed.items() if chans]


def prune_channels(module: nn.Module, plan: list[dict], example: torch.Tensor) -> None:
    """Physically remove the channels of ``plan`` from ``module`` in place, with torch-pruning.

    Applying the same plan to a fresh copy of the same base model gives the same architecture, so a
    pruned model is rebuilt from (base model, plan, pruned state dict) without unpickling anything.

    Args:
        module: the unpruned model the plan was made for; changed in place (its modes are kept).
        plan: from :func:`plan_channels`.
        example: one input batch, for torch-pruning's dependency graph.

    Raises:
        SpecError: a plan naming an unknown layer, channels out of range, or every channel of a layer.
    """
    import torch_pruning as tp

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
    with _evaluating(module), torch.enable_grad():  # torch-pruning traces with autograd
        graph = tp.DependencyGraph().build_dependency(module, example_inputs=example)
        for entry in plan:
            layer = modules[entry["layer"]]
            fn = tp.prune_linear_out_channels if isinstance(layer, nn.Linear) else tp.prune_conv_out_channels
            graph.get_pruning_group(layer, fn, idxs=sorted(set(entry["channels"]))).prune()
