"""ONNX export of masked and channel-pruned demo models: checker, parity with PyTorch, sizes that are the files'."""

from __future__ import annotations

import copy
import gzip

import onnx
import pytest
import torch

from pruner_core.errors import PrunerError
from pruner_core.io.export import export_onnx, onnx_max_diff, size_figures, sparse_bytes
from pruner_core.io.models import load_model
from pruner_core.measure.metrics import onnx_latency
from pruner_core.pruning.channels import plan_channels, prune_channels
from pruner_core.pruning.select import apply_masks, compute_masks
from pruner_core.pruning.target import Target

SHAPE = (1, 28, 28)


@pytest.fixture(scope="module")
def masked():
    module = copy.deepcopy(load_model("demo:mnist-cnn").module)
    apply_masks(module, compute_masks(module, Target("unstructured", "l1", ratios={"conv2": 0.5, "fc1": 0.5})))
    return module


@pytest.fixture(scope="module")
def channel_pruned():
    base = load_model("demo:resnet20").module
    example = torch.zeros(1, *SHAPE)
    names = [n for n, m in base.named_modules() if isinstance(m, torch.nn.Conv2d)]
    module = copy.deepcopy(base)
    prune_channels(module, plan_channels(base, Target("channel", "l1", ratios={n: 0.5 for n in names}), example), example)
    return base, module


def test_masked_model_exports_checks_and_matches_pytorch(masked, demo_data, tmp_path):
    path = export_onnx(masked, SHAPE, tmp_path / "m.onnx")
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert model.opset_import[0].version >= 17
    assert onnx_max_diff(path, masked, demo_data.x_test) <= 1e-4
    assert not masked.training


def test_channel_pruned_onnx_is_smaller_and_matches(channel_pruned, demo_data, tmp_path):
    base, pruned = channel_pruned
    dense = export_onnx(base, SHAPE, tmp_path / "dense.onnx")
    small = export_onnx(pruned, SHAPE, tmp_path / "small.onnx")
    assert small.stat().st_size < 0.5 * dense.stat().st_size
    assert onnx_max_diff(small, pruned, demo_data.x_test) <= 1e-4


def test_size_figures_are_the_bytes_of_the_files_written(masked, tmp_path):
    sizes = size_figures(masked, tmp_path)
    assert sizes["dense_bytes"] == (tmp_path / "weights.safetensors").stat().st_size
    packed = (tmp_path / "weights.safetensors.gz").read_bytes()
    assert sizes["gzip_bytes"] == len(packed)
    assert gzip.decompress(packed) == (tmp_path / "weights.safetensors").read_bytes()
    assert sizes["gzip_bytes"] < sizes["dense_bytes"]  # half of fc1's weights are zeros
    assert sizes["sparse_bytes"] < sizes["dense_bytes"]


def test_sparse_encoding_counts_a_bit_per_weight_and_the_nonzero_values():
    t = torch.zeros(10, 10)
    t[0, :3] = 1.0
    assert sparse_bytes({"w": t}) == 13 + 3 * 4
    assert sparse_bytes({"w": torch.ones(8, dtype=torch.float64)}) == 1 + 8 * 8


def test_onnx_latency_is_measured_and_labelled(masked, tmp_path):
    path = export_onnx(masked, SHAPE, tmp_path / "m.onnx")
    lat = onnx_latency(path, SHAPE, 4, runs=3, warmup=1)
    assert lat.runs == 3 and lat.batch == 4 and 0 < lat.min_ms <= lat.median_ms
    assert lat.label.startswith("ONNX Runtime ") and "batch 4" in lat.label


def test_a_model_that_cannot_be_exported_is_a_clear_error(tmp_path):
    class Bad(torch.nn.Module):
        def forward(self, x):
            return {"not": "a tensor"}

    with pytest.raises(PrunerError, match="ONNX export failed"):
        export_onnx(Bad(), SHAPE, tmp_path / "bad.onnx")


