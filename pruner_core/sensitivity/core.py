"""Sensitivity analysis and ratio recommendation: which layers can lose how much, before committing a recipe.

1. :func:`scan` prunes one *unit* at a time — a layer, or for ``channel`` a coupled group (residual partners
   move together) — at each ratio, without fine-tuning, and measures accuracy and cross-entropy loss on the
   first ``samples`` test images. Scores are computed once per layer and re-used across ratios; the model is
   split with ``torch.fx`` so that only the part of the network after the changed layer is re-run. The
   original model is never touched (the scan works on a copy and restores its weights after every ratio).
2. :func:`recommend` turns the curves into per-layer ratios that meet a target (parameter sparsity, FLOP
   reduction or a maximum accuracy drop), sensitive layers keeping more, and returns a
   :class:`~pruner_core.pruning.recipe.Recipe` with the predicted outcome next to the uniform allocation.
3. :func:`apply_and_measure` prunes with a recipe without fine-tuning and measures what it did.

Channel removal is emulated in the scan by zeroing the input channels of every layer that reads the removed
channels (from torch-pruning's dependency group): the removed channels then influence nothing, which is what
physical removal computes, at the cost of a weight copy instead of a graph surgery per ratio.

Definitions used throughout (and in :func:`apply_and_measure`): *parameter sparsity* is the fraction of the
weights of the prunable layers (Conv1d, Conv2d, Linear) that are zero or removed; *FLOP reduction* is the
fraction of those layers' FLOPs (``torch.utils.flop_counter``) removed, counting a masked weight's
multiply-adds as removed (what a sparse kernel could skip; a masked model is not faster in PyTorch eager).

Example:
    >>> from pruner_core.io.models import load_model
    >>> from pruner_core.io.data import load_data
    >>> model, data = load_model("demo:mnist-cnn"), load_data("demo:mnist5k")
    >>> sens = scan(model, data, samples=200)                                      # doctest: +SKIP
    >>> rec = recommend(sens, "sparsity", 0.7)                                     # doctest: +SKIP
    >>> rec.recipe.save("recommended.yaml"); apply_and_measure(model, data, rec.recipe)  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import operator
import os
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import fx, nn

from pruner_core.errors import SpecError
from pruner_core.graph.flops import layer_flops
from pruner_core.graph.layers import prunable_layers
from pruner_core.io.data import Dataset
from pruner_core.io.models import LoadedModel, check_data_fits
from pruner_core.measure.metrics import timed_runs
from pruner_core.pruning.criteria import check_pair
from pruner_core.pruning.describe import describe_model
from pruner_core.pruning.recipe import Recipe
from pruner_core.pruning.select import compute_masks, keep_lowest_removed, round_channels, scores
from pruner_core.pruning.target import Target

DEFAULT_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
BATCH_SIZE = 250
LATENCY_BATCH = 8
FORMAT_VERSION = 1
LOSS_WEIGHT = 0.01  # in the allocation, a loss rise of 1 nat weighs as much as 1 point of accuracy drop
TARGETS = {
    "sparsity": "parameter sparsity: fraction of the prunable layers' weights removed",
    "flops": "FLOP reduction: fraction of the prunable layers' FLOPs removed",
    "drop": "maximum accuracy drop (predicted as the sum of the per-layer drops)",
}


class TargetError(SpecError):
    """A recommendation target that cannot be met; the message names the closest achievable value."""


# ---------------------------------------------------------------- results


@dataclass
class ScanProgress:
    """One step of a scan, for a progress bar: ``done`` of ``total`` evaluations, ``eta_s`` seconds left."""

    done: int
    total: int
    eta_s: float | None
    current: str  # the unit being scanned
    ratio: float | None = None

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


@dataclass
class UnitCurve:
    """The curves of one scanned unit: a layer, or (``channel``) a coupled group named by its first member.

    ``accuracy[i]`` and ``loss[i]`` were measured with ``ratios[i]`` of the unit pruned (of its weights, or of
    its output channels for ``channel``) and nothing else. For ``channel``, ``consumers`` are the layers that
    read the group's channels, ``kept_channels[i]`` what ``ratios[i]`` keeps, and ``latency`` (when measured)
    maps kept channel counts to milliseconds.
    """

    name: str
    layers: list[str]
    weights: int
    flops: int | None
    is_output: bool = False
    channels: int | None = None
    consumers: list[str] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    kept_channels: list[int] | None = None
    latency: dict | None = None

    def drop(self, dense_accuracy: float) -> list[float]:
        """Accuracy lost at each ratio (negative where pruning happened to help)."""
        return [dense_accuracy - a for a in self.accuracy]


@dataclass
class Sensitivity:
    """The result of :func:`scan`; :meth:`to_dict` is plain JSON-serialisable data (see the module doc).

    ``layers`` describes every prunable layer of the model (``weights``, ``flops``, ``out``, ``in``,
    ``groups`` = how many groups of weights the granularity has in it, ``is_output``), which is what
    :func:`recommend` needs to predict sparsity and FLOPs without the model.
    """

    model: str
    fingerprint: str
    data: str
    settings: dict
    dense_accuracy: float
    dense_loss: float
    units: list[UnitCurve]
    layers: dict[str, dict]
    complete: bool
    seconds: float
    how: str = ""

    def unit(self, name: str) -> UnitCurve:
        """The unit called ``name`` (a layer name, or a group's first member)."""
        for u in self.units:
            if u.name == name:
                return u
        raise SpecError(f"no scanned unit named '{name}'; scanned: {', '.join(u.name for u in self.units)}")

    def least_sensitive(self) -> list[str]:
        """Unit names ordered from the least to the most sensitive (mean accuracy drop, then mean loss rise)."""

        def key(u: UnitCurve) -> tuple[float, float]:
            drops = u.drop(self.dense_accuracy)
            rises = [v - self.dense_loss for v in u.loss]
            return (sum(drops) / len(drops), sum(rises) / len(rises)) if drops else (math.inf, math.inf)

        return [u.name for u in sorted(self.units, key=key)]

    def to_dict(self) -> dict:
        """Plain data: ``{"version", "model", "fingerprint", "data", "settings", "dense": {"accuracy", "loss"},
        "layers": {name: {...}}, "units": [{"name", "layers", "weights", "flops", "is_output", "channels",
        "consumers", "ratios", "accuracy", "loss", "kept_channels", "latency"}, ...], "complete", "seconds",
        "how"}``."""
        return {
            "version": FORMAT_VERSION,
            "model": self.model,
            "fingerprint": self.fingerprint,
            "data": self.data,
            "settings": dict(self.settings),
            "dense": {"accuracy": self.dense_accuracy, "loss": self.dense_loss},
            "layers": {k: dict(v) for k, v in self.layers.items()},
            "units": [asdict(u) for u in self.units],
            "complete": self.complete,
            "seconds": self.seconds,
            "how": self.how,
        }

    @classmethod
    def from_dict(cls, data: dict, source: str = "sensitivity scan") -> Sensitivity:
        """Rebuild from :meth:`to_dict` output (e.g. a JSON file written by ``pruner sensitivity``).

        Raises:
            SpecError: not a scan of this format (naming what is missing).
        """
        if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
            got = data.get("version") if isinstance(data, dict) else type(data).__name__
            raise SpecError(f"{source}: not a sensitivity scan of format version {FORMAT_VERSION}; got version {got!r}")
        try:
            units = [UnitCurve(**u) for u in data["units"]]
            return cls(
                data["model"], data["fingerprint"], data["data"], dict(data["settings"]), float(data["dense"]["accuracy"]),
                float(data["dense"]["loss"]), units, {k: dict(v) for k, v in data["layers"].items()},
                bool(data["complete"]), float(data["seconds"]), data.get("how", ""),
            )
        except (KeyError, TypeError, AttributeError) as e:
            raise SpecError(f"{source}: a sensitivity scan is missing or has a malformed field ({type(e).__name__}: {e})") from None

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON (atomically)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Sensitivity:
        """Read a scan written by :meth:`save` (SpecError when unreadable)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SpecError(f"sensitivity scan '{path}' cannot be read ({type(e).__name__}: {e})") from None
        return cls.from_dict(data, source=str(path))


# ---------------------------------------------------------------- validation


def check_ratios(ratios: Sequence[float]) -> list[float]:
    """The ratios sorted and de-duplicated; SpecError for an empty list or a value outside [0, 1)."""
    ratios = list(ratios)
    if not ratios:
        raise SpecError("the list of ratios to scan is empty; give fractions in [0, 1), e.g. 0.1,0.2,...,0.9")
    for r in ratios:
        if isinstance(r, bool) or not isinstance(r, int | float) or not 0 <= r < 1:
            raise SpecError(f"a ratio to scan must be a fraction in [0, 1); got {r!r}")
    return sorted(set(float(r) for r in ratios))


def _check_settings(granularity: str, criterion: str, samples: int, seconds: float | None) -> None:
    check_pair(granularity, criterion)
    if granularity == "nm":
        raise SpecError(
            "granularity 'nm' removes a fixed 1 - N/M of every layer, so there is no ratio to scan; scan "
            "'unstructured' to see which layers tolerate that much"
        )
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise SpecError(f"samples must be a whole number >= 1; got {samples!r}")
    if seconds is not None and not seconds > 0:
        raise SpecError(f"the time budget must be > 0 seconds (or None); got {seconds!r}")


# ---------------------------------------------------------------- evaluation engine


def _fold_batchnorm(work: nn.Module, modules: dict[str, nn.Module]) -> nn.Module:
    """A copy of ``work`` with each BatchNorm folded into the convolution before it, for evaluation; ``modules``
    is updated to name the folded convolutions.

    Folding scales each output channel of a convolution's weight by a constant (and sets its bias), so zeroing a
    weight, a kernel, a row or an input channel of the folded weight zeroes exactly what it zeroes in the
    original: the pruned outputs are the same, computed without a pass over memory per BatchNorm (about 1.4x
    faster on resnet20). Scores are computed on the original weights before folding. An untraceable model is
    evaluated as it is.
    """
    from torch.fx.experimental.optimization import fuse

    try:
        folded = fuse(work)
    except Exception:  # not traceable by torch.fx: evaluate it unfolded
        return work
    modules.update(dict(folded.named_modules()))
    return folded


def _fresh(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Whether ``node`` makes a new tensor (a layer's output or a sum), never a view of another value."""
    if node.op == "call_module":
        return isinstance(modules.get(node.target), nn.Conv1d | nn.Conv2d | nn.Linear | nn.modules.batchnorm._BatchNorm)
    if node.op == "call_function":
        return node.target in (operator.add, torch.add)
    return node.op == "call_method" and node.target == "add"


def _relu_in_place(graph: fx.Graph, modules: dict[str, nn.Module]) -> None:
    """Make each ReLU of ``graph`` work in place where nothing else reads its input and that input is a fresh
    tensor made in the graph (not a placeholder, reused for the next ratio, nor a view of one): the same values,
    one allocation fewer."""
    for node in list(graph.nodes):
        is_relu = (node.op == "call_module" and type(modules.get(node.target)) is nn.ReLU) or (
            node.op == "call_function" and node.target in (torch.relu, F.relu) and not node.kwargs)
        arg = node.args[0] if is_relu and len(node.args) == 1 else None
        if isinstance(arg, fx.Node) and _fresh(arg, modules) and len(arg.users) == 1:
            with graph.inserting_after(node):
                inplace = graph.call_function(torch.relu_, (arg,))
            node.replace_all_uses_with(inplace)
            graph.erase_node(node)


def _touches(node: fx.Node, changed: set[str]) -> bool:
    if node.op == "call_module":
        return node.target in changed
    if node.op == "get_attr":
        return any(node.target == c or node.target.startswith(c + ".") for c in changed)
    return False


class _Engine:
    """Accuracy and loss of the work model on the evaluation subset, re-running only what a change affects.

    With a traceable model, :meth:`prepare` splits the fx graph at the changed layers: a prefix computes (once)
    the values the rest needs, and a suffix is re-run per ratio. Otherwise every evaluation runs the model.
    """

    def __init__(self, module: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> None:
        self.module, self.y = module, y
        if x.dim() == 4:  # convolutions and pooling run several times faster on CPU in channels_last
            module.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        self.batches = [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        try:
            self.graph: fx.GraphModule | None = fx.symbolic_trace(module)
        except Exception:  # data-dependent control flow and the like: evaluate the whole model every time
            self.graph = None
        self.suffix: fx.GraphModule | None = None
        self.frontier: list[tuple] = []
        self.copy_frontier = False
        self._dense: list[fx.Interpreter] = []  # per batch: the dense forward, advanced only as far as cuts need
        self._position = 0  # nodes[:position] have been run by the dense forward
        self._last_use: dict[fx.Node, int] = {}

    def prepare(self, changed: set[str]) -> None:
        """Split at the modules in ``changed`` and compute the prefix values once (dense weights)."""
        self.suffix, self.frontier = None, []
        if self.graph is None:
            return
        nodes = list(self.graph.graph.nodes)
        after: set[fx.Node] = set()
        for n in nodes:
            if _touches(n, changed) or any(a in after for a in n.all_input_nodes):
                after.add(n)
        if not after or not any(n.op == "output" for n in after):
            return
        needed = [n for n in nodes if n not in after and any(n in u.all_input_nodes for u in after)]
        prefix_graph, env = fx.Graph(), {}
        for n in nodes:
            if n not in after and n.op != "output":
                env[n] = prefix_graph.node_copy(n, lambda a: env[a])
        prefix_graph.output(tuple(env[n] for n in needed))
        suffix_graph, env2 = fx.Graph(), {}
        for n in needed:
            env2[n] = suffix_graph.placeholder(f"in_{n.name}")
        for n in nodes:
            if n in after:
                env2[n] = suffix_graph.node_copy(n, lambda a: env2[a])
        modules = dict(self.graph.named_modules())
        _relu_in_place(suffix_graph, modules)
        self.suffix = fx.GraphModule(self.graph, suffix_graph)
        # a module that works in place on a value computed before the cut would change it for the next ratio
        self.copy_frontier = any(
            n.op == "call_module" and getattr(modules.get(n.target), "inplace", False)
            and any(a in needed for a in n.all_input_nodes) for n in after
        )
        self.frontier = self._advance(nodes, after, needed)
        if self.frontier is None:  # the cut lies before what the dense forward has already freed: run a prefix
            prefix = fx.GraphModule(self.graph, prefix_graph)
            prefix.graph.eliminate_dead_code()  # values only the changed part needed
            prefix.recompile()
            with torch.inference_mode():
                self.frontier = [prefix(xb) for xb, _ in self.batches]

    @torch.inference_mode()
    def _advance(self, nodes: list[fx.Node], after: set[fx.Node], needed: list[fx.Node]) -> list[tuple] | None:
        """The values of ``needed`` per batch, from one dense forward shared by every cut.

        Scans go through the layers in order, so instead of a prefix per layer from the input, one dense forward
        runs node by node only as far as each cut needs, and keeps just the values a node from the cut on still
        reads. Returns None when a needed value was already dropped (a cut before an earlier one).
        """
        if not self._dense:
            for i, node in enumerate(nodes):
                for arg in node.all_input_nodes:
                    self._last_use[arg] = i  # the index of the last node that reads it
            for xb, _ in self.batches:
                interp = fx.Interpreter(self.graph)
                interp.env, interp.args_iter = {}, iter([xb])
                self._dense.append(interp)
        index = {n: i for i, n in enumerate(nodes)}
        keep_from = min(min(index[n] for n in after), self._position)  # the cut, and the dense forward's next node
        for interp in self._dense:
            for n in [n for n in interp.env if self._last_use.get(n, -1) < keep_from]:
                del interp.env[n]  # nothing from the cut on, and nothing the dense forward has still to run, reads it
        end = max((index[n] + 1 for n in needed), default=0)
        for node in nodes[self._position:end]:
            for interp in self._dense:
                interp.env[node] = interp.run_node(node)
        self._position = max(self._position, end)
        if any(n not in self._dense[0].env for n in needed):
            return None
        return [tuple(interp.env[n] for n in needed) for interp in self._dense]

    @torch.inference_mode()
    def evaluate(self) -> tuple[float, float]:
        """(top-1 accuracy, mean cross-entropy) of the work model as it is now."""
        correct, loss = 0, 0.0
        for i, (xb, yb) in enumerate(self.batches):
            if self.suffix is None:
                out = self.module(xb)
            elif self.copy_frontier:
                out = self.suffix(*(v.clone() for v in self.frontier[i]))
            else:
                out = self.suffix(*self.frontier[i])
            correct += int((out.argmax(1) == yb).sum())
            loss += float(F.cross_entropy(out.float(), yb, reduction="sum"))
        n = len(self.y)
        return correct / n, loss / n


# ---------------------------------------------------------------- units


@dataclass
class _Work:
    """How to prune one unit of the work model at a ratio, and how to put it back."""

    curve: UnitCurve
    changed: set[str]  # modules whose weights change (decides where the graph is split)
    apply: Callable[[float], int | None]  # prunes at a ratio, returns the kept channels (channel) or None
    saved: dict[str, torch.Tensor]  # original weights of the changed modules

    def restore(self, modules: dict[str, nn.Module]) -> None:
        with torch.no_grad():
            for name, w in self.saved.items():
                modules[name].weight.copy_(w)


def _layer_table(module: nn.Module, infos: list, granularity: str, criterion: str) -> dict[str, dict]:
    table = {}
    mods = {name: mod for name, mod, _ in prunable_layers(module)}
    for info in infos:
        w = mods[info.name].weight
        shape = list(w.shape)
        n = w.numel()
        if granularity == "channel":
            groups = shape[0]
        elif granularity == "unstructured" and criterion == "wanda":
            groups = n // shape[0]  # wanda removes the same share of every output row
        else:
            kept = {"unstructured": len(shape), "vector": len(shape) - 1, "kernel": 2}[granularity]
            groups = math.prod(shape[:kept])
        table[info.name] = {
            "type": info.type, "shape": shape, "weights": n, "flops": info.flops, "out": shape[0],
            "in": shape[1] if len(shape) > 1 else 1, "groups": groups, "is_output": info.is_output,
            "group": info.group, "applies": info.granularities.get(granularity) is None,
        }
    return table


def _mask_units(work: nn.Module, infos: list, table: dict, settings: dict, data: Dataset, modules: dict) -> list[_Work]:
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
        _Work(
            UnitCurve(name, [name], table[name]["weights"], table[name]["flops"], table[name]["is_output"]),
            {name}, pruner(name), {name: modules[name].weight.detach().clone()},
        )
        for name in names
    ]


def _channel_units(work: nn.Module, infos: list, table: dict, settings: dict, data: Dataset, modules: dict,
                   example: torch.Tensor) -> list[_Work]:
    import torch_pruning as tp

    c = settings["criterion"]
    groups: dict[int, list[str]] = {}
    for info in infos:
        groups.setdefault(info.group, []).append(info.name)
    chosen = [members for members in groups.values() if all(table[m]["applies"] for m in members)]
    if not chosen:
        return []
    all_members = [m for members in chosen for m in members]
    member_scores = scores(work, Target("channel", c, ratios={m: 0.5 for m in all_members}), data)
    with torch.enable_grad():  # torch-pruning traces with autograd
        graph = tp.DependencyGraph().build_dependency(work, example_inputs=example)
    name_of = {id(m): n for n, m in work.named_modules()}
    prunable = set(table)
    units = []
    for members in chosen:
        root = modules[members[0]]
        fn = tp.prune_linear_out_channels if isinstance(root, nn.Linear) else tp.prune_conv_out_channels
        out = root.weight.shape[0]
        total = sum(member_scores[m] for m in members)

        def consumers_of(chans: list[int], root=root, fn=fn) -> dict[str, list[int]]:
            found: dict[str, list[int]] = {}
            for dep, idxs in graph.get_pruning_group(root, fn, idxs=chans):
                name = name_of.get(id(dep.target.module))
                if name in prunable and getattr(dep.handler, "__name__", "") == "prune_in_channels":
                    if getattr(modules[name], "groups", 1) != 1:
                        raise SpecError(f"layer '{name}' is a grouped convolution; the channel scan supports groups=1 only")
                    found[name] = sorted({int(i) for i in idxs})
            return found

        readers = list(consumers_of([0]))

        def apply(ratio: float, total=total, out=out, consumers_of=consumers_of) -> int:
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
        units.append(_Work(curve, set(readers), apply, {r: modules[r].weight.detach().clone() for r in readers}))
    return units


def _sum_or_none(values) -> int | None:
    values = list(values)
    return None if any(v is None for v in values) else int(sum(values))


# ---------------------------------------------------------------- latency (channel)


@torch.inference_mode()
def _time(module: nn.Module, x: torch.Tensor, runs: int) -> float:
    return statistics.median(timed_runs(lambda: module(x), runs, 1))


def _resized(mod: nn.Module, out: int | None = None, inp: int | None = None) -> nn.Module:
    if isinstance(mod, nn.Linear):
        return nn.Linear(inp or mod.in_features, out or mod.out_features, bias=mod.bias is not None)
    cls = type(mod)
    return cls(inp or mod.in_channels, out or mod.out_channels, mod.kernel_size, stride=mod.stride, padding=mod.padding,
               dilation=mod.dilation, bias=mod.bias is not None)


def _latency_points(out: int, kept: list[int]) -> list[int]:
    step = 8 * max(1, math.ceil(out / 128))
    points = set(kept) | {out}
    for k in range(step, out + 1, step):
        points |= {k, min(k + 1, out)}
    return sorted(p for p in points if 1 <= p <= out)


def _channel_latency(work: nn.Module, unit: UnitCurve, inputs: dict[str, tuple], runs: int) -> dict:
    """Milliseconds of the group's layers alone (members with k output channels + readers with k input channels)."""
    modules = dict(work.named_modules())
    out = unit.channels
    kept_list, ms = [], []
    for k in _latency_points(out, unit.kept_channels or []):
        total = 0.0
        for name in unit.layers:
            mod, shape = modules[name], inputs[name]
            total += _time(_resized(mod, out=k).eval(), torch.rand(LATENCY_BATCH, *shape[1:]), runs)
        for name in unit.consumers:
            mod, shape = modules[name], inputs[name]
            per = (mod.in_features if isinstance(mod, nn.Linear) else mod.in_channels) // out
            x_shape = (LATENCY_BATCH, k * per, *shape[2:]) if not isinstance(mod, nn.Linear) else (LATENCY_BATCH, k * per)
            total += _time(_resized(mod, inp=k * per).eval(), torch.rand(*x_shape), runs)
        kept_list.append(k)
        ms.append(round(total, 4))
    return {
        "kept": kept_list, "ms": ms,
        "how": f"PyTorch {torch.__version__.split('+')[0]} eager on CPU, {torch.get_num_threads()} thread(s), batch "
               f"{LATENCY_BATCH}, median of {runs} runs after 1 warm-up: the group's layers alone (its members with "
               "k output channels, the layers reading them with k input channels' worth)",
    }


def _record_inputs(module: nn.Module, names: list[str], example: torch.Tensor) -> dict[str, tuple]:
    shapes: dict[str, tuple] = {}
    mods = dict(module.named_modules())
    def hook(name: str):
        def record(_mod, args) -> None:  # a pre-hook that returns something replaces the arguments
            shapes.setdefault(name, tuple(args[0].shape))

        return record

    handles = [mods[n].register_forward_pre_hook(hook(n)) for n in names]
    try:
        with torch.inference_mode():
            module(example)
    finally:
        for h in handles:
            h.remove()
    return shapes


# ---------------------------------------------------------------- the scan


def scan(
    model: LoadedModel,
    data: Dataset,
    *,
    granularity: str = "unstructured",
    criterion: str = "l1",
    ratios: Sequence[float] = DEFAULT_RATIOS,
    samples: int = 1000,
    seconds: float | None = None,
    layers: Sequence[str] | None = None,
    latency: bool | None = None,
    latency_runs: int = 5,
    batch_size: int = BATCH_SIZE,
    callback: Callable[[ScanProgress], None] | None = None,
    cancel: threading.Event | None = None,
) -> Sensitivity:
    """Prune one unit at a time at each ratio (no fine-tuning) and measure accuracy and loss.

    A unit is a prunable layer the granularity applies to, or for ``channel`` a coupled group of layers whose
    output channels must be removed together (all members use the same channel ratio, as in a recipe). The
    dense accuracy and loss are measured too (ratio 0 gives them back exactly).

    Args:
        model: the model (never modified: the scan prunes a copy and restores it after every ratio).
        data: its data; the first ``samples`` test images are the evaluation subset; taylor, apoz and wanda
            also read calibration batches from the training split.
        granularity: a key of ``GRANULARITIES`` except ``nm`` (which has no ratio to vary).
        criterion: a key of ``CRITERIA`` valid with the granularity.
        ratios: fractions in [0, 1) to try (of weights, or of output channels for ``channel``).
        samples: how many test images to evaluate on (at most the test split's size).
        seconds: a time budget: ``samples`` is reduced (to no fewer than 100) when the scan would take longer,
            as estimated from one dense evaluation. The samples used are in ``settings``.
        layers: scan only these layers (for ``channel``, the groups containing them); default every one.
        latency: for ``channel``, also time the group's layers against kept channels (default: on for
            ``channel``, ignored otherwise).
        latency_runs: timed runs per latency point.
        batch_size: evaluation batch size.
        callback: called with a :class:`ScanProgress` after each evaluation (running ETA).
        cancel: when set, the scan stops after the current evaluation and returns what it has, with
            ``complete=False`` (a partly scanned unit keeps the ratios it reached).

    Returns:
        A :class:`Sensitivity`.

    Raises:
        SpecError: an impossible (granularity, criterion) pair, ``nm``, an empty ratio list or a ratio outside
            [0, 1), an unknown layer, a bad ``samples`` or budget, or a layer the criterion cannot score.
        CompatibilityError: the data does not fit the model.
    """
    start = time.perf_counter()
    _check_settings(granularity, criterion, samples, seconds)
    ratios = check_ratios(ratios)
    if granularity == "channel" and not model.eager:
        raise SpecError(f"channel pruning needs an ordinary nn.Module; '{model.label}' is a {model.fmt} program (mask only)")
    shape = check_data_fits(model, data)
    example = torch.zeros(1, *shape)
    infos = describe_model(model, shape)
    known = [i.name for i in infos]
    if layers is not None:
        unknown = [n for n in layers if n not in known]
        if unknown:
            raise SpecError(f"no prunable layer named {', '.join(repr(n) for n in unknown)}; prunable: {', '.join(known)}")
    work = copy.deepcopy(model.module).eval()
    modules = dict(work.named_modules())
    table = _layer_table(work, infos, granularity, criterion)
    n = min(samples, len(data.y_test))
    if n < 1:
        raise SpecError(f"data '{data.name}' has no test samples to evaluate on")
    settings = {"granularity": granularity, "criterion": criterion, "ratios": ratios, "samples": n,
                "batch_size": batch_size, "latency": bool(latency if latency is not None else granularity == "channel")
                and granularity == "channel", "layers": list(layers) if layers is not None else None}

    if granularity == "channel":
        units = _channel_units(work, infos, table, settings, data, modules, example)
    else:
        units = _mask_units(work, infos, table, settings, data, modules)
    if layers is not None:
        units = [u for u in units if set(u.curve.layers) & set(layers)]
    if not units:
        raise SpecError(f"granularity '{granularity}' applies to none of the chosen layers of '{model.label}'")

    evaluated = _fold_batchnorm(work, modules)
    for unit in units:  # what restore() puts back: the weights as the evaluated model holds them
        unit.saved = {name: modules[name].weight.detach().clone() for name in unit.saved}
    engine = _Engine(evaluated, data.x_test[:n], data.y_test[:n], batch_size)
    t0 = time.perf_counter()
    dense_accuracy, dense_loss = engine.evaluate()
    if seconds is not None:
        per_eval = time.perf_counter() - t0
        estimate = per_eval * len(units) * len(ratios) * 0.7  # the suffix is on average a part of the model
        if estimate > seconds and n > 100:
            n = max(100, int(n * seconds / estimate))
            settings["samples"] = n
            engine = _Engine(evaluated, data.x_test[:n], data.y_test[:n], batch_size)
            dense_accuracy, dense_loss = engine.evaluate()

    total, done = len(units) * len(ratios), 0
    scan_start = time.perf_counter()
    complete = True
    for unit in units:
        if cancel is not None and cancel.is_set():
            complete = False
            break
        engine.prepare(unit.changed)
        for ratio in ratios:
            if cancel is not None and cancel.is_set():
                complete = False
                break
            try:
                kept = unit.apply(ratio)
                acc, loss = engine.evaluate()
            finally:
                unit.restore(modules)
            c = unit.curve
            c.ratios.append(ratio)
            c.accuracy.append(acc)
            c.loss.append(loss)
            if kept is not None:
                c.kept_channels.append(kept)
            done += 1
            if callback is not None:
                elapsed = time.perf_counter() - scan_start
                callback(ScanProgress(done, total, elapsed / done * (total - done), c.name, ratio))
        if not complete:
            break
    scanned = [u.curve for u in units if u.curve.ratios]
    if settings["latency"] and complete:
        inputs = _record_inputs(work, [m for c in scanned for m in c.layers + c.consumers], example)
        for c in scanned:
            if cancel is not None and cancel.is_set():
                complete = False
                break
            c.latency = _channel_latency(work, c, inputs, latency_runs)
    what = "of its output channels (emulated removal: readers' input channels zeroed)" if granularity == "channel" else "of its weights"
    how = (f"each unit pruned alone at each ratio {what}, {criterion} scores, no fine-tuning; top-1 accuracy and mean "
           f"cross-entropy on the first {n:,} test samples of {data.name}")
    return Sensitivity(model.label, model.fingerprint(), data.name, settings, dense_accuracy, dense_loss, scanned, table,
                       complete, round(time.perf_counter() - start, 3), how)


# ---------------------------------------------------------------- caching


def cache_key(model: LoadedModel, data: Dataset, settings: dict) -> str:
    """A key that changes with the model's weights, the evaluation data and every scan setting.

    ``settings`` are :func:`scan`'s keyword arguments (defaults may be left out; they are filled in).
    """
    full = {"granularity": "unstructured", "criterion": "l1", "ratios": list(DEFAULT_RATIOS), "samples": 1000,
            "seconds": None, "layers": None, "latency": None, "latency_runs": 5, "batch_size": BATCH_SIZE}
    full |= {k: v for k, v in settings.items() if k not in ("callback", "cancel")}
    full["ratios"] = [float(r) for r in full["ratios"]]
    h = hashlib.sha256()
    h.update(model.fingerprint().encode())
    h.update(data.name.encode())
    n = min(int(full["samples"]), len(data.y_test))
    for t in (data.x_test[:n], data.y_test[:n], data.x_train[:256], data.y_train[:256]):  # eval + calibration
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    h.update(json.dumps(full, sort_keys=True, default=str).encode())
    return h.hexdigest()[:20]


def default_cache_dir() -> Path:
    """``$PRUNER_CACHE/sensitivity`` when set, else ``~/.cache/pruner/sensitivity``."""
    root = os.environ.get("PRUNER_CACHE")
    return Path(root) / "sensitivity" if root else Path.home() / ".cache" / "pruner" / "sensitivity"


def cached_scan(model: LoadedModel, data: Dataset, *, cache_dir: str | Path | None = None, **settings) -> Sensitivity:
    """:func:`scan`, stored as JSON under ``cache_dir`` by :func:`cache_key`; only complete scans are stored.

    A damaged cache file is ignored and rewritten.
    """
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = folder / f"{cache_key(model, data, settings)}.json"
    if path.is_file():
        try:
            return Sensitivity.load(path)
        except SpecError:
            pass
    result = scan(model, data, **settings)
    if result.complete:
        folder.mkdir(parents=True, exist_ok=True)
        result.save(path)
    return result


# ---------------------------------------------------------------- recommendation


@dataclass
class Recommendation:
    """Per-unit ratios meeting a target, the recipe that applies them, and the predicted outcome.

    ``predicted`` and ``uniform["predicted"]`` hold ``param_sparsity``, ``flop_reduction`` (of the prunable
    layers; ``None`` when FLOPs are unknown), ``accuracy_drop`` (the sum of each unit's drop at its ratio, read
    from the curves: it assumes the layers' losses add up) and ``accuracy`` (dense minus that drop).
    """

    target: str
    value: float
    ratios: dict[str, float]  # unit name -> ratio (of weights, or of output channels for channel)
    recipe: Recipe
    predicted: dict
    uniform: dict
    threshold: float  # the per-unit accuracy-drop threshold the allocation reached

    def to_dict(self) -> dict:
        return {"target": self.target, "value": self.value, "ratios": dict(self.ratios), "recipe": self.recipe.to_dict(),
                "predicted": dict(self.predicted), "uniform": {**self.uniform, "recipe": self.uniform["recipe"].to_dict()},
                "threshold": self.threshold}

    def summary(self) -> str:
        p, u = self.predicted, self.uniform["predicted"]
        return (f"recommended: {_pct(p['param_sparsity'])} parameter sparsity, {_pct(p['flop_reduction'])} FLOP reduction, "
                f"predicted accuracy {_pct(p['accuracy'])} (drop {_pct(p['accuracy_drop'])}); uniform {self.uniform['ratio']:.3f}: "
                f"{_pct(u['param_sparsity'])} sparsity, {_pct(u['flop_reduction'])} FLOPs, predicted accuracy "
                f"{_pct(u['accuracy'])} (drop {_pct(u['accuracy_drop'])})")


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2%}"


class _Model:
    """Predicts parameter sparsity, FLOP reduction and accuracy drop of per-unit ratios from a scan."""

    def __init__(self, sens: Sensitivity, units: list[UnitCurve]) -> None:
        self.sens, self.units = sens, units
        self.channel = sens.settings["granularity"] == "channel"
        self.layers = sens.layers
        self.total_w = sum(v["weights"] for v in self.layers.values())
        flops = [v["flops"] for v in self.layers.values()]
        self.total_f = None if any(f is None for f in flops) or not sum(flops) else sum(flops)
        self.reader_of = {r: u.name for u in units for r in u.consumers}
        self.unit_of = {m: u.name for u in units for m in u.layers}
        self.curves, self.damage = {}, {}
        for u in units:
            rs = [0.0] + list(u.ratios)
            drops = [0.0] + u.drop(sens.dense_accuracy)
            env, top = [], 0.0
            for d in drops:
                top = max(top, d)
                env.append(top)  # the more removed, the worse: a later lucky ratio does not lower the curve
            self.curves[u.name] = (rs, env)
            # What the allocation ranks by: the accuracy drop, plus the loss rise as a tie-breaker, so that among
            # layers whose accuracy does not move yet the one whose loss rises least gives up more.
            rises = [0.0] + [max(0.0, v - sens.dense_loss) for v in u.loss]
            damage, top = [], 0.0
            for d, r in zip(env, rises, strict=True):
                top = max(top, d + LOSS_WEIGHT * r)
                damage.append(top)
            self.damage[u.name] = (rs, damage)

    def max_ratio(self, name: str) -> float:
        return self.curves[name][0][-1]

    def kept_fractions(self, ratios: dict[str, float]) -> dict[str, float]:
        kept = {}
        by = {u.name: u for u in self.units}
        for name, info in self.layers.items():
            if self.channel:
                frac = 1.0
                own = self.unit_of.get(name)
                if own is not None:
                    out = by[own].channels
                    frac *= (out - round_channels(out, round(ratios.get(own, 0.0) * out), None)) / out
                src = self.reader_of.get(name)
                if src is not None:
                    out = by[src].channels
                    frac *= (out - round_channels(out, round(ratios.get(src, 0.0) * out), None)) / out
            else:
                g = info["groups"]
                frac = 1 - round(ratios.get(name, 0.0) * g) / g
            kept[name] = frac
        return kept

    def predict(self, ratios: dict[str, float]) -> dict:
        kept = self.kept_fractions(ratios)
        sparsity = 1 - sum(v["weights"] * kept[k] for k, v in self.layers.items()) / self.total_w
        flops = None
        if self.total_f:
            flops = 1 - sum(v["flops"] * kept[k] for k, v in self.layers.items()) / self.total_f
        drop = sum(self.drop(u.name, ratios.get(u.name, 0.0)) for u in self.units)
        return {"param_sparsity": sparsity, "flop_reduction": flops, "accuracy_drop": drop,
                "accuracy": self.sens.dense_accuracy - drop}

    def drop(self, name: str, r: float) -> float:
        rs, env = self.curves[name]
        if r <= 0:
            return 0.0
        for j in range(1, len(rs)):
            if r <= rs[j] + 1e-12:
                w = (r - rs[j - 1]) / (rs[j] - rs[j - 1])
                return env[j - 1] + w * (env[j] - env[j - 1])
        return env[-1]

    def ratio_at(self, name: str, t: float) -> float:
        """The largest ratio whose (monotone, interpolated) damage (drop + LOSS_WEIGHT x loss rise) is at most ``t``."""
        rs, env = self.damage[name]
        for j in range(1, len(rs)):
            if env[j] > t:
                if env[j - 1] > t:
                    return rs[j - 1]
                return rs[j - 1] + (t - env[j - 1]) / (env[j] - env[j - 1]) * (rs[j] - rs[j - 1])
        return rs[-1]


def _round_up(r: float, cap: float) -> float:
    return min(math.ceil(r * 1e4 - 1e-9) / 1e4, cap)


def recommend(
    sens: Sensitivity,
    target: str,
    value: float,
    *,
    exclude: list[str] | None = None,
    base: Recipe | None = None,
) -> Recommendation:
    """Allocate per-unit ratios from the curves so that ``target`` is met and sensitive units keep more.

    Every unit gets the largest ratio whose accuracy drop (its curve made monotone, interpolated between the
    scanned ratios) is at most a common threshold; the threshold is bisected until the target is met, and
    between two thresholds the ratios are blended so the target is met closely rather than overshot. Ratios
    never exceed the largest scanned one (beyond it nothing is known).

    Args:
        sens: a complete :func:`scan` result.
        target: ``"sparsity"`` (parameter sparsity of the prunable layers), ``"flops"`` (FLOP reduction) or
            ``"drop"`` (maximum predicted accuracy drop), see ``TARGETS``.
        value: the fraction: sparsity or FLOP reduction in [0, 1), or the accuracy drop allowed (e.g. 0.01).
        exclude: layers to leave alone; default (None) the layers whose outputs are the model's outputs, as
            in a recipe.
        base: a recipe whose fine-tuning, schedule and seed the recommended recipe keeps (default: defaults).

    Returns:
        A :class:`Recommendation` with the recipe and, for comparison, the uniform ratio meeting the same
        target with its predicted outcome.

    Raises:
        TargetError: the target cannot be met; the message names the closest achievable value.
        SpecError: an unknown target, an incomplete scan, or an ``exclude`` name that is not a layer.
    """
    if target not in TARGETS:
        raise SpecError(f"unknown target '{target}'; valid: {', '.join(f'{k} ({v})' for k, v in TARGETS.items())}")
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise SpecError(f"the {target} target must be a number; got {value!r}")
    if not sens.complete:
        raise SpecError("the sensitivity scan was cancelled before it finished; run it to the end to recommend ratios")
    if exclude is not None:
        unknown = [n for n in exclude if n not in sens.layers]
        if unknown:
            raise SpecError(f"exclude: no prunable layer named {', '.join(map(repr, unknown))}; valid: {', '.join(sens.layers)}")
        excluded = set(exclude)
    else:
        excluded = {k for k, v in sens.layers.items() if v["is_output"]}
    units = [u for u in sens.units if not set(u.layers) & excluded and u.ratios]
    if not units:
        raise TargetError("no scanned layer is left to prune once the excluded layers are left out")
    model = _Model(sens, units)
    if target == "flops" and model.total_f is None:
        raise SpecError("the scan has no FLOP counts for this model; use target 'sparsity' or 'drop'")
    key = {"sparsity": "param_sparsity", "flops": "flop_reduction", "drop": "accuracy_drop"}[target]
    caps = {u.name: model.max_ratio(u.name) for u in units}
    top = model.predict(caps)
    thresholds = sorted({e for rs, env in model.damage.values() for e in env})
    t_max = thresholds[-1]

    def alloc(t: float) -> dict[str, float]:
        return {u.name: model.ratio_at(u.name, t) for u in units}

    def blended(lo: dict, hi: dict, a: float) -> dict[str, float]:
        return {k: _round_up(lo[k] + a * (hi[k] - lo[k]), caps[k]) for k in lo}

    if target == "drop":
        if value < 0:
            raise TargetError(f"a maximum accuracy drop of {value} cannot be met (pruning never gains accuracy on the "
                              "curves); the closest achievable is 0 (prune nothing, or only where the curves show no drop)")

        def ok(r: dict) -> bool:
            return model.predict(r)[key] <= value + 1e-12

        tl, th = 0.0, t_max
        if ok(alloc(t_max)):
            lo = hi = alloc(t_max)
            tl = t_max
        else:
            for _ in range(60):
                mid = (tl + th) / 2
                tl, th = (mid, th) if ok(alloc(mid)) else (tl, mid)
            lo, hi = alloc(tl), alloc(th)
        al, ah = 0.0, 1.0
        for _ in range(40):
            mid = (al + ah) / 2
            al, ah = (mid, ah) if ok(blended(lo, hi, mid)) else (al, mid)
        ratios = blended(lo, hi, al)
        if not ok(ratios):  # rounding the ratios up tipped it over: round the lower allocation down instead
            ratios = {k: math.floor(v * 1e4) / 1e4 for k, v in lo.items()}
        threshold = tl
    else:
        if not 0 <= value < 1:
            raise TargetError(f"a {TARGETS[target].split(':')[0]} target must be a fraction in [0, 1); got {value!r}")
        best = top[key]
        if value > best + 1e-12:
            raise TargetError(
                f"a {TARGETS[target].split(':')[0]} of {value:.2%} cannot be met: pruning every scanned layer at the "
                f"largest scanned ratio ({max(caps.values()):g}) reaches {best:.2%}; the closest achievable is {math.floor(best * 1e4) / 1e4:.4f}"
                " (scan higher ratios, or exclude fewer layers)"
            )

        def ok(r: dict) -> bool:
            return model.predict(r)[key] >= value - 1e-12

        tl, th = -1e-9, t_max
        if ok(alloc(0.0)):
            th = 0.0
        for _ in range(60):
            mid = (tl + th) / 2
            if ok(alloc(mid)):
                th = mid
            else:
                tl = mid
        # when pruning only where nothing is lost already overshoots, scale that allocation down from nothing
        lo, hi = ({u.name: 0.0 for u in units} if th <= 0.0 else alloc(max(tl, 0.0))), alloc(th)
        al, ah = 0.0, 1.0
        if ok(blended(lo, hi, 0.0)):
            ah = 0.0
        for _ in range(40):
            mid = (al + ah) / 2
            if ok(blended(lo, hi, mid)):
                ah = mid
            else:
                al = mid
        ratios = blended(lo, hi, ah)  # ratios only rounded up: alloc(th) met it, so this does too
        threshold = th
    uniform_ratio = _uniform(model, units, caps, key, value, target)
    uniform_ratios = {u.name: uniform_ratio for u in units}
    return Recommendation(
        target, float(value), ratios, _recipe(sens, units, ratios, exclude, base), model.predict(ratios),
        {"ratio": uniform_ratio, "recipe": _recipe(sens, units, uniform_ratios, exclude, base),
         "predicted": model.predict(uniform_ratios)},
        float(threshold),
    )


def _uniform(model: _Model, units: list[UnitCurve], caps: dict, key: str, value: float, target: str) -> float:
    """The one ratio for every unit meeting the same target (for ``drop``: the largest within it)."""
    cap = min(caps.values())

    def at(r: float) -> float:
        return model.predict({u.name: r for u in units})[key]

    lo, hi = 0.0, cap
    if target == "drop":
        if at(hi) <= value:
            return hi
        for _ in range(50):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if at(mid) <= value else (lo, mid)
        return math.floor(lo * 1e4) / 1e4
    hi = 0.9999
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if at(mid) >= value else (mid, hi)
    return min(math.ceil(hi * 1e4) / 1e4, 0.9999)


def _recipe(sens: Sensitivity, units: list[UnitCurve], ratios: dict[str, float], exclude, base: Recipe | None) -> Recipe:
    base = base or Recipe()
    per_layer = {m: ratios[u.name] for u in units for m in u.layers if ratios.get(u.name, 0) > 0}
    return base.replace(granularity=sens.settings["granularity"], criterion=sens.settings["criterion"], scope="layerwise",
                        sparsity=0.0, layers=per_layer, exclude=exclude, round_to=None)


# ---------------------------------------------------------------- applying


def global_baseline(sens: Sensitivity, target: str, value: float) -> Recipe | None:
    """The one-global-threshold recipe for the same parameter-sparsity target, with the scan's granularity and
    criterion: the baseline a recommendation should be checked against besides the uniform one (per-layer
    curves miss how damage compounds across layers, which a global threshold on comparable scores can avoid).

    None where it is not comparable: a target other than sparsity, or ``channel`` (its global ratio counts
    channels, not parameters).
    """
    if target != "sparsity" or sens.settings["granularity"] == "channel":
        return None
    total = sum(v["weights"] for v in sens.layers.values())
    included = sum(v["weights"] for v in sens.layers.values() if not v["is_output"])
    share = min(float(value) * total / included, 0.99) if included else float(value)  # output layers stay whole
    return Recipe.from_dict({"granularity": sens.settings["granularity"], "criterion": sens.settings["criterion"],
                             "scope": "global", "sparsity": round(math.ceil(share * 1e4) / 1e4, 4),
                             "finetune": {"epochs": 0}}, source="global baseline")


@dataclass
class Measured:
    """What a recipe did when applied without fine-tuning: measured, on the evaluation subset."""

    accuracy: float
    loss: float
    param_sparsity: float  # of the prunable layers' weights, zero or removed
    flop_reduction: float  # of the prunable layers' FLOPs, masked weights' multiply-adds counted as removed
    samples: int
    module: nn.Module = field(repr=False)

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "module"}


