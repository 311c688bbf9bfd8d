"""Ratio allocation: per-unit ratios from a scan's curves that meet a target, sensitive units keeping more, as a
recipe; and the baselines to check it against (one uniform ratio, one global threshold).

Example:
    >>> rec = recommend(sens, "sparsity", 0.7)             # doctest: +SKIP
    >>> rec.recipe.save("recommended.yaml"); rec.summary()  # doctest: +SKIP
"""

from __future__ import annotations

import math

from pruner_core.errors import SpecError
from pruner_core.pruning.recipe import Recipe
from pruner_core.sensitivity.predict import Predictor
from pruner_core.sensitivity.result import Recommendation, Sensitivity, UnitCurve
from pruner_core.sensitivity.search import bisect

TARGETS = {
    "sparsity": "parameter sparsity: fraction of the prunable layers' weights removed",
    "flops": "FLOP reduction: fraction of the prunable layers' FLOPs removed",
    "drop": "maximum accuracy drop (predicted as the sum of the per-layer drops)",
}


class TargetError(SpecError):
    """A recommendation target that cannot be met; the message names the closest achievable value."""


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
        sens: a complete :func:`~pruner_core.sensitivity.scan.scan` result.
        target: ``"sparsity"`` (parameter sparsity of the prunable layers), ``"flops"`` (FLOP reduction) or
            ``"drop"`` (maximum predicted accuracy drop), see ``TARGETS``.
        value: the fraction: sparsity or FLOP reduction in [0, 1), or the accuracy drop allowed (e.g. 0.01).
        exclude: layers to leave alone; default (None) the layers whose outputs are the model's outputs, as
            in a recipe.
        base: a recipe whose fine-tuning, schedule and seed the recommended recipe keeps (default: defaults).

    Returns:
        A :class:`~pruner_core.sensitivity.result.Recommendation` with the recipe and, for comparison, the uniform
        ratio meeting the same target with its predicted outcome.

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
    model = Predictor(sens, units)
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

        # the drop grows with the threshold: search for where the allocation stops meeting it
        if ok(alloc(t_max)):
            lo = hi = alloc(t_max)
            tl = t_max
        else:
            tl, th = bisect(lambda t: not ok(alloc(t)), 0.0, t_max, 60)
            lo, hi = alloc(tl), alloc(th)
        al, _ = bisect(lambda a: not ok(blended(lo, hi, a)), 0.0, 1.0, 40)
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

        # sparsity and FLOPs grow with the threshold: search for where the allocation starts meeting the target
        tl, th = bisect(lambda t: ok(alloc(t)), -1e-9, 0.0 if ok(alloc(0.0)) else t_max, 60)
        # when pruning only where nothing is lost already overshoots, scale that allocation down from nothing
        lo, hi = ({u.name: 0.0 for u in units} if th <= 0.0 else alloc(max(tl, 0.0))), alloc(th)
        _, ah = bisect(lambda a: ok(blended(lo, hi, a)), 0.0, 0.0 if ok(blended(lo, hi, 0.0)) else 1.0, 40)
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


def _uniform(model: Predictor, units: list[UnitCurve], caps: dict, key: str, value: float, target: str) -> float:
    """The one ratio for every unit meeting the same target (for ``drop``: the largest within it)."""
    cap = min(caps.values())

    def at(r: float) -> float:
        return model.predict({u.name: r for u in units})[key]

    if target == "drop":
        if at(cap) <= value:
            return cap
        lo, _ = bisect(lambda r: at(r) > value, 0.0, cap, 50)
        return math.floor(lo * 1e4) / 1e4
    _, hi = bisect(lambda r: at(r) >= value, 0.0, 0.9999, 50)
    return min(math.ceil(hi * 1e4) / 1e4, 0.9999)


def _recipe(sens: Sensitivity, units: list[UnitCurve], ratios: dict[str, float], exclude, base: Recipe | None) -> Recipe:
    base = base or Recipe()
    per_layer = {m: ratios[u.name] for u in units for m in u.layers if ratios.get(u.name, 0) > 0}
    return base.replace(granularity=sens.settings["granularity"], criterion=sens.settings["criterion"], scope="layerwise",
                        sparsity=0.0, layers=per_layer, exclude=exclude, round_to=None)


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
