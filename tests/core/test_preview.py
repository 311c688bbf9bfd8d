"""The recipe preview and the Prune page's tables, against independent counts on the demo model."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.nn.utils import prune as torch_prune

from pruner_core.io.models import load_model
from pruner_core.measure.metrics import Latency, VitalSigns
from pruner_core.measure.preview import comparison_table, layer_settings, overrides_from_settings, preview
from pruner_core.pipeline.finetune import EpochRecord
from pruner_core.present.figures import training_curves
from pruner_core.pruning.describe import describe_model
from pruner_core.pruning.recipe import Recipe, RecipeError


@pytest.fixture(scope="module")
def cnn():
    return load_model("demo:mnist-cnn")


@pytest.fixture(scope="module")
def layers(cnn):
    return describe_model(cnn, (1, 28, 28))


def test_unstructured_preview_matches_torch_prune_and_leaves_the_model_alone(cnn, demo_data):
    before = {k: v.clone() for k, v in cnn.module.state_dict().items()}
    p = preview(cnn, demo_data, Recipe(sparsity=0.5))
    table = p.table.set_index("layer")
    for name in ("conv1", "conv2", "fc1"):
        module = dict(cnn.module.named_modules())[name]
        expected = torch_prune.L1Unstructured(0.5).compute_mask(module.weight.detach(), torch.ones_like(module.weight))
        assert torch.equal(torch.from_numpy(p.masks[name]), expected.bool()), name
        assert table.loc[name, "params before"] - table.loc[name, "params after"] == round(0.5 * module.weight.numel())
        assert table.loc[name, "non-zero FLOPs"] == round(table.loc[name, "FLOPs before"] * expected.float().mean().item())
    assert "fc2" not in p.masks and table.loc["fc2", "params after"] == table.loc["fc2", "params before"]
    assert p.totals["flops_after"] == p.totals["flops_before"]  # masks keep dense shapes
    assert all(torch.equal(v, cnn.module.state_dict()[k]) for k, v in before.items())


def test_channel_preview_is_measured_on_a_pruned_copy(cnn, demo_data):
    p = preview(cnn, demo_data, Recipe(granularity="channel", sparsity=0.25, round_to=8))
    table = p.table.set_index("layer")
    assert list(table["channels after"]) == [24, 48, 96, 10]
    assert p.totals["flops_after"] < p.totals["flops_before"]
    assert p.totals["params_after"] < p.totals["params_before"]
    assert (~p.masks["conv1"]).all(axis=(1, 2, 3)).sum() == 8  # 8 whole output channels blank in the overlay
    assert sum(w.numel() for w in cnn.module.parameters()) == p.totals["params_before"]


def test_preview_of_a_recipe_that_does_not_fit_raises_recipe_error(cnn, demo_data):
    with pytest.raises(RecipeError, match="no prunable layer named 'conv9'"):
        preview(cnn, demo_data, Recipe(layers={"conv9": 0.3}))


def test_layer_settings_round_trip_to_recipe_keys(layers):
    settings = layer_settings(layers, "unstructured")
    assert list(settings["prune"]) == [True, True, True, False]
    assert overrides_from_settings(settings, layers) == ({}, None)  # the default exclusion stays portable
    settings = layer_settings(layers, "unstructured", {"conv2": 0.3}, ["conv1"])
    assert settings.set_index("layer").loc["conv2", "ratio"] == 0.3
    assert overrides_from_settings(settings, layers, exclude=["conv1"]) == ({"conv2": 0.3}, ["conv1"])
    kernel = layer_settings(layers, "kernel", {"fc1": 0.3}, [])
    assert kernel.set_index("layer").loc["fc1", "note"] == "2-D weight"  # in a few words: the sentence is below
    assert overrides_from_settings(kernel, layers, exclude=[]) == ({}, [])  # a layer the granularity skips has none
    assert kernel.set_index("layer").loc["conv2", "ratio"] == 0.0  # the slider's (0 here), never a blank "None"


def test_every_ratio_cell_holds_the_ratio_applied_and_only_real_overrides_reach_the_recipe(layers):
    settings = layer_settings(layers, "unstructured", {"fc1": 0.5}, None, sparsity=0.5)
    assert list(settings["ratio"]) == [0.5, 0.5, 0.5, 0.5]
    assert overrides_from_settings(settings, layers, 0.5) == ({}, None)  # the prefilled slider values are not
    assert overrides_from_settings(settings, layers, 0.5, explicit={"fc1"}) == ({"fc1": 0.5}, None)  # set on purpose
    edited = settings.copy()
    edited.loc[1, "ratio"] = 0.8  # conv2 typed in
    edited.loc[0, "ratio"] = None  # conv1 cleared: the slider's
    assert overrides_from_settings(edited, layers, 0.5) == ({"conv2": 0.8}, None)
    kernel = layer_settings(layers, "kernel", {}, ["conv2"], sparsity=0.5).set_index("layer")
    assert list(kernel["ratio"]) == [0.0, 0.5, 0.0, 0.0]  # conv1 depthwise, fc1 and fc2 2-D: nothing to remove
    assert list(kernel["prune"]) == [False, False, False, False]  # none looks prunable; conv2 is left out
    ticked = kernel.reset_index().assign(prune=True)  # a tick on a row the granularity skips changes nothing
    assert overrides_from_settings(ticked, layers, 0.5, exclude=["conv2", "fc1"]) == ({}, ["fc1"])
    default = layer_settings(layers, "kernel", {}, None, sparsity=0.5)
    assert overrides_from_settings(default, layers, 0.5) == ({}, None)  # fc2, the classifier, stays out as before


def test_comparison_table_reports_measured_figures_and_no_unpaired_speed_up():
    lat = Latency(1, 1.0, 0.9, 1.1, 0.8, 30, 5, 2, "CPU", "PyTorch")
    signs = VitalSigns("m", "demo", None, {}, 100, 100, 0.0, 1000, 4000, 0.99, {"batch1": lat, "batch64": lat}, [],
                       None, {})
    slower = dataclasses.replace(lat, median_ms=143.7)  # timed minutes later, on a busy machine
    pruned = dataclasses.replace(signs, accuracy=0.98, nonzero_params=50, latency={"batch1": slower, "batch64": slower})
    table = comparison_table(signs, pruned, masked=True).set_index("figure")
    # one convention, as on Compare: a cost as N.NN× = original ÷ pruned (above 1: cheaper); accuracy in pp
    assert table.loc["test accuracy", "change"] == "-1.00 pp"
    assert table.loc["non-zero parameters", "change"] == "2.00×"
    assert table.loc["parameters", "change"] == "1.00×"
    assert table.loc["FLOPs / sample (dense)", "change"] == "1.00×"
    shrunk = dataclasses.replace(pruned, size_bytes=836_890)
    sizes = comparison_table(dataclasses.replace(signs, size_bytes=1_690_000), shrunk, masked=False).set_index("figure")
    assert list(sizes.loc["size (dense safetensors)"]) == ["1.69 MB", "0.84 MB", "2.02×"]  # one unit in a row
    assert "FLOPs / sample (dense)" in table.index
    assert not [f for f in table.index if "latency" in f]  # timed apart: no ratio is shown (Compare times together)


def test_training_curves_draw_accuracy_and_loss():
    history = [EpochRecord(1, train_loss=0.5, test_accuracy=0.9), EpochRecord(2, train_loss=0.3, test_accuracy=0.95)]
    fig = training_curves(history)
    assert list(fig.data[0].y) == [0.9, 0.95] and list(fig.data[1].y) == [0.5, 0.3]
    assert fig.layout.annotations[1].text == "train loss (mean over each epoch)"  # what the curve holds
    fig = training_curves(history, [(1, 2.0), (5, 1.0)])
    assert list(fig.data[1].x) == [1, 5] and fig.layout.annotations[1].text == "train loss per step"
    older = [EpochRecord.from_json({"epoch": 1, "loss": 0.5, "test_accuracy": 0.9})]  # saved before the mean was kept
    assert list(training_curves(older).data[1].y) == []
