"""Measured checks of an allocation: a recipe applied in one shot without fine-tuning and measured (the measured search
of :mod:`pruner_core.sensitivity.measured` and the checks on the pages and the CLI use it).

Definitions as in :mod:`pruner_core.sensitivity.predict`: parameter sparsity and FLOP reduction of the prunable
layers, a masked weight's multiply-adds counted as removed (a masked model is not faster in PyTorch eager).
"""

from __future__ import annotations

import copy

import torch

from pruner_core.graph.flops import layer_flops
from pruner_core.graph.layers import prunable_layers
from pruner_core.io.data import Dataset
from pruner_core.io.fit import check_data_fits
from pruner_core.io.inputs import example_input
from pruner_core.io.models import LoadedModel
from pruner_core.pipeline.run import prune
from pruner_core.pruning.recipe import Recipe
from pruner_core.sensitivity.engine import BATCH_SIZE, SuffixEvaluator
from pruner_core.sensitivity.result import Measured


def one_shot(recipe: Recipe) -> Recipe:
    """``recipe`` applied in one shot without fine-tuning: what every measured check of an allocation prunes with."""
    return recipe.replace(schedule={"kind": "oneshot", "steps": 1}, finetune={**recipe.to_dict()["finetune"], "epochs": 0})


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
    pruned = prune(model, data, one_shot(recipe))
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
