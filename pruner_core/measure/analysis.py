"""Per-layer redundancy signals: weight magnitudes at every granularity, APoZ, mean activation, BN scale.

Pure functions of (model, data, settings); nothing here mutates the model. Activations are read in one
pass without gradients by running the model's torch.fx graph through an interpreter that counts, for each
prunable layer, the zeros after the non-linearity that follows it (through BatchNorm and residual additions).
"""

from __future__ import annotations

import operator
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.fx as fx
from torch import nn

from pruner_core.graph.describe import prunable_layers
from pruner_core.io.data import Dataset
from pruner_core.io.models import LoadedModel
from pruner_core.pruning.granularities import NM_DEFAULT

ACTIVATION_MODULES = (nn.ReLU, nn.ReLU6)
ACTIVATION_FUNCTIONS = {torch.relu, torch.nn.functional.relu, torch.nn.functional.relu6, torch.relu_}
ACTIVATION_METHODS = {"relu", "relu_"}
NORM_MODULES = (nn.BatchNorm1d, nn.BatchNorm2d)
ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add}
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
    mean_activation: list[float] | None = None
    activation: str | None = None  # the non-linearity APoZ is read after, or why there is none
    bn_scale: list[float] | None = None
    bn: str | None = None
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
            "bn_scale": self.bn_scale,
            "bn": self.bn,
            "params": self.params,
            "flops": self.flops,
            "group": self.group,
            "forward_ms": self.forward_ms,
            "time_share": self.time_share,
        }


@dataclass
class Analysis:
    """The analysis of one model on one data set, with the settings it was made with."""

    layers: list[LayerAnalysis]
    samples: int
    seconds: float
    notes: list[str] = field(default_factory=list)

    forward_ms: float | None = None  # the calibration forward passes, timed

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


def _is_activation(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules.get(node.target), ACTIVATION_MODULES)
    if node.op == "call_function":
        return node.target in ACTIVATION_FUNCTIONS
    return node.op == "call_method" and node.target in ACTIVATION_METHODS


def follow(graph: fx.GraphModule, layer_names: list[str]) -> dict[str, tuple[fx.Node | None, str | None]]:
    """For each layer: the activation node its output reaches (through BN and additions), and its BN's name."""
    modules = dict(graph.named_modules())
    found: dict[str, tuple[fx.Node | None, str | None]] = {}
    for node in graph.graph.nodes:
        if node.op != "call_module" or node.target not in layer_names:
            continue
        cur, bn = node, None
        act = None
        while len(cur.users) == 1:
            user = next(iter(cur.users))
            if _is_activation(user, modules):
                act = user
                break
            if user.op == "call_module" and isinstance(modules.get(user.target), NORM_MODULES):
                if cur is node:  # the BatchNorm right after the layer scales its channels
                    bn = user.target
                cur = user
            elif user.op == "call_function" and user.target in ADD_FUNCTIONS:
                cur = user
            else:
                break
        found[node.target] = (act, bn)
    return found


class _Counter(fx.Interpreter):
    """Runs the graph; for the watched activation nodes counts zeros and sums per output channel, and times
    the timed layers (by module name)."""

    def __init__(self, graph: fx.GraphModule, watched: set[fx.Node], timed: set[str]) -> None:
        super().__init__(graph)
        self.watched = watched
        self.timed = timed
        self.zeros: dict[fx.Node, torch.Tensor] = {}
        self.sums: dict[fx.Node, torch.Tensor] = {}
        self.counts: dict[fx.Node, int] = {}
        self.seconds: dict[str, float] = {}

    def run_node(self, n: fx.Node):
        if n.op == "call_module" and n.target in self.timed:
            start = time.perf_counter()
            out = super().run_node(n)
            self.seconds[n.target] = self.seconds.get(n.target, 0.0) + time.perf_counter() - start
        else:
            out = super().run_node(n)
        if n in self.watched and isinstance(out, torch.Tensor) and out.dim() >= 2:
            # [N, C, positions]: reducing over the last, contiguous dimension first is ~10x faster than over
            # (0, 2, 3); after a ReLU every value is >= 0, so sign() counts the non-zeros without a bool tensor
            # (bool reductions are slow), exactly: float32 holds integers up to 2**24 per batch and channel.
            flat = out.reshape(out.shape[0], out.shape[1], -1)
            nonzero = torch.sign(flat).sum(2).sum(0).double()
            per_channel = flat.shape[0] * flat.shape[2]
            self.zeros[n] = self.zeros.get(n, 0) + (per_channel - nonzero)
            self.sums[n] = self.sums.get(n, 0) + flat.sum(2).sum(0).double()
            self.counts[n] = self.counts.get(n, 0) + per_channel
        return out


def analyze(
    model: LoadedModel, data: Dataset, *, samples: int = 256, batch_size: int = 64, layers: list | None = None
) -> Analysis:
    """Compute every redundancy signal of ``model``'s prunable layers.

    Args:
        model: the loaded model (not modified).
        data: calibration samples are the first ``samples`` training samples.
        samples: calibration samples for APoZ and mean activation (at least 1).
        batch_size: calibration batch size.
        layers: the model's description (:func:`~pruner_core.graph.describe.describe_model`) when already at hand
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
    from pruner_core.graph.describe import describe_model
    from pruner_core.io.models import check_data_fits

    shape = check_data_fits(model, data)  # names both shapes instead of failing inside the graph
    start = time.perf_counter()
    layers = prunable_layers(model.module)
    result = [weight_stats(name, kind, mod.weight) for name, mod, kind in layers]
    for la, info in zip(result, described or describe_model(model, shape), strict=True):  # FLOPs, params, group
        la.params, la.flops, la.group = info.params, info.flops, info.group
    notes: list[str] = []
    graph = None
    if not model.eager:
        notes.append(f"a {model.fmt} program hides its layer graph: APoZ, BN scale and layer times need an ordinary nn.Module")
    else:
        try:
            graph = fx.symbolic_trace(model.module)
        except Exception as e:  # data-dependent control flow and the like
            notes.append(f"torch.fx could not trace the model ({type(e).__name__}); APoZ, BN scale and layer times are unavailable")
    forward_ms = None
    if graph is None:
        for la in result:
            la.activation = "n/a: " + notes[-1].split(":")[0].split(";")[0]
    else:
        forward_ms = _calibrate(model, graph, result, data.x_train[:samples], batch_size)
    return Analysis(result, min(samples, len(data.x_train)), time.perf_counter() - start, notes, forward_ms)


def _calibrate(model: LoadedModel, graph: fx.GraphModule, result: list[LayerAnalysis], x: torch.Tensor, batch_size: int) -> float:
    """One pass over the calibration samples: APoZ, mean activation, BN scale and time per layer (in place).

    Returns:
        The time of the whole pass in milliseconds.
    """
    links = follow(graph, [la.name for la in result])
    watched = {act for act, _ in links.values() if act is not None}
    counter = _Counter(graph, watched, {la.name for la in result})
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
            la.bn, la.bn_scale = bn, modules[bn].weight.detach().abs().tolist()
        if act is None or act not in counter.counts:
            la.activation = "n/a: no ReLU follows this layer"
            continue
        la.activation = str(act.target) if act.op == "call_module" else f"{act.op}:{getattr(act.target, '__name__', act.target)}"
        n = counter.counts[act]
        la.apoz = (counter.zeros[act].double() / n).tolist()
        la.mean_activation = (counter.sums[act].double() / n).tolist()
    return total * 1000
