"""torch.fx plumbing shared by the statistics and the criteria: which activation and BatchNorm follow a layer, and an
interpreter that counts zeros after activations (APoZ) and times layers.
"""

from __future__ import annotations

import operator
import time

import torch
import torch.fx as fx
from torch import nn

ACTIVATION_MODULES = (nn.ReLU, nn.ReLU6)
ACTIVATION_FUNCTIONS = {torch.relu, torch.nn.functional.relu, torch.nn.functional.relu6, torch.relu_}
ACTIVATION_METHODS = {"relu", "relu_"}
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
            elif user.op == "call_module" and isinstance(modules.get(user.target), PASS_THROUGH_NORMS):
                cur = user
            elif user.op == "call_function" and user.target in ADD_FUNCTIONS:
                cur = user
            else:
                break
        found[node.target] = (act, bn)
    return found


class ActivationCounter(fx.Interpreter):
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
