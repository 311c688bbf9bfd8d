"""The sensitivity scan: prune one unit at a time at each ratio, no fine-tuning, and measure accuracy and loss.

Scores are computed once per layer and re-used across ratios; the model is split with ``torch.fx`` so that only the
part of the network after the changed layer is re-run (:class:`~pruner_core.sensitivity.engine.SuffixEvaluator`),
with BatchNorm folded for evaluation (:func:`~pruner_core.graph.fold.fold_batchnorm`). The original model is never
touched: the scan works on a copy and restores its weights after every ratio.

Example:
    >>> from pruner_core.io.models import load_model
    >>> from pruner_core.io.data import load_data
    >>> sens = scan(load_model("demo:mnist-cnn"), load_data("demo:mnist5k"), samples=200)  # doctest: +SKIP
    >>> sens.least_sensitive()[:2]                                                      # doctest: +SKIP
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Sequence

from pruner_core.errors import SpecError
from pruner_core.graph.fold import fold_batchnorm
from pruner_core.graph.layers import layer_lookup
from pruner_core.graph.model_graph import live_graph
from pruner_core.io.data import Dataset
from pruner_core.io.fit import check_data_fits
from pruner_core.io.inputs import example_input
from pruner_core.io.models import LoadedModel
from pruner_core.pruning.criteria import check_pair
from pruner_core.pruning.describe import describe_model
from pruner_core.sensitivity.adaptive import TOLERANCE, Rule
from pruner_core.sensitivity.engine import BATCH_SIZE, SuffixEvaluator
from pruner_core.sensitivity.latency import channel_latency, record_inputs
from pruner_core.sensitivity.result import ScanProgress, Sensitivity
from pruner_core.sensitivity.units import channel_units, layer_table, mask_units

DEFAULT_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def check_ratios(ratios: Sequence[float]) -> list[float]:
    """The ratios sorted and de-duplicated; SpecError for an empty list or a value outside [0, 1)."""
    ratios = list(ratios)
    if not ratios:
        raise SpecError("no ratios to scan: the list is empty; give fractions in [0, 1), e.g. 0.1, 0.5, 0.9")
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


SUFFIX_SHARE = 0.7  # an evaluation re-runs, on average, this share of the model (the part after the changed unit)


def estimate(model: LoadedModel, data: Dataset, *, granularity: str, ratios: Sequence[float], samples: int,
             batch_size: int = BATCH_SIZE) -> tuple[int, int, float]:
    """``(units, evaluations, seconds)``: what a :func:`scan` with these settings would run and about how long it
    takes here, from a dense evaluation of ``samples`` test images timed now, as the scan runs it (BatchNorm folded,
    after one warm-up pass; each scan evaluation re-runs
    ``SUFFIX_SHARE`` of it on average). Channel latency timing and calibration batches come on top."""
    shape = check_data_fits(model, data)
    infos = describe_model(model, shape)
    open_ = [i for i in infos if i.granularities.get(granularity) is None]
    units = len({i.group for i in open_ if not i.is_output}) if granularity == "channel" else len(open_)
    n = max(1, min(samples, len(data.y_test)))
    engine = SuffixEvaluator(fold_batchnorm(copy.deepcopy(model.module).eval()), data.x_test[:n], data.y_test[:n],
                             batch_size)
    engine.evaluate()  # warm-up: the first pass pays for allocation and kernel choice
    start = time.perf_counter()
    engine.evaluate()
    per_eval = time.perf_counter() - start
    evaluations = units * len(ratios)
    return units, evaluations, per_eval * (1 + SUFFIX_SHARE * evaluations)


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
    latency_runs: int = 9,
    batch_size: int = BATCH_SIZE,
    adaptive: bool = True,
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
        latency_runs: rounds of latency timing (each times every kept-channel count once, in turn).
        batch_size: evaluation batch size.
        adaptive: stop each evaluation once its answer is clear and skip the ratios past a collapse
            (:mod:`~pruner_core.sensitivity.adaptive`); the samples each cell used are in the curves' ``samples``.
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
    example = example_input(model.module, shape)
    infos = describe_model(model, shape)
    known = [i.name for i in infos]
    if layers is not None:
        unknown = [n for n in layers if n not in known]
        if unknown:
            raise SpecError(f"no prunable layer named {', '.join(repr(n) for n in unknown)}; prunable: {', '.join(known)}")
    work = copy.deepcopy(model.module).eval()
    graph = live_graph(work, tuple(shape)) if granularity == "channel" else None  # opens attention (head_forms)
    modules = layer_lookup(work)
    table = layer_table(work, infos, granularity, criterion)
    n = min(samples, len(data.y_test))
    if n < 1:
        raise SpecError(f"data '{data.name}' has no test samples to evaluate on")
    settings = {"granularity": granularity, "criterion": criterion, "ratios": ratios, "samples": n,
                "batch_size": batch_size, "latency": bool(latency if latency is not None else granularity == "channel")
                and granularity == "channel", "layers": list(layers) if layers is not None else None,
                "adaptive": bool(adaptive)}

    if granularity == "channel":
        units = channel_units(work, infos, table, settings, data, modules, graph)
    else:
        units = mask_units(work, infos, table, settings, data, modules)
    if layers is not None:
        units = [u for u in units if set(u.curve.layers) & set(layers)]
    if not units:
        reasons = "; ".join(f"'{info.name}': {info.granularities.get(granularity) or 'excluded'}" for info in infos
                            if layers is None or info.name in layers)
        raise SpecError(f"granularity '{granularity}' applies to none of the chosen layers of '{model.label}': "
                        f"{reasons or 'it has no prunable layer'}")

    evaluated = fold_batchnorm(work)
    modules.update(layer_lookup(evaluated))  # units now prune the folded layers the evaluator runs
    for unit in units:  # what restore() puts back: the weights as the evaluated model holds them
        unit.saved = {name: modules[name].weight.detach().clone() for name in unit.saved}
    engine = SuffixEvaluator(evaluated, data.x_test[:n], data.y_test[:n], batch_size)
    t0 = time.perf_counter()
    dense = engine.run()
    if seconds is not None:
        per_eval = time.perf_counter() - t0
        expected = per_eval * len(units) * len(ratios) * SUFFIX_SHARE  # the suffix is on average a part of the model
        if expected > seconds and n > 100:
            n = max(100, int(n * seconds / expected))
            settings["samples"] = n
            engine = SuffixEvaluator(evaluated, data.x_test[:n], data.y_test[:n], batch_size)
            dense = engine.run()
    dense_accuracy, dense_loss = dense.accuracy, dense.loss
    rule = Rule.for_labels(dense.correct, data.y_test[:n]) if adaptive else None

    total, done = len(units) * len(ratios), 0
    scan_start = time.perf_counter()
    complete = True
    for unit in units:
        if cancel is not None and cancel.is_set():
            complete = False
            break
        engine.prepare(unit.changed)
        collapsed = None  # (accuracy, loss) once this unit is at chance: larger ratios are not evaluated
        for ratio in ratios:
            if cancel is not None and cancel.is_set():
                complete = False
                break
            try:
                kept = unit.apply(ratio)
                if collapsed is None:
                    e = engine.run(rule)
                    (acc, loss), used = e.against(dense), e.samples
                    if rule is not None and rule.collapsed(e.correct):
                        collapsed = (acc, loss)
                else:
                    (acc, loss), used = collapsed, 0
            finally:
                unit.restore(modules)
            c = unit.curve
            c.ratios.append(ratio)
            c.accuracy.append(acc)
            c.loss.append(loss)
            c.samples.append(used)
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
        inputs = record_inputs(work, [m for c in scanned for m in c.layers + c.consumers], example)
        for c in scanned:
            if cancel is not None and cancel.is_set():
                complete = False
                break
            c.latency = channel_latency(work, c, inputs, latency_runs)
    what = "of its output channels (emulated removal: readers' input channels zeroed)" if granularity == "channel" else "of its weights"
    how = (f"each unit pruned alone at each ratio {what}, {criterion} scores, no fine-tuning; top-1 accuracy and mean "
           f"cross-entropy on the first {n:,} test samples of {data.name}"
           + (f"; adaptive: an evaluation stops once its drop is known within {TOLERANCE:.0%} (95%) or the unit is at "
              "chance, and the ratios past a collapse are not evaluated (the samples each cell used are shown)"
              if adaptive else ""))
    return Sensitivity(model.label, model.fingerprint(), data.name, settings, dense_accuracy, dense_loss, scanned, table,
                       complete, round(time.perf_counter() - start, 3), how)
