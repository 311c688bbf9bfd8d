"""torch.fx plumbing shared by the statistics and the criteria: which activation and BatchNorm follow a layer, and an
interpreter that counts zeros after activations (APoZ; the near-zero share after smooth ones) and times layers.
"""

from __future__ import annotations

import operator
import time

import torch
import torch.fx as fx
from torch import nn

F = torch.nn.functional
# What follows a layer decides the statistic read after it:
# "zero": ReLU-like, exact zeros: APoZ, the average percentage of zeros;
# "leaky": LeakyReLU/PReLU: APoZ counts the negative side (a <= 0), where the unit passes only a small slope;
# "smooth": GELU, SiLU, Tanh, ...: no exact zeros: the near-zero share, |a| < NEAR_ZERO, under its own name.
ACTIVATION_KINDS: dict[object, str] = {
    nn.ReLU: "zero", nn.ReLU6: "zero", torch.relu: "zero", F.relu: "zero", F.relu6: "zero", torch.relu_: "zero",
    "relu": "zero", "relu_": "zero",
    nn.LeakyReLU: "leaky", nn.PReLU: "leaky", F.leaky_relu: "leaky", "leaky_relu": "leaky",
    nn.GELU: "smooth", nn.SiLU: "smooth", nn.Tanh: "smooth", nn.Sigmoid: "smooth", nn.Hardswish: "smooth",
    nn.Mish: "smooth", nn.ELU: "smooth", nn.Softplus: "smooth", F.gelu: "smooth", F.silu: "smooth",
    torch.tanh: "smooth", torch.sigmoid: "smooth", F.hardswish: "smooth", F.mish: "smooth", F.elu: "smooth",
    "tanh": "smooth", "sigmoid": "smooth",
}
NEAR_ZERO = 0.01  # |a| below this counts as near zero after a smooth activation
STATISTICS = {"zero": "APoZ (exact zeros)", "leaky": "APoZ (negative side, a <= 0)",
              "smooth": f"near-zero share (|a| < {NEAR_ZERO})"}
NORM_MODULES = (nn.BatchNorm1d, nn.BatchNorm2d)
# Followed through on the way to the activation (channels keep their identity), but carry no BatchNorm scale.
PASS_THROUGH_NORMS = (nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm1d, nn.InstanceNorm2d)
ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add}


def trace(module: nn.Module) -> tuple[fx.GraphModule | None, str | None]:
    """``torch.fx.symbolic_trace`` of ``module``, or ``(None, why)`` where it cannot be traced (data-dependent control
    flow and the like). The graph shares the module's submodules and parameters: running it reads the module."""
    try:
        return fx.symbolic_trace(module), None
    except Exception as e:  # tracing runs the user's forward symbolically: anything may be raised
        return None, f"torch.fx could not trace the model ({type(e).__name__})"


def activation_kind(node: fx.Node, modules: dict[str, nn.Module]) -> str | None:
    """``"zero"``, ``"leaky"`` or ``"smooth"`` for an activation node (see ``ACTIVATION_KINDS``), else None."""
    if node.op == "call_module":
        return ACTIVATION_KINDS.get(type(modules.get(node.target)))
    if node.op in ("call_function", "call_method"):
        try:
            return ACTIVATION_KINDS.get(node.target)
        except TypeError:  # an unhashable target
            return None
    return None


def follow(graph: fx.GraphModule, layer_names: list[str]) -> dict[str, tuple[fx.Node | None, str | None]]:
    """For each layer: the activation node its output reaches (through norms and additions), and the name of the norm
    right after it (BatchNorm, or an affine GroupNorm/LayerNorm: its |gamma| scales the channels)."""
    modules = dict(graph.named_modules())
    found: dict[str, tuple[fx.Node | None, str | None]] = {}
    for node in graph.graph.nodes:
        if node.op != "call_module" or node.target not in layer_names:
            continue
        cur, bn = node, None
        act = None
        while len(cur.users) == 1:
            user = next(iter(cur.users))
            if activation_kind(user, modules) is not None:
                act = user
                break
            if user.op == "call_module" and isinstance(modules.get(user.target), NORM_MODULES):
                if cur is node:  # the BatchNorm right after the layer scales its channels
                    bn = user.target
                cur = user
            elif user.op == "call_module" and isinstance(modules.get(user.target), PASS_THROUGH_NORMS):
                if cur is node and getattr(modules[user.target], "weight", None) is not None:
                    bn = user.target  # a GroupNorm/LayerNorm right after the layer scales its channels too
                cur = user
            elif user.op == "call_function" and user.target in ADD_FUNCTIONS:
                cur = user
            else:
                break
        found[node.target] = (act, bn)
    return found


class ActivationCounter(fx.Interpreter):
    """Runs the graph; for the watched activation nodes counts, per output channel, the values its statistic counts
    (zeros, the negative side, or near-zero values: ``STATISTICS``) and sums ``|a|``; times the timed layers (by
    module name). Channels are dimension 1, or the last one after a Linear layer (``[N, T, C]`` sequences)."""

    def __init__(self, graph: fx.GraphModule, watched: set[fx.Node], timed: set[str],
                 channels_last: set[fx.Node] = frozenset()) -> None:
        super().__init__(graph)
        self.watched = watched
        self.timed = timed
        modules = dict(graph.named_modules())
        self.kinds = {n: activation_kind(n, modules) for n in watched}
        self.channels_last = channels_last
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
            x = out.movedim(-1, 1) if n in self.channels_last and out.dim() > 2 else out
            flat = x.reshape(x.shape[0], x.shape[1], -1)
            per_channel = flat.shape[0] * flat.shape[2]
            kind = self.kinds.get(n)
            if kind == "zero":
                counted = per_channel - torch.sign(flat).sum(2).sum(0).double()
            else:
                hit = flat <= 0 if kind == "leaky" else flat.abs() < NEAR_ZERO
                counted = hit.sum(2).sum(0).double()
            self.zeros[n] = self.zeros.get(n, 0) + counted
            magnitude = flat if kind == "zero" else flat.abs()  # after a ReLU every value is >= 0 already
            self.sums[n] = self.sums.get(n, 0) + magnitude.sum(2).sum(0).double()
            self.counts[n] = self.counts.get(n, 0) + per_channel
        return out
