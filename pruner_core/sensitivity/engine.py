"""Accuracy and loss of a model on an evaluation subset, re-running after a change only the part of the network the
change affects (the fx graph split at the changed layers)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn

from pruner_core.graph.fold import relu_in_place
from pruner_core.graph.fx import trace

BATCH_SIZE = 250  # evaluation batch size


def _touches(node: fx.Node, changed: set[str]) -> bool:
    if node.op == "call_module":
        return node.target in changed
    if node.op == "get_attr":
        return any(node.target == c or node.target.startswith(c + ".") for c in changed)
    return False


class SuffixEvaluator:
    """Accuracy and loss of the work model on the evaluation subset, re-running only what a change affects.

    With a traceable model, :meth:`prepare` splits the fx graph at the changed layers: a prefix computes (once)
    the values the rest needs, and a suffix is re-run per ratio. Otherwise every evaluation runs the model.

    Args:
        module: the model to evaluate, read as it is at each :meth:`evaluate` (moved to channels_last for images).
        x, y: the evaluation images and labels.
        batch_size: evaluation batch size.
    """

    def __init__(self, module: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = BATCH_SIZE) -> None:
        self.module, self.y = module, y
        if x.dim() == 4:  # convolutions and pooling run several times faster on CPU in channels_last
            module.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        self.batches = [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        # untraceable (data-dependent control flow and the like): evaluate the whole model every time
        self.graph: fx.GraphModule | None = trace(module)[0]
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
        relu_in_place(suffix_graph, modules)
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

    def evaluate(self) -> tuple[float, float]:
        """(top-1 accuracy, mean cross-entropy) of the work model as it is now, on every evaluation sample."""
        e = self.run()
        return e.accuracy, e.loss

    @torch.inference_mode()
    def run(self, enough: Callable[[torch.Tensor], bool] | None = None) -> Evaluation:
        """The work model as it is now, batch by batch; ``enough(correct so far)`` (bool per sample) ends it early,
        after any batch but the last."""
        correct, losses = [], []
        for i, (xb, yb) in enumerate(self.batches):
            if self.suffix is None:
                out = self.module(xb)
            elif self.copy_frontier:
                out = self.suffix(*(v.clone() for v in self.frontier[i]))
            else:
                out = self.suffix(*self.frontier[i])
            correct.append(out.argmax(1) == yb)
            losses.append(F.cross_entropy(out.float(), yb, reduction="none").double())
            if enough is not None and i + 1 < len(self.batches) and enough(torch.cat(correct)):
                break
        right, loss = torch.cat(correct), torch.cat(losses)
        return Evaluation(int(right.sum()) / len(right), float(loss.sum()) / len(right), len(right), right, loss)


@dataclass(frozen=True)
class Evaluation:
    """One evaluation: accuracy and mean loss over the ``samples`` first evaluation samples, which were right."""

    accuracy: float
    loss: float
    samples: int
    correct: torch.Tensor
    losses: torch.Tensor  # cross-entropy per sample

    def against(self, dense: Evaluation) -> tuple[float, float]:
        """(accuracy, loss) on all of ``dense``'s samples, estimated from these first ones: the dense figures plus
        the paired difference on the samples both saw (exactly the figures when every sample was evaluated)."""
        k = self.samples
        if k == dense.samples:
            return self.accuracy, self.loss
        accuracy = dense.accuracy + (int(self.correct.sum()) - int(dense.correct[:k].sum())) / k
        loss = dense.loss + float(self.losses.sum() - dense.losses[:k].sum()) / k
        return min(max(accuracy, 0.0), 1.0), max(loss, 0.0)