def apply_and_measure(model: LoadedModel, data: Dataset, recipe: Recipe, *, samples: int | None = None) -> Measured:
    """Prune a copy of ``model`` with ``recipe`` in one shot and no fine-tuning, and measure it.

    Args:
        model: the model (not modified).
        data: calibration (training split) and evaluation (the first ``samples`` test images, default all).
        recipe: the recipe; its schedule and fine-tuning are replaced by one shot without fine-tuning.

    Returns:
        :class:`Measured` accuracy, loss, parameter sparsity and FLOP reduction of the prunable layers.

    Raises:
        Everything :func:`~pruner_core.pipeline.run.prune` raises.
    """
    from pruner_core.pipeline.run import prune

    shape = check_data_fits(model, data)
    oneshot = recipe.replace(schedule={"kind": "oneshot", "steps": 1}, finetune={**recipe.to_dict()["finetune"], "epochs": 0})
    pruned = prune(model, data, oneshot)
    _, flops = layer_flops(model.module, torch.zeros(1, *shape))
    after = {name: mod for name, mod, _ in prunable_layers(pruned.module)}
    total_w = kept_w = total_f = kept_f = 0.0
    for name, mod, _ in prunable_layers(model.module):
        n = mod.weight.numel()
        nnz = int(torch.count_nonzero(after[name].weight.detach())) if name in after else 0
        total_w += n
        kept_w += nnz
        f = flops.get(name, 0)
        total_f += f
        kept_f += f * nnz / n
    n = len(data.y_test) if samples is None else min(samples, len(data.y_test))
    engine = _Engine(copy.deepcopy(pruned.module), data.x_test[:n], data.y_test[:n], BATCH_SIZE)
    acc, loss = engine.evaluate()
    return Measured(acc, loss, 1 - kept_w / total_w, 1 - kept_f / total_f if total_f else 0.0, n, pruned.module)


