"""Recipes run end to end on the demo models: schedules reach their targets, runs are saved, cancelled or failed."""

from __future__ import annotations

import threading

import pytest
import torch

from pruner_core.errors import PrunerError
from pruner_core.io.models import load_model
from pruner_core.pipeline.finetune import Cancelled
from pruner_core.pipeline.replay import load_run_masks, load_run_model
from pruner_core.pipeline.run import prune, run_experiment
from pruner_core.pipeline.runs import list_runs
from pruner_core.pruning.recipe import Recipe
from pruner_core.pruning.select import compute_masks

SHORT = {"epochs": 0.05}  # 3 steps: enough to exercise fine-tuning, quick on 2 cores


@pytest.fixture(scope="module")
def cnn():
    return load_model("demo:mnist-cnn")


def state(module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_oneshot_without_finetuning_is_exactly_the_masks_of_the_method(cnn, demo_data):
    before = state(cnn.module)
    recipe = Recipe(sparsity=0.5, finetune={"epochs": 0})
    pruned = prune(cnn, demo_data, recipe)
    expected = compute_masks(cnn.module, pruned.target, demo_data)
    assert set(pruned.masks) == {"conv1", "conv2", "fc1"}  # fc2, the classifier, is excluded by default
    for name, mask in expected.items():
        assert torch.equal(pruned.masks[name], mask)
        assert torch.equal(pruned.module.get_submodule(name).weight != 0, mask)
    assert all(torch.equal(before[k], v) for k, v in cnn.module.state_dict().items())  # the original is untouched


def test_masks_stay_through_finetuning_and_are_reproducible(cnn, demo_data):
    recipe = Recipe(sparsity=0.7, criterion="l2", finetune=SHORT, seed=3)
    a, b = prune(cnn, demo_data, recipe), prune(cnn, demo_data, recipe)
    for name, mask in a.masks.items():
        assert torch.equal(mask, b.masks[name])
        weight = a.module.get_submodule(name).weight
        assert torch.all(weight[~mask] == 0) and torch.all(weight[mask] != 0)
    assert all(torch.equal(v, b.module.state_dict()[k]) for k, v in a.module.state_dict().items())
    assert len(a.history) == 1 and a.history[0].test_accuracy > 0.5
    assert a.history[0].train_loss > 0 and a.history[0].step == 3  # the epoch mean fine-tuning recorded


@pytest.mark.parametrize("kind", ["iterative", "gmp"])
def test_schedules_end_exactly_at_the_target_sparsity(cnn, demo_data, kind):
    recipe = Recipe(sparsity=0.6, schedule={"kind": kind, "steps": 3}, finetune={"epochs": 0.1})
    pruned = prune(cnn, demo_data, recipe)
    for name, mask in pruned.masks.items():
        n = mask.numel()
        assert int((~mask).sum()) == round(0.6 * n), name


def test_iterative_channels_shrink_in_rounds_to_the_target(demo_data):
    resnet = load_model("demo:resnet20")
    recipe = Recipe(granularity="channel", sparsity=0.5, schedule={"kind": "iterative", "steps": 2},
                    finetune={"epochs": 0.04})
    pruned = prune(resnet, demo_data, recipe)
    rounds = {entry["layer"] for entry in pruned.structure}
    assert len(pruned.structure) > len(rounds)  # the same groups appear once per round
    conv = pruned.module.get_submodule("layer3.0.conv1")
    assert 28 <= conv.weight.shape[0] <= 36  # about half of 64 kept after two rounds of 1 - sqrt(0.5)
    assert pruned.module(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_run_is_saved_and_reloads_in_its_own_right(cnn, demo_data, tmp_path):
    recipe = Recipe(granularity="nm", criterion="l1", finetune=SHORT)
    run = run_experiment(cnn, demo_data, recipe, data_spec="demo:mnist5k", root=tmp_path, latency_runs=(3, 2))
    assert run.status == "done"
    assert (run.path / "history.json").is_file() and run.metrics["sparsity_per_layer"]["conv2"] == pytest.approx(0.5)
    reloaded = load_run_model(run.path)
    again = prune(cnn, demo_data, recipe).module  # the same recipe in this process: the same model
    x = demo_data.x_test[:16]
    with torch.no_grad():
        assert torch.equal(reloaded.module(x), again(x))
    masks = load_run_masks(run.path)
    groups = masks["conv2"].movedim(1, -1).reshape(-1, 4)  # N:M along the input channels
    assert torch.all(groups.sum(-1) == 2)
    assert [r.status for r in list_runs(tmp_path)] == ["done"]


def test_cancel_marks_the_run_cancelled_and_keeps_nothing_half_done(cnn, demo_data, tmp_path):
    cancel = threading.Event()

    def callback(update):
        if update.phase == "finetune":
            cancel.set()

    recipe = Recipe(sparsity=0.5, finetune={"epochs": 1})
    with pytest.raises(Cancelled):
        run_experiment(cnn, demo_data, recipe, data_spec="demo:mnist5k", root=tmp_path, callback=callback, cancel=cancel)
    (run,) = list_runs(tmp_path)
    assert run.status == "cancelled" and "step" in run.error
    assert not (run.path / "weights.safetensors").exists()


def test_recipe_that_does_not_fit_the_model_fails_before_any_folder(cnn, demo_data, tmp_path):
    recipe = Recipe(sparsity=0.5, layers={"conv9": 0.3})
    with pytest.raises(PrunerError, match=r"conv9.*valid: conv1, conv2, fc1, fc2"):
        run_experiment(cnn, demo_data, recipe, data_spec="demo:mnist5k", root=tmp_path)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_gmp_refuses_channels_with_the_alternative(cnn, demo_data):
    recipe = Recipe(granularity="channel", sparsity=0.5, schedule={"kind": "gmp", "steps": 2})
    with pytest.raises(PrunerError, match="use schedule 'iterative' or 'oneshot'"):
        prune(cnn, demo_data, recipe)


def test_a_torchscript_program_masks_and_fine_tunes_as_promised(cnn, demo_data, tmp_path):
    path = tmp_path / "cnn.ts"
    torch.jit.script(cnn.module).save(str(path))
    scripted = load_model(str(path))
    assert scripted.fmt == "torchscript"
    pruned = prune(scripted, demo_data, Recipe(sparsity=0.5, finetune=SHORT))
    assert pruned.history and pruned.history[-1].train_loss > 0
    for name, mask in pruned.masks.items():
        weight = dict(pruned.module.named_modules())[name].weight
        assert torch.all(weight[~mask] == 0) and torch.any(weight[mask] != 0)
    assert all(p.is_leaf for p in scripted.module.parameters())  # the loaded program is untouched


class BilinearClassifier(torch.nn.Module):
    """Most of its parameters in an nn.Bilinear, a weight no granularity reaches yet."""

    def __init__(self) -> None:
        super().__init__()
        self.bilinear, self.fc = torch.nn.Bilinear(6, 6, 32), torch.nn.Linear(32, 3)

    def forward(self, x):
        return self.fc(self.bilinear(x, x))


def test_a_recipe_that_prunes_nothing_is_refused_before_any_folder_naming_each_layer_and_the_rest(tmp_path):
    from pruner_core.io.data import Dataset
    from pruner_core.io.models import LoadedModel
    from pruner_core.pruning.recipe import RecipeError

    x, y = torch.rand(12, 6), torch.arange(12) % 3
    data = Dataset("flat", x, y, x, y, ["0", "1", "2"], "given")
    model = LoadedModel(BilinearClassifier().eval(), "bilinear", "factory", True)
    with pytest.raises(RecipeError, match=r"prunes no layer of the model: 'fc' excluded \(by default: its outputs are the "
                                          r"model's outputs\); weights outside Conv1d/Conv2d/Linear/Embedding layers and "
                                          r"recurrent/attention matrices are not pruned \(not supported yet\): "
                                          r"'bilinear' \(Bilinear, 9\d% of the parameters\)"):
        run_experiment(model, data, Recipe(finetune={"epochs": 0}), data_spec="flat", root=tmp_path)
    assert not list(tmp_path.iterdir())  # refused before a run folder was made
