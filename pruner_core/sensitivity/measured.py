"""A recommendation decided by measurement: candidate allocations that meet the target are pruned and measured, then
the best is improved by moves that shift pruning from one unit to another (the target held exactly), each move
measured on the whole pruned network (NetAdapt's greedy steps, guided by the curves: the unit whose curve says it
loses least per weight gives more, the one that loses most gives less).

Three sets of images, never mixed: the search *chooses* on training images (many, so small differences are
measurable; their accuracy is optimistic, but only the ranking is read from them); the chosen allocation's accuracy is
then *measured* on a held-out part of the test split (:func:`held_out`: the first images, which the scan also uses)
and shown as the expected accuracy, labelled so: a measurement, not a sum of drops; the rest of the test split is
left to *report* on, as Compare and the checks do.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from pruner_core.errors import SpecError
from pruner_core.graph.fold import fold_batchnorm
from pruner_core.graph.layers import evaluating, weight_sparsity
from pruner_core.io.data import Dataset, batches, take
from pruner_core.io.models import LoadedModel
from pruner_core.pipeline.run import prune
from pruner_core.pruning.recipe import Recipe
from pruner_core.sensitivity.allocate import global_baseline
from pruner_core.sensitivity.engine import BATCH_SIZE
from pruner_core.sensitivity.predict import Predictor
from pruner_core.sensitivity.refine import one_shot
from pruner_core.sensitivity.result import Recommendation, Sensitivity
from pruner_core.sensitivity.search import bisect

KEYS = {"sparsity": "param_sparsity", "flops": "flop_reduction"}  # the targets a search holds exactly
MAX_RATIO = 0.97  # a move never prunes a unit further than this
MIN_STEP = 0.01  # the search ends when no move of this size helps (or the budget is spent)
Z = 2.0  # standard errors a step must gain by, on the images chosen on
LOSS_TIE = 1e-4  # two allocations right on the same images: the lower loss wins only by more than this
OVERSHOOT = 0.001  # a move may exceed the target by this much (the taker cannot give back exactly), no more
MIXES = (0.25, 0.5, 0.75)  # the global allocation's share in the blended candidates


def held_out(data: Dataset, samples: int) -> tuple[Dataset, Dataset]:
    """``(search, report)``: the first ``samples`` test images (at most half the test split) and the rest.

    Raises:
        SpecError: fewer than two test images.
    """
    n = len(data.y_test)
    if n < 2:
        raise SpecError(f"data '{data.name}' has {n} test image(s); a measured search needs at least 2 (one to search "
                        "on, one to report on)")
    k = max(1, min(samples, n // 2))
    return (replace(data, x_test=data.x_test[:k], y_test=data.y_test[:k]),  # decoded: evaluated again and again
            replace(data, x_test=take(data.x_test, slice(k, None)), y_test=data.y_test[k:]))  # a folder's stay unread


@dataclass
class Searched:
    """The outcome of :func:`measured_search`: the recommendation it settled on (``predicted["accuracy"]`` is the
    accuracy measured on held-out test images), where it started, every evaluation it made (accuracy and loss on the
    training images it chose on), and its cost."""

    recommendation: Recommendation
    start: str  # the candidate the moves started from
    candidates: list[dict]  # name, accuracy and loss (on the images chosen on), target value
    moves: list[dict] = field(default_factory=list)  # from, to, step, accuracy, kept
    search: str = ""  # which images it chose on and measured on
    seconds: float = 0.0

    @property
    def evaluations(self) -> int:
        return len(self.candidates) + len(self.moves)


def measured_search(model: LoadedModel, data: Dataset, sens: Sensitivity, rec: Recommendation, *, samples: int = 500,
                    choose_on: int = 2000, budget: int = 30, step: float = 0.05,
                    callback: Callable[[int, int, str], None] | None = None) -> Searched:
    """Improve ``rec`` by measuring: candidates first, then greedy moves, at most ``budget`` evaluations.

    Args:
        model: the model (not modified).
        data: its data: the search chooses on its last ``choose_on`` training images and measures the chosen
            allocation on :func:`held_out`'s first ``samples`` test images.
        sens: the scan ``rec`` was made from (its curves guide the moves).
        rec: a recommendation for a ``sparsity`` or ``flops`` target (a ``drop`` target has nothing to hold).
        samples: test images the chosen allocation is measured on (the first, at most half the split).
        choose_on: training images every candidate and move is measured on.
        budget: evaluations in all (candidates included).
        step: the first move's size, as a change of the giving unit's ratio; halved when no move helps.
        callback: ``(done, budget, what)`` after each evaluation.

    Raises:
        SpecError: a ``drop`` target, or data with too few test or no training images.
    """
    if rec.target not in KEYS:
        raise SpecError(f"a measured search holds a sparsity or FLOP target; '{rec.target}' has no fixed amount to hold")
    start_time = time.perf_counter()
    held, _ = held_out(data, samples)
    n = min(choose_on, len(data.y_train))
    if n < 1:
        raise SpecError(f"data '{data.name}' has no training images to choose an allocation on")
    search = replace(data, x_test=data.x_train[-n:], y_test=data.y_train[-n:])
    units = [u for u in sens.units if u.name in rec.ratios]
    predictor, key = Predictor(sens, units), KEYS[rec.target]
    count = [0]

    def measure(ratios: dict[str, float], what: str) -> Outcome:
        outcome = _outcome(prune(model, search, one_shot(_recipe(rec.recipe, units, ratios))).module, search)
        count[0] += 1
        if callback:
            callback(count[0], budget, what)
        return outcome

    candidates = _candidates(model, data, sens, rec, units)
    rows, best = [], None
    for name, ratios in candidates.items():
        outcome = measure(ratios, name)
        rows.append({"name": name, "accuracy": outcome.accuracy, "loss": outcome.loss,
                     "target": predictor.predict(ratios)[key]})
        if best is None or outcome.beats(best[1]):
            best = (name, outcome, ratios)
    start, now, ratios = best
    moves: list[dict] = []
    while count[0] < budget and step >= MIN_STEP:
        improved = False
        for giver, taker in _pairs(predictor, units, ratios, step):
            if count[0] >= budget:
                break
            trial = _moved(predictor, key, rec.value, ratios, giver, taker, step)
            if trial is None:
                continue
            outcome = measure(trial, f"{giver} +{step:.1%}, {taker} less")
            kept = outcome.beats(now)
            moves.append({"from": taker, "to": giver, "step": step, "accuracy": outcome.accuracy, "loss": outcome.loss,
                          "kept": kept})
            if kept:
                ratios, now, improved = trial, outcome, True
                break
        if not improved:
            step /= 2
    recipe = _recipe(rec.recipe, units, ratios)
    expected = _outcome(prune(model, held, one_shot(recipe)).module, held)
    predicted = {**predictor.predict(ratios), "accuracy": expected.accuracy, "loss": expected.loss,
                 "accuracy_drop": sens.dense_accuracy - expected.accuracy, "measured_on": len(held.y_test)}
    chosen = replace(rec, ratios=ratios, recipe=recipe, predicted=predicted)
    label = (f"chosen on the last {n:,} training images of {data.name}; accuracy measured on its first "
             f"{len(held.y_test):,} test images (the rest are left to report on)")
    return Searched(chosen, start, rows, moves, label, time.perf_counter() - start_time)


@dataclass(frozen=True)
class Outcome:
    """One allocation measured on the search images: which were classified right, the accuracy and the loss."""

    correct: torch.Tensor  # bool per search image
    accuracy: float
    loss: float

    def beats(self, other: Outcome) -> bool:
        """Measurably better than ``other`` on the same images: more right than wrong among the images the two
        disagree on, by at least ``Z`` standard errors (sqrt of the disagreements) and one image; a tie on every
        image goes to the lower loss. Noise is never a step: a first candidate (the global threshold, where it
        exists) stays unless something is better beyond it."""
        wins = int((self.correct & ~other.correct).sum())
        losses = int((other.correct & ~self.correct).sum())
        if wins == losses == 0:
            return self.loss < other.loss - LOSS_TIE
        return wins - losses >= max(1.0, Z * math.sqrt(wins + losses))


def _outcome(module: torch.nn.Module, search: Dataset) -> Outcome:
    """The pruned ``module`` on ``search``'s test images, evaluated as the scan evaluates (BatchNorm folded, images
    channels-last: the same outputs, faster)."""
    correct, loss = [], 0.0
    x = search.x_test
    with evaluating(module), torch.no_grad():
        module = fold_batchnorm(module)
        if isinstance(x, torch.Tensor) and x.dim() == 4:  # a folder's files stream as they are
            module, x = module.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        for xb, yb in batches(x, search.y_test, BATCH_SIZE):
            logits = module(xb)
            correct.append(logits.argmax(1) == yb)
            loss += float(torch.nn.functional.cross_entropy(logits, yb, reduction="sum"))
    right = torch.cat(correct)
    return Outcome(right, int(right.sum()) / len(right), loss / len(right))


def _candidates(model: LoadedModel, data: Dataset, sens: Sensitivity, rec: Recommendation, units) -> dict[str, dict]:
    """Where it compares (a sparsity target, a masking granularity) the one global threshold's per-layer ratios
    first, then the curves' allocation and blends of the two; else the curves' allocation alone. Every one meets
    the target."""
    baseline = global_baseline(sens, rec.target, rec.value)
    if baseline is None:
        return {"curves": dict(rec.ratios)}
    sparsity = weight_sparsity(prune(model, data, baseline).module)
    global_ratios = {u.name: float(sparsity.get(u.name, 0.0)) for u in units}
    out = {"global threshold": global_ratios, "curves": dict(rec.ratios)}  # the baseline first: the one to beat
    for a in MIXES:
        out[f"{1 - a:.0%} curves + {a:.0%} global"] = {
            k: round((1 - a) * rec.ratios[k] + a * global_ratios[k], 4) for k in rec.ratios}
    return out


def _pairs(predictor: Predictor, units, ratios: dict[str, float], step: float) -> list[tuple[str, str]]:
    """Moves to try, most promising first: the unit whose curve loses least per weight removed at its next step
    gives more; the one losing most per weight at its last step gives some back."""
    weight = {u.name: max(u.weights, 1) for u in units}

    def cost_up(name: str) -> float:
        r = ratios[name]
        if r + step > min(predictor.max_ratio(name), MAX_RATIO) + 1e-9:
            return float("inf")  # beyond the curve: nothing known, so never the first to give more
        return (predictor.drop(name, r + step) - predictor.drop(name, r)) / weight[name]

    def cost_down(name: str) -> float:
        r = ratios[name]
        if r <= 1e-9:
            return -float("inf")
        return (predictor.drop(name, r) - predictor.drop(name, max(r - step, 0.0))) / weight[name]

    givers = sorted((u.name for u in units), key=cost_up)
    takers = sorted((u.name for u in units), key=cost_down, reverse=True)
    # a staircase down both rankings, (g0, t0), (g0, t1), (g1, t1), (g1, t2), ..., then the top four of each paired
    staircase = [(givers[i // 2], takers[(i + 1) // 2]) for i in range(len(units))]
    pairs = [(g, t) for g, t in staircase if g != t]
    pairs += [(g, t) for g in givers[:4] for t in takers[:4] if g != t]
    return list(dict.fromkeys(pairs))


def _moved(predictor: Predictor, key: str, value: float, ratios: dict[str, float], giver: str, taker: str,
           step: float) -> dict[str, float] | None:
    """``ratios`` with ``giver`` pruned ``step`` more and ``taker`` pruned as much less as keeps the target met
    (bisected on the predicted amount, which is exact: it follows from the layers' sizes); None if that cannot hold
    the target within ``OVERSHOOT`` (the taker has too little left to give back)."""
    raised = dict(ratios, **{giver: min(ratios[giver] + step, MAX_RATIO)})
    if predictor.predict(raised)[key] < value - 1e-12 or raised[taker] <= 0:
        return None

    def meets(r: float) -> bool:
        return predictor.predict(dict(raised, **{taker: r}))[key] >= value - 1e-12

    r = 0.0 if meets(0.0) else math.ceil(bisect(meets, 0.0, raised[taker], 40)[1] * 1e4) / 1e4
    trial = dict(raised, **{taker: min(r, raised[taker])})
    held = meets(trial[taker]) and predictor.predict(trial)[key] <= value + OVERSHOOT
    return trial if held and trial[taker] < ratios[taker] - 1e-6 else None


def _recipe(base: Recipe, units, ratios: dict[str, float]) -> Recipe:
    per_layer = {m: round(ratios[u.name], 4) for u in units for m in u.layers if ratios.get(u.name, 0) > 0}
    return base.replace(layers=per_layer)
