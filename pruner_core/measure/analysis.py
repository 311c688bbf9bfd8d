"""Per-layer redundancy signals: weight magnitudes at every granularity, APoZ, mean activation, BN scale; and per
attention head, the magnitude of the weights that make and read it, with the mean |output| of each head.

Pure functions of (model, data, settings); nothing here mutates the model. Activations are read in one
pass without gradients by running the model's torch.fx graph through an interpreter that counts, for each
prunable layer, the zeros after the non-linearity that follows it (through BatchNorm and residual additions).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.fx as fx

from pruner_core.graph.attention import Heads, attention_heads, head_norms
from pruner_core.graph.fx import STATISTICS, ActivationCounter, follow
from pruner_core.graph.layers import layer_lookup, prunable_layers
from pruner_core.io.data import Dataset
from pruner_core.io.models import LoadedModel
from pruner_core.pruning.granularities import NM_DEFAULT

HIST_BINS = 60


@dataclass
class LayerAnalysis:
    """Every signal for one prunable layer; lists run over output channels, ``None`` where undefined."""

    name: str
    type: str
    shape: list[int]
    channel_l1: list[float]
    channel_l2: list[float]
    kernel_l1: np.ndarray  # [out, in]: L1 norm of each kernel (each single weight for Linear)
    kernel_l2: np.ndarray  # [out, in]
    nm_l1: np.ndarray | None  # [out, kernel positions * in // M]: L1 of each group of M consecutive input weights
    hist_counts: list[int]
    hist_edges: list[float]
    sparsity: float
    apoz: list[float] | None = None
    mean_activation: list[float] | None = None  # mean |a| per channel after the activation
    activation: str | None = None  # the non-linearity APoZ is read after, or why there is none
    statistic: str | None = None  # which statistic the activation gives (``STATISTICS``): APoZ or the near-zero share
    near_zero: list[float] | None = None  # after a smooth activation (GELU, SiLU, ...): share of |a| < NEAR_ZERO
    bn_scale: list[float] | None = None
    bn: str | None = None  # the norm right after the layer (BatchNorm, or an affine GroupNorm/LayerNorm)
    norm_type: str | None = None  # its class: BatchNorm2d, GroupNorm, LayerNorm, ...
    params: int = 0  # weight and bias elements
    flops: int | None = None  # measured at batch 1 (a multiply-add counts as 2)
    group: int | None = None  # id shared by layers whose output channels are coupled (residual additions)
    forward_ms: float | None = None  # measured time in this layer over the calibration pass
    time_share: float | None = None  # forward_ms / time of the whole calibration forward

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "type": self.type,
            "shape": self.shape,
            "channel_l1": self.channel_l1,
            "channel_l2": self.channel_l2,
            "kernel_norms": self.kernel_l2.tolist(),
            "kernel_norms_l1": self.kernel_l1.tolist(),
            "nm_group_l1": self.nm_l1.tolist() if self.nm_l1 is not None else None,
            "histogram": {"counts": self.hist_counts, "edges": self.hist_edges},
            "sparsity": self.sparsity,
            "apoz": self.apoz,
            "mean_activation": self.mean_activation,
            "activation": self.activation,
            "statistic": self.statistic,
            "near_zero": self.near_zero,
            "bn_scale": self.bn_scale,
            "bn": self.bn,
            "norm_type": self.norm_type,
            "params": self.params,
            "flops": self.flops,
            "group": self.group,
            "forward_ms": self.forward_ms,
            "time_share": self.time_share,
        }


@dataclass
class HeadAnalysis:
    """The heads of one attention module: per head, the L1 and L2 norm over its query, key and value rows and the
    output projection's columns that read it, and the mean |output| of the head where the calibration pass sees it
    (the output projection's input; ``None`` for ``nn.MultiheadAttention``, whose forward never calls it)."""

    attention: str
    layers: list[str]  # the layers that make the heads (qkv; or q, k, v; or in_proj_weight), then the output one
    head_dim: int
    l1: list[float]
    l2: list[float]
    mean_output: list[float] | None = None

    def to_dict(self) -> dict:
        return {"attention": self.attention, "layers": self.layers, "head_dim": self.head_dim, "l1": self.l1,
                "l2": self.l2, "mean_output": self.mean_output}


@dataclass
class Analysis:
    """The analysis of one model on one data set, with the settings it was made with."""

    layers: list[LayerAnalysis]
    samples: int
    seconds: float
    notes: list[str] = field(default_factory=list)

    forward_ms: float | None = None  # the calibration forward passes, timed
    heads: list[HeadAnalysis] = field(default_factory=list)  # one per attention module

    def layer(self, name: str) -> LayerAnalysis:
        return next(la for la in self.layers if la.name == name)

    def groups(self) -> dict[int, list[str]]:
        """Coupled groups with more than one member: group id -> member layers in definition order."""
        members: dict[int, list[str]] = {}
        for la in self.layers:
            if la.group is not None:
                members.setdefault(la.group, []).append(la.name)
        return {g: names for g, names in members.items() if len(names) > 1}


def weight_stats(name: str, kind: str, weight: torch.Tensor) -> LayerAnalysis:
    """Magnitudes of one layer's weight ``[out, in, *kernel]`` at every granularity, plus a histogram."""
    w = weight.detach().float()
    a = w.abs()
    out_dims = tuple(range(1, w.dim()))
    kernel_dims = tuple(range(2, w.dim()))
    kernel_l1 = a.sum(kernel_dims) if kernel_dims else a
    kernel_l2 = torch.linalg.vector_norm(w, dim=kernel_dims) if kernel_dims else a
    m = NM_DEFAULT[1]
    nm = None
    if w.shape[1] % m == 0:
        along_in = a.movedim(1, -1) if kernel_dims else a  # [out, *kernel, in]
        nm = along_in.reshape(*along_in.shape[:-1], -1, m).sum(-1)
        nm = nm.reshape(w.shape[0], -1) if kernel_dims else nm
    counts, edges = np.histogram(w.numpy().ravel(), bins=HIST_BINS)
    return LayerAnalysis(
        name=name,
        type=kind,
        shape=list(w.shape),
        channel_l1=a.sum(out_dims).tolist(),
        channel_l2=torch.linalg.vector_norm(w, dim=out_dims).tolist(),
        kernel_l1=kernel_l1.numpy(),
        kernel_l2=kernel_l2.numpy(),
        nm_l1=nm.numpy() if nm is not None else None,
        hist_counts=counts.tolist(),
        hist_edges=edges.tolist(),
        sparsity=float((w == 0).float().mean()),
    )


def analyze(
    model: LoadedModel, data: Dataset, *, samples: int = 256, batch_size: int = 64, layers: list | None = None
) -> Analysis:
    """Compute every redundancy signal of ``model``'s prunable layers.

    Args:
        model: the loaded model (not modified).
        data: calibration samples are the first ``samples`` training samples.
        samples: calibration samples for APoZ and mean activation (at least 1).
        batch_size: calibration batch size.
        layers: the model's description (:func:`~pruner_core.pruning.describe.describe_model`) when already at hand
            (it depends on the model only); described here when None.

    Returns:
        The analysis; APoZ is ``None`` (with the reason in ``activation``) where no ReLU follows a layer or
        the model cannot be traced by torch.fx.

    Raises:
        ValueError: ``samples`` below 1.
    """
    if samples < 1:
        raise ValueError(f"samples must be at least 1; got {samples}")
    was_training = model.module.training
    model.module.eval()  # every pass below shares the modules: never update BatchNorm statistics
    try:
        return _analyze(model, data, samples, batch_size, layers)
    finally:
        model.module.train(was_training)


def _analyze(model: LoadedModel, data: Dataset, samples: int, batch_size: int, described: list | None) -> Analysis:
    from pruner_core.io.fit import check_data_fits
    from pruner_core.pruning.describe import describe_model

    shape = check_data_fits(model, data)  # names both shapes instead of failing inside the graph
    start = time.perf_counter()
    layers = prunable_layers(model.module)
    result = [weight_stats(name, kind, mod.weight) for name, mod, kind in layers]
    for la, info in zip(result, described or describe_model(model, shape), strict=True):  # FLOPs, params, group
        la.params, la.flops, la.group = info.params, info.flops, info.group
    notes: list[str] = []
    found = attention_heads(model.module)
    heads = _head_magnitudes(model.module, found)
    graph = None
    if not model.eager:
        notes.append(f"a {model.fmt} program hides its layer graph: APoZ, BN scale and layer times need an ordinary nn.Module")
    else:
        try:
            graph = fx.symbolic_trace(model.module)
        except Exception as e:  # data-dependent control flow and the like
            notes.append(f"torch.fx could not trace the model ({type(e).__name__}); APoZ, BN scale and layer times are unavailable")
    forward_ms = None
    x = data.x_train[:samples]
    with _HeadOutputs(model.module, found) as outputs:
        if graph is None:
            for la in result:
                la.activation = "n/a: " + notes[-1].split(":")[0].split(";")[0]
            if outputs.handles:  # the heads are still seen through a plain forward pass
                with torch.no_grad():
                    for i in range(0, len(x), batch_size):
                        model.module(x[i : i + batch_size])
        else:
            forward_ms = _calibrate(model, graph, result, x, batch_size)
    for ha, heads_of in zip(heads, found, strict=True):
        ha.mean_output = outputs.mean(heads_of)
    return Analysis(result, min(samples, len(data.x_train)), time.perf_counter() - start, notes, forward_ms, heads)


def _head_magnitudes(module: torch.nn.Module, found: list[Heads]) -> list[HeadAnalysis]:
    lookup = layer_lookup(module)
    result = []
    for heads in found:
        weights = {name: lookup[name].weight for name in (*heads.layers, heads.output)}
        result.append(HeadAnalysis(heads.attention, [*heads.layers, heads.output], heads.head_dim,
                                   head_norms(weights, heads, "l1"), head_norms(weights, heads, "l2")))
    return result


class _HeadOutputs:
    """Sums of |a| per head at the input of each attention's output projection, while registered."""

    def __init__(self, module: torch.nn.Module, found: list[Heads]) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        modules = dict(module.named_modules())
        self.handles = [modules[h.output].register_forward_pre_hook(self._hook(h)) for h in found
                        if not isinstance(modules.get(h.attention), torch.nn.MultiheadAttention)]

    def _hook(self, heads: Heads):
        def record(_module, args):
            x = args[0].detach().abs().reshape(-1, heads.num_heads, heads.head_dim)
            self.sums[heads.output] = self.sums.get(heads.output, 0) + x.double().sum((0, 2))
            self.counts[heads.output] = self.counts.get(heads.output, 0) + x.shape[0] * heads.head_dim
        return record

    def mean(self, heads: Heads) -> list[float] | None:
        if heads.output not in self.sums:
            return None
        return (self.sums[heads.output] / self.counts[heads.output]).tolist()

    def __enter__(self) -> _HeadOutputs:
        return self

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()


def _calibrate(model: LoadedModel, graph: fx.GraphModule, result: list[LayerAnalysis], x: torch.Tensor, batch_size: int) -> float:
    """One pass over the calibration samples: APoZ, mean activation, BN scale and time per layer (in place).

    Returns:
        The time of the whole pass in milliseconds.
    """
    links = follow(graph, [la.name for la in result])
    watched = {act for act, _ in links.values() if act is not None}
    linear = {la.name for la in result if la.type == "Linear"}  # [N, T, C] after a Linear: channels last
    counter = ActivationCounter(graph, watched, {la.name for la in result},
                                {act for name, (act, _) in links.items() if act is not None and name in linear})
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            counter.run(x[i : i + batch_size])
    total = time.perf_counter() - start
    modules = dict(model.module.named_modules())
    for la in result:
        seconds = counter.seconds.get(la.name)
        if seconds is not None:
            la.forward_ms, la.time_share = seconds * 1000, seconds / total
        act, bn = links.get(la.name, (None, None))
        if bn is not None:
            la.bn, la.norm_type = bn, type(modules[bn]).__name__
            la.bn_scale = modules[bn].weight.detach().abs().tolist()
        if act is None or act not in counter.counts:
            la.activation = "n/a: no activation (ReLU-like, GELU, SiLU, Tanh, ...) follows this layer"
            continue
        la.activation = str(act.target) if act.op == "call_module" else f"{act.op}:{getattr(act.target, '__name__', act.target)}"
        kind = counter.kinds[act]
        la.statistic = STATISTICS[kind]
        n = counter.counts[act]
        share = (counter.zeros[act].double() / n).tolist()
        if kind == "smooth":
            la.near_zero = share
        else:
            la.apoz = share
        la.mean_activation = (counter.sums[act].double() / n).tolist()
    return total * 1000