@dataclass
class Refined:
    """A recommendation chosen by measurement among candidate allocations that meet the same target.

    ``candidates`` rows: ``name``, ``accuracy`` (on the selection images), ``param_sparsity``; ``chosen`` names
    the winner. Selection uses training images (``selection``), never the test images figures are reported on.
    """

    recommendation: Recommendation
    chosen: str
    candidates: list[dict]
    selection: str


def refine(model: LoadedModel, data: Dataset, sens: Sensitivity, rec: Recommendation, *, samples: int = 1000,
           mixes: Sequence[float] = (0.25, 0.5, 0.75)) -> Refined:
    """Check the curve-based allocation against the one-global-threshold one and blends of the two, by pruning
    each (no fine-tuning) and measuring it, and keep the most accurate.

    Per-layer curves are measured one layer at a time; in deep networks with BatchNorm the damage of several
    pruned layers compounds beyond their sum, where a global threshold on comparable scores can do better.
    Blending per-layer ratios keeps the parameter sparsity (it is linear in them), so every candidate meets the
    target. Only for a parameter-sparsity target with a masking granularity (see :func:`global_baseline`);
    otherwise the recommendation is returned as the only candidate.

    Args:
        samples: how many training images (the last ones of the split) to choose on.
    """
    from pruner_core.graph.layers import weight_sparsity
    from pruner_core.pipeline.run import prune

    n = min(samples, len(data.y_train))
    if n < 1:
        raise SpecError(f"refine needs training images to choose on; got samples={samples} and "
                        f"{len(data.y_train)} training images in '{data.name}'")
    selection = replace(data, x_test=data.x_train[-n:], y_test=data.y_train[-n:])
    label = f"the last {n:,} training images of {data.name}"
    baseline = global_baseline(sens, rec.target, rec.value)
    candidates = {"curves": rec.recipe}
    if baseline is not None:
        global_ratios = {k: v for k, v in weight_sparsity(prune(model, data, baseline).module).items() if v > 0}
        curve_ratios = dict(rec.recipe.layers)
        names = sorted(set(global_ratios) | set(curve_ratios))
        for a in mixes:
            mixed = {k: round((1 - a) * curve_ratios.get(k, 0.0) + a * global_ratios.get(k, 0.0), 4) for k in names}
            candidates[f"{1 - a:.0%} curves + {a:.0%} global"] = rec.recipe.replace(layers={k: v for k, v in mixed.items() if v > 0})
        candidates["global threshold"] = rec.recipe.replace(layers=global_ratios)
    rows, best = [], None
    for name, recipe in candidates.items():
        m = apply_and_measure(model, selection, recipe)
        rows.append({"name": name, "accuracy": m.accuracy, "param_sparsity": m.param_sparsity})
        if best is None or m.accuracy > best[1]:
            best = (name, m.accuracy, recipe)
    chosen, recipe = best[0], best[2]
    units = [u for u in sens.units if u.name in rec.ratios]
    ratios = {u.name: float(recipe.layers.get(u.name, 0.0)) for u in units}
    refined = replace(rec, ratios=ratios, recipe=recipe, predicted=_Model(sens, units).predict(ratios))
    return Refined(refined, chosen, rows, label)
