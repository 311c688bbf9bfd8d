"""Measured checks of a recommendation: a recipe applied in one shot without fine-tuning and measured, and the choice,
by measurement on training images, among the curves' allocation, the one-global-threshold one and blends of the two.

Definitions as in :mod:`pruner_core.sensitivity.predict`: parameter sparsity and FLOP reduction of the prunable
layers, a masked weight's multiply-adds counted as removed (a masked model is not faster in PyTorch eager).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import replace

import torch

from pruner_core.errors import SpecError
from pruner_core.graph.flops import layer_flops
from pruner_core.graph.layers import prunable_layers, weight_sparsity
from pruner_core.io.data import Dataset
from pruner_core.io.fit import check_data_fits
from pruner_core.io.inputs import example_input
from pruner_core.io.models import LoadedModel
from pruner_core.pipeline.run import prune
from pruner_core.pruning.recipe import Recipe
from pruner_core.sensitivity.allocate import global_baseline
from pruner_core.sensitivity.engine import BATCH_SIZE, SuffixEvaluator
from pruner_core.sensitivity.predict import Predictor
from pruner_core.sensitivity.result import Measured, Recommendation, Refined, Sensitivity


def apply_and_measure(model: LoadedModel, data: Dataset, recipe: Recipe, *, samples: int | None = None) -> Measured:
    """Prune a copy of ``model`` with ``recipe`` in one shot and no fine-tuning, and measure it.

    Args:
        model: the model (not modified).
        data: calibration (training split) and evaluation (the first ``samples`` test images, default all).
        recipe: the recipe; its schedule and fine-tuning are replaced by one shot without fine-tuning.

    Returns:
        :class:`~pruner_core.sensitivity.result.Measured` accuracy, loss, parameter sparsity and FLOP reduction of
        the prunable layers.

    Raises:
        Everything :func:`~pruner_core.pipeline.run.prune` raises.
    """
    shape = check_data_fits(model, data)
    oneshot = recipe.replace(schedule={"kind": "oneshot", "steps": 1}, finetune={**recipe.to_dict()["finetune"], "epochs": 0})
    pruned = prune(model, data, oneshot)
    _, flops = layer_flops(model.module, example_input(model.module, shape))
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
    engine = SuffixEvaluator(copy.deepcopy(pruned.module), data.x_test[:n], data.y_test[:n], BATCH_SIZE)
    acc, loss = engine.evaluate()
    return Measured(acc, loss, 1 - kept_w / total_w, 1 - kept_f / total_f if total_f else 0.0, n, pruned.module)


def refine(model: LoadedModel, data: Dataset, sens: Sensitivity, rec: Recommendation, *, samples: int = 1000,
           mixes: Sequence[float] = (0.25, 0.5, 0.75)) -> Refined:
    """Check the curve-based allocation against the one-global-threshold one and blends of the two, by pruning
    each (no fine-tuning) and measuring it, and keep the most accurate.

    Per-layer curves are measured one layer at a time; in deep networks with BatchNorm the damage of several
    pruned layers compounds beyond their sum, where a global threshold on comparable scores can do better.
    Blending per-layer ratios keeps the parameter sparsity (it is linear in them), so every candidate meets the
    target. Only for a parameter-sparsity target with a masking granularity (see
    :func:`~pruner_core.sensitivity.allocate.global_baseline`); otherwise the recommendation is returned as the only
    candidate.

    Args:
        model: the model (not modified).
        data: its data; the choice is made on the last ``samples`` training images.
        sens: the scan ``rec`` was made from.
        rec: the recommendation to check.
        samples: how many training images (the last ones of the split) to choose on.
        mixes: the global allocation's shares in the blends.

    Raises:
        SpecError: no training images to choose on.
    """
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
    refined = replace(rec, ratios=ratios, recipe=recipe, predicted=Predictor(sens, units).predict(ratios))
    return Refined(refined, chosen, rows, label)
