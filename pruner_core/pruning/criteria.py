"""The registry of importance criteria: each scores the groups of weights a granularity defines (higher = kept).

A criterion is an object with one method, :meth:`Criterion.score`; everything else (masks, global thresholds,
channel plans) is derived from the scores in :mod:`pruner_core.pruning.select`. Adding one takes a few lines::

    from pruner_core.pruning.criteria import Criterion, register_criterion

    class MaxMagnitude(Criterion):
        name, needs, description = "max", "weights", "largest |w| in each group"

        def score(self, job):
            for name, module, _ in job.layers:
                yield name, job.group_reduce(module.weight.detach().abs(), torch.amax)

    register_criterion(MaxMagnitude())  # now valid in recipes, the CLI and the Prune page
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pruner_core.errors import SpecError
from pruner_core.graph.fx import NORM_MODULES, ActivationCounter, activation_kind, follow, trace
from pruner_core.graph.layers import Layer, evaluating
from pruner_core.pruning.granularities import GRANULARITIES, Granularity, granularity

Scores = Iterator[tuple[str, torch.Tensor]]  # (layer name, group scores) in the job's layer order


@dataclass
class ScoreJob:
    """Everything a criterion needs: the module, the layers to score, the granularity and calibration data.

    ``data`` is a :class:`~pruner_core.io.data.Dataset` (or None); the first ``batches * batch_size`` training
    samples calibrate.
    """

    module: nn.Module
    layers: list[Layer]
    granularity: Granularity
    criterion: str
    seed: int = 0
    data: object = None
    batches: int = 4
    batch_size: int = 64

    def group_reduce(self, t: torch.Tensor, reduce: Callable = torch.sum) -> torch.Tensor:
        """``t`` (shaped like a weight) reduced over each group's trailing dimensions, as a float tensor."""
        dims = tuple(range(self.granularity.kept_dims(t.dim()), t.dim()))
        return (reduce(t, dim=dims) if dims else t).float()

    def calibration(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.data is None:
            raise SpecError(f"criterion '{self.criterion}' needs calibration data; load a data set or use l1 or l2")
        n = self.batches * self.batch_size
        return self.data.x_train[:n], self.data.y_train[:n]

    def calibration_batches(self):
        x, y = self.calibration()
        for i in range(0, len(x), self.batch_size):
            yield x[i : i + self.batch_size], y[i : i + self.batch_size]


class Criterion:
    """One importance criterion. Subclasses set the attributes and implement :meth:`score`.

    Attributes:
        name: its key in recipes and on the command line.
        granularities: the granularities it can score (default: all registered).
        needs: what it reads: ``weights``, ``gradients``, ``activations`` or ``bn``.
        description: one line for people.
    """

    name: str = ""
    granularities: frozenset[str] = frozenset()
    needs: str = "weights"
    description: str = ""

    def score(self, job: ScoreJob) -> Scores:
        """Yield ``(layer name, scores)`` for every layer of ``job``, scores shaped like the granularity's groups."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<criterion {self.name}>"


CRITERIA: dict[str, Criterion] = {}


def register_criterion(criterion: Criterion) -> Criterion:
    """Add ``criterion`` to the registry (by default for every granularity); returns it.

    Raises:
        SpecError: a name that is taken or not a plain identifier, or an unknown granularity.
    """
    if not criterion.name.isidentifier() or criterion.name in CRITERIA:
        why = "is taken" if criterion.name in CRITERIA else "is not a plain identifier"
        raise SpecError(f"criterion name '{criterion.name}' {why}; registered: {', '.join(CRITERIA)}")
    if not criterion.granularities:
        criterion.granularities = frozenset(GRANULARITIES)
    for g in criterion.granularities:
        granularity(g)
    CRITERIA[criterion.name] = criterion
    return criterion


def valid_pairs() -> list[tuple[str, str]]:
    """Every (granularity, criterion) pair that can be pruned with."""
    return [(g, c.name) for g in GRANULARITIES for c in CRITERIA.values() if g in c.granularities]


def check_pair(granularity_name: str, criterion: str) -> None:
    """Raise :class:`SpecError` naming the bad value and the valid choices when the pair is impossible."""
    granularity(granularity_name)
    if criterion not in CRITERIA:
        raise SpecError(f"unknown criterion '{criterion}'; valid: {', '.join(CRITERIA)}")
    if granularity_name not in CRITERIA[criterion].granularities:
        ok = ", ".join(c for c in CRITERIA if granularity_name in CRITERIA[c].granularities)
        pairs = "; ".join(f"{g}: {', '.join(c for gg, c in valid_pairs() if gg == g)}" for g in GRANULARITIES)
        raise SpecError(
            f"criterion '{criterion}' cannot prune at granularity '{granularity_name}'; with {granularity_name} use:"
            f" {ok}. Valid pairs: {pairs}"
        )


# ---------------------------------------------------------------- the built-in criteria


class L1(Criterion):
    name, needs, description = "l1", "weights", "L1 norm of the weights in each group"

    def score(self, job: ScoreJob) -> Scores:
        for name, mod, _ in job.layers:
            yield name, job.group_reduce(mod.weight.detach().abs())


class L2(Criterion):
    name, needs, description = "l2", "weights", "L2 norm of the weights in each group"

    def score(self, job: ScoreJob) -> Scores:
        for name, mod, _ in job.layers:
            w = mod.weight.detach()
            dims = tuple(range(job.granularity.kept_dims(w.dim()), w.dim()))
            yield name, (torch.linalg.vector_norm(w, dim=dims) if dims else w.abs()).float()


class Random(Criterion):
    name, needs, description = "random", "weights", "seeded random scores (a baseline)"

    def score(self, job: ScoreJob) -> Scores:
        gen = torch.Generator().manual_seed(job.seed)
        for name, mod, _ in job.layers:
            yield name, torch.rand(job.granularity.group_shape(mod.weight.shape), generator=gen)


class Taylor(Criterion):
    name, needs = "taylor", "gradients"
    description = "first-order Taylor |w * dL/dw| summed over the group, from a few batches"

    def score(self, job: ScoreJob) -> Scores:
        # autograd.grad returns the gradients without touching any .grad: the caller's module is left as it was
        weights = [mod.weight for _, mod, _ in job.layers]
        flags = [w.requires_grad for w in weights]
        totals: list[torch.Tensor | float] = [0.0] * len(weights)
        count = 0
        try:
            for w in weights:
                w.requires_grad_(True)
            with evaluating(job.module), torch.enable_grad():
                for xb, yb in job.calibration_batches():
                    loss = F.cross_entropy(job.module(xb), yb)
                    grads = torch.autograd.grad(loss, weights, allow_unused=True)
                    for i, (w, g) in enumerate(zip(weights, grads, strict=True)):
                        if g is not None:
                            totals[i] = totals[i] + job.group_reduce(w.detach() * g).abs()
                    count += 1
        finally:
            for w, flag in zip(weights, flags, strict=True):
                w.requires_grad_(flag)
        for (name, mod, _), total in zip(job.layers, totals, strict=True):
            if isinstance(total, float):  # forward() never used this layer
                total = torch.zeros(job.granularity.group_shape(mod.weight.shape))
            yield name, (total / max(count, 1)).float()


class Wanda(Criterion):
    name, needs, description = "wanda", "activations", "|w| x L2 norm of its input feature"
    granularities = frozenset({"unstructured", "nm"})

    def score(self, job: ScoreJob) -> Scores:
        squares: dict[str, torch.Tensor] = {}

        def collect(name: str, channel_dim: int | None):
            def hook(_mod, args):
                x = args[0].detach().float()
                dim = channel_dim if channel_dim is not None else x.dim() - 1
                squares[name] = squares.get(name, 0) + x.pow(2).sum([d for d in range(x.dim()) if d != dim])

            return hook

        for name, mod, kind in job.layers:
            if kind == "Embedding":
                raise SpecError(f"layer '{name}' is an embedding: its inputs are token ids, which have no norm for "
                                "wanda to weigh (use l1 or l2, or exclude it)")
            if kind in ("Recurrent", "Attention"):
                raise SpecError(f"layer '{name}' is a {kind.lower()} weight matrix, whose inputs wanda does not see "
                                "(use l1 or l2, or exclude it)")
            if getattr(mod, "groups", 1) != 1:
                raise SpecError(f"layer '{name}' is a grouped convolution; wanda needs groups=1 (use l1 or l2)")
        handles = [mod.register_forward_pre_hook(collect(name, None if kind == "Linear" else 1))
                   for name, mod, kind in job.layers]
        try:
            with evaluating(job.module), torch.no_grad():
                for xb, _ in job.calibration_batches():
                    job.module(xb)
        finally:
            for h in handles:
                h.remove()
        for name, mod, _ in job.layers:
            w = mod.weight.detach()
            norm = squares.get(name, torch.zeros(w.shape[1])).sqrt()
            yield name, (w.abs() * norm.reshape(1, -1, *([1] * (w.dim() - 2)))).float()


def _followers(job: ScoreJob):
    """The fx graph and, per layer, (activation node, BatchNorm name) that follow it."""
    graph, why = trace(job.module)
    if graph is None:
        raise SpecError(f"criterion '{job.criterion}' needs the layer graph, but {why}; use l1 or l2")
    return graph, follow(graph, [name for name, _, _ in job.layers])


class APoZ(Criterion):
    name, needs, description = "apoz", "activations", "1 - APoZ of the channel after its activation"
    granularities = frozenset({"channel"})

    def score(self, job: ScoreJob) -> Scores:
        graph, links = _followers(job)
        modules = dict(graph.named_modules())
        for name, _, _ in job.layers:
            act = links.get(name, (None, None))[0]
            if act is None:
                raise SpecError(f"layer '{name}': no ReLU follows it, so its APoZ is undefined; use l1 or l2")
            if activation_kind(act, modules) == "smooth":
                raise SpecError(f"layer '{name}': a smooth activation ({act.target if act.op == 'call_module' else act}"
                                ") follows it, which gives no zeros, so its APoZ is undefined; use l1 or l2")
        counter = ActivationCounter(graph, {links[name][0] for name, _, _ in job.layers}, timed=set(),
                                    channels_last={links[name][0] for name, _, kind in job.layers if kind == "Linear"})
        with evaluating(job.module), torch.no_grad():
            for xb, _ in job.calibration_batches():
                counter.run(xb)
        for name, _, _ in job.layers:
            act = links[name][0]
            if act not in counter.counts:
                raise SpecError(f"layer '{name}': its ReLU never ran on the calibration data; use l1 or l2")
            yield name, (1 - counter.zeros[act].double() / counter.counts[act]).float()


class BNScale(Criterion):
    name, needs, description = "bn_scale", "bn", "|gamma| of the BatchNorm that follows the layer"
    granularities = frozenset({"channel"})

    def score(self, job: ScoreJob) -> Scores:
        _, links = _followers(job)
        modules = dict(job.module.named_modules())
        for name, _, _ in job.layers:
            bn = links.get(name, (None, None))[1]
            norm = modules.get(bn) if bn is not None else None
            gamma = getattr(norm, "weight", None) if isinstance(norm, NORM_MODULES) else None
            if gamma is None:
                raise SpecError(
                    f"layer '{name}': no affine BatchNorm directly follows it, so it has no BN scale; use l1 or l2"
                )
            yield name, gamma.detach().abs().float()


for _criterion in (L1(), L2(), Random(), Taylor(), APoZ(), BNScale(), Wanda()):
    register_criterion(_criterion)
