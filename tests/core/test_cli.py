"""The `pruner` command line, driven as a user would: exit codes, one-line errors, JSON output."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from pruner_core.frontends.cli import app
from pruner_core.io.archs import LeNet300
from pruner_core.io.models import MODELS_DIR

from .helpers import noise

runner = CliRunner()


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_info_prints_vital_signs_and_writes_json(tmp_path):
    out = tmp_path / "signs.json"
    result = runner.invoke(app, ["info", "demo:lenet300", "--runs", "3", "--json", str(out)])
    assert result.exit_code == 0, result.output
    card = json.loads(out.read_text())
    assert {"params", "nonzero_params", "flops", "size_bytes", "accuracy", "latency_ms", "latency", "layers", "how"} <= set(card)
    assert set(card["latency_ms"]) == {"batch1", "batch64"}
    assert card["latency"]["batch1"]["runs"] == 3 and card["latency"]["batch64"]["runs"] == 3
    assert [layer["name"] for layer in card["layers"]] == ["fc1", "fc2", "fc3"]
    assert {"name", "type", "shape", "params", "flops"} <= set(card["layers"][0])
    assert "model      demo:lenet300 (demo)" in result.stdout
    assert f"params     {card['params']:,}" in result.stdout
    assert f"accuracy   {card['accuracy']:.2%}" in result.stdout
    assert f"wrote {out}" in result.stdout


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["info", "demo:nope"], ["unknown demo model 'nope'", "demo:lenet300"]),
        (["info", "model.onnx"], ["cannot load a model from 'model.onnx'"]),
        (["info", "demo:lenet300", "--data", "missing.npz"], ["'missing.npz' does not exist"]),
        (["info", "demo:lenet300", "--data", "demo:mnist"], ["unknown demo data 'mnist'"]),
        (["train-demo", "nope"], ["unknown demo model 'nope'", "lenet300"]),
    ],
    ids=["unknown demo", "unknown spec", "missing data", "unknown demo data", "train unknown"],
)
def test_user_errors_exit_2_with_one_line(args, fragments):
    assert_one_line_error(runner.invoke(app, args), *fragments)


@pytest.mark.parametrize(
    ("suffix", "seed"),
    [
        (".safetensors", 0),
        (".pt", 0),
        (".pt", 2),  # once escaped as IndexError with a traceback
    ],
)
def test_info_with_corrupt_weights_exits_2(tmp_path, suffix, seed):
    weights = tmp_path / f"noise{suffix}"
    weights.write_bytes(noise(seed))
    result = runner.invoke(app, ["info", "demo:lenet300", "--weights", str(weights), "--runs", "1"])
    assert_one_line_error(result, f"noise{suffix}")


def test_info_on_a_pickled_module_needs_trust(tmp_path):
    torch.manual_seed(0)
    torch.save(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), tmp_path / "whole.pt")
    refused = runner.invoke(app, ["info", str(tmp_path / "whole.pt"), "--runs", "1"])
    assert_one_line_error(refused, "whole.pt", "trust")
    trusted = runner.invoke(app, ["info", str(tmp_path / "whole.pt"), "--trust", "--runs", "1"])
    assert trusted.exit_code == 0, trusted.output
    assert "(pickle)" in trusted.stdout
    assert "params     7,850 (7,850 non-zero" in trusted.stdout


def test_train_demo_writes_weights_and_card_that_load_back(tmp_path):
    result = runner.invoke(app, ["train-demo", "lenet300", "--epochs", "1", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "lenet300: epoch 1 loss" in result.stdout
    card = json.loads((tmp_path / "lenet300.json").read_text())
    assert (card["architecture"], card["epochs"], card["train_samples"], card["test_samples"]) == ("lenet300", 1, 4000, 1000)
    assert f"lenet300: test accuracy {card['test_accuracy']:.2%}" in result.stdout
    info = runner.invoke(
        app, ["info", "demo:lenet300", "--weights", str(tmp_path / "lenet300.safetensors"), "--runs", "1", "--json",
              str(tmp_path / "signs.json")]
    )
    assert info.exit_code == 0, info.output
    assert json.loads((tmp_path / "signs.json").read_text())["accuracy"] == card["test_accuracy"]


@pytest.mark.filterwarnings("ignore:.*torch\\.jit.*is deprecated:DeprecationWarning")
@pytest.mark.parametrize("kind", ["torchscript", "export", "factory"])
def test_info_on_other_model_formats(tmp_path, kind):
    module = LeNet300().eval()
    if kind == "torchscript":
        spec = str(tmp_path / "scripted.pt")
        torch.jit.script(module).save(spec)
    elif kind == "export":
        spec = str(tmp_path / "program.pt2")
        dynamic = {"x": {0: torch.export.Dim("batch")}}
        torch.export.save(torch.export.export(module, (torch.zeros(2, 1, 28, 28),), dynamic_shapes=dynamic), spec)
    else:
        spec = "pruner_core.io.archs:LeNet300"
    result = runner.invoke(app, ["info", spec, "--runs", "1", "--json", str(tmp_path / "signs.json")])
    assert result.exit_code == 0, result.output
    assert f"model      {spec} ({kind})" in result.stdout
    signs = json.loads((tmp_path / "signs.json").read_text())
    assert signs["params"] == 266610 and signs["flops"] == 2 * (784 * 300 + 300 * 100 + 100 * 10)
    assert [layer["name"] for layer in signs["layers"]] == ["fc1", "fc2", "fc3"]


@pytest.mark.parametrize(("name", "floor"), [("lenet300", 0.96), ("mnist-cnn", 0.985), ("resnet20", 0.985)])
def test_info_on_each_demo_meets_its_accuracy_bar_and_matches_its_card(tmp_path, name, floor):
    out = tmp_path / "out.json"
    result = runner.invoke(app, ["info", f"demo:{name}", "--runs", "3", "--json", str(out)])
    assert result.exit_code == 0, result.output
    signs = json.loads(out.read_text())
    card = json.loads((MODELS_DIR / f"{name}.json").read_text())
    assert signs["data"]["test"] == 1000
    assert signs["accuracy"] >= floor
    assert signs["card_accuracy"] == card["test_accuracy"]
    assert signs["accuracy"] == pytest.approx(card["test_accuracy"], abs=1e-3)  # one image of slack across CPUs


def test_analyze_writes_per_layer_signals(tmp_path):
    out = tmp_path / "a.json"
    result = runner.invoke(app, ["analyze", "demo:resnet20", "--samples", "32", "--json", str(out)])
    assert result.exit_code == 0, result.output
    layers = {layer["name"]: layer for layer in json.loads(out.read_text())["layers"]}
    assert {"name", "type", "shape", "channel_l1", "channel_l2", "apoz", "bn_scale", "kernel_norms", "group"} <= set(layers["conv1"])
    assert len(layers["layer3.0.conv2"]["channel_l2"]) == 64 and len(layers["layer3.0.conv2"]["kernel_norms"][0]) == 64
    assert layers["fc"]["apoz"] is None and layers["fc"]["bn_scale"] is None
    assert layers["layer1.0.conv2"]["group"] == layers["conv1"]["group"]  # tied by the residual additions


def test_analyze_refuses_bad_data_in_one_line(tmp_path):
    bad = tmp_path / "rgb.npz"
    import numpy as np

    np.savez(bad, x=np.zeros((4, 3, 32, 32), np.uint8), y=np.zeros(4, np.int64))
    assert_one_line_error(runner.invoke(app, ["analyze", "demo:mnist-cnn", "--data", str(bad), "--json", str(tmp_path / "a.json")]), "(3, 32, 32)")


def test_prune_writes_a_run_with_the_same_masks_as_the_app_and_info_reads_it(tmp_path):
    import subprocess
    import sys

    from pruner_core.io.data import load_data
    from pruner_core.io.models import load_model
    from pruner_core.pipeline.replay import load_run_masks
    from pruner_core.pipeline.run import run_experiment
    from pruner_core.pruning.recipe import Recipe

    recipe = tmp_path / "r.yaml"
    recipe.write_text("granularity: kernel\ncriterion: taylor\nsparsity: 0.4\nfinetune: {epochs: 0.05}\nseed: 7\n")
    out = tmp_path / "cli-run"
    # a separate process, as a user would run it: nothing shared with this one
    done = subprocess.run(
        [sys.executable, "-m", "pruner_core.frontends.cli", "prune", "demo:mnist-cnn", "--recipe", str(recipe), "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}" in done.stdout and "fine-tuning epoch 0.05: test accuracy" in done.stdout
    app_run = run_experiment(load_model("demo:mnist-cnn"), load_data("demo:mnist5k"), Recipe.load(recipe),
                             data_spec="demo:mnist5k", root=tmp_path / "app-runs", latency_runs=(3, 2))
    cli_masks, app_masks = load_run_masks(out), load_run_masks(app_run.path)
    assert set(cli_masks) == set(app_masks) == {"conv2"}  # kernels: not the Linear layers, nor conv1 (1 input channel)
    assert all(torch.equal(cli_masks[k], app_masks[k]) for k in cli_masks)
    result = runner.invoke(app, ["info", str(out), "--runs", "3"])
    assert result.exit_code == 0, result.output
    assert f"model      {out} (run)" in result.stdout
    assert "sparsity" in result.stdout


def test_prune_refuses_a_bad_recipe_and_an_existing_folder_in_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("granularity: unstructured\ncriterion: apoz\n")
    result = runner.invoke(app, ["prune", "demo:mnist-cnn", "--recipe", str(bad), "--out", str(tmp_path / "r")])
    assert_one_line_error(result, "apoz", "unstructured")
    assert not (tmp_path / "r").exists()
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    good = tmp_path / "good.yaml"
    good.write_text("sparsity: 0.5\nfinetune: {epochs: 0}\n")
    result = runner.invoke(app, ["prune", "demo:mnist-cnn", "--recipe", str(good), "--out", str(taken)])
    assert_one_line_error(result, str(taken), "not an empty folder")
    assert (taken / "notes.txt").read_text() == "mine"