def test_pruner_export_writes_weights_recipe_and_onnx_of_a_run(tmp_path):
    from typer.testing import CliRunner

    from pruner_core.frontends.cli import app
    from pruner_core.pruning.recipe import Recipe

    runner = CliRunner()
    recipe = tmp_path / "r.yaml"
    recipe.write_text("granularity: channel\nsparsity: 0.5\nfinetune: {epochs: 0}\n")
    run = tmp_path / "run"
    result = runner.invoke(app, ["prune", "demo:mnist-cnn", "--recipe", str(recipe), "--out", str(run), "--quiet"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "export"
    result = runner.invoke(app, ["export", str(run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "passes onnx.checker; max |ONNX Runtime - PyTorch|" in result.stdout
    assert Recipe.load(out / "recipe.yaml") == Recipe.load(recipe)
    onnx.checker.check_model(str(out / "model.onnx"))
    dense = load_model("demo:mnist-cnn").module
    (tmp_path / "dense").mkdir()
    assert size_figures(dense, tmp_path / "dense")["dense_bytes"] > 2 * (out / "weights.safetensors").stat().st_size


def test_pruner_export_refuses_a_run_that_is_not_done(tmp_path):
    from typer.testing import CliRunner

    from pruner_core.frontends.cli import app

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "status.json").write_text('{"status": "failed"}')
    result = CliRunner().invoke(app, ["export", str(tmp_path / "run"), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and result.stderr.startswith("error: ")


def test_exported_recipe_reproduces_identical_masks_and_report_is_written(tmp_path):
    from typer.testing import CliRunner

    from pruner_core.frontends.cli import app
    from pruner_core.pipeline.replay import load_run_masks

    runner = CliRunner()
    recipe = tmp_path / "r.yaml"
    recipe.write_text("granularity: nm\ncriterion: wanda\nnm: {n: 1, m: 4}\nfinetune: {epochs: 0}\nseed: 3\n")
    first = tmp_path / "first"
    assert runner.invoke(app, ["prune", "demo:mnist-cnn", "--recipe", str(recipe), "--out", str(first), "--quiet"]).exit_code == 0
    out = tmp_path / "export"
    result = runner.invoke(app, ["export", str(first), "--out", str(out), "--onnx", "--report"])
    assert result.exit_code == 0, result.output
    assert f"report   {out / 'report.html'}" in result.stdout
    page = (out / "report.html").read_text()
    assert 'id="comparison"' in page and "granularity: nm" in page and "Plotly.newPlot" in page
    again = tmp_path / "again"
    result = runner.invoke(app, ["prune", "demo:mnist-cnn", "--recipe", str(out / "recipe.yaml"), "--out", str(again), "--quiet"])
    assert result.exit_code == 0, result.output
    masks, reproduced = load_run_masks(first), load_run_masks(again)
    assert set(masks) == set(reproduced) and all(torch.equal(masks[k], reproduced[k]) for k in masks)


def test_pruner_compare_prints_the_table_and_writes_json_and_report_despite_a_damaged_run(tmp_path):
    import json

    from typer.testing import CliRunner

    from pruner_core.frontends.cli import app

    runner = CliRunner()
    recipe = tmp_path / "r.yaml"
    recipe.write_text("granularity: channel\nsparsity: 0.5\nfinetune: {epochs: 0}\n")
    runs = tmp_path / "runs"
    assert runner.invoke(app, ["prune", "demo:mnist-cnn", "--recipe", str(recipe), "--out", str(runs / "a"), "--quiet"]).exit_code == 0
    (runs / "broken").mkdir()
    (runs / "broken" / "status.json").write_text("{not json")
    result = runner.invoke(app, ["compare", str(runs / "a"), str(runs / "broken"), "--json", str(tmp_path / "c.json"),
                                 "--report", str(tmp_path / "c.html")])
    assert result.exit_code == 0, result.output
    assert "original · demo:mnist-cnn" in result.stdout and "ONNX Runtime b64" in result.stdout
    assert "  broken: " in result.stdout and "status.json" in result.stdout  # each model's notes, below the table
    figures = json.loads((tmp_path / "c.json").read_text())
    assert [f["kind"] for f in figures] == ["original", "channel", "—"]
    assert figures[1]["figures"]["sizes"]["onnx_bytes"] < 0.3 * figures[0]["figures"]["sizes"]["onnx_bytes"]
    assert "status.json" in figures[2]["error"]
    assert (tmp_path / "c.html").stat().st_size > 3_000_000
    assert (runs / ".cache").is_dir()  # the original's figures are cached beside the runs
    result = runner.invoke(app, ["compare", str(runs / "missing")])
    assert result.exit_code == 2 and "missing" in result.stderr
