"""`pruner sensitivity` and `pruner recommend`, driven as a user would: exit codes, one-line errors, files written."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from pruner_core.frontends.cli import app
from pruner_core.pruning.recipe import Recipe

from .test_cli import assert_one_line_error

runner = CliRunner()


@pytest.fixture(scope="module")
def curves(tmp_path_factory):
    path = tmp_path_factory.mktemp("scan") / "curves.json"
    result = runner.invoke(app, ["sensitivity", "demo:lenet300", "--samples", "200", "--ratios", "0.3,0.6,0.9", "--json", str(path)])
    assert result.exit_code == 0, result.output
    return path, result


def test_sensitivity_writes_the_curves_per_layer(curves):
    path, result = curves
    data = json.loads(path.read_text())
    assert [u["name"] for u in data["units"]] == ["fc1", "fc2", "fc3"]
    for unit in data["units"]:
        assert unit["ratios"] == [0.3, 0.6, 0.9]
        assert len(unit["accuracy"]) == len(unit["loss"]) == 3
    assert data["complete"] and data["settings"]["samples"] == 200
    assert f"dense accuracy {data['dense']['accuracy']:.2%}" in result.stdout
    assert "least sensitive first: " in result.stdout and f"wrote {path}" in result.stdout


def test_recommend_from_a_scan_writes_a_recipe_that_meets_the_target(curves, tmp_path):
    path, _ = curves
    out = tmp_path / "rec.yaml"
    result = runner.invoke(app, ["recommend", "demo:lenet300", "--scan", str(path), "--target-sparsity", "0.6",
                                 "--check", "--out", str(out)])
    assert result.exit_code == 0, result.output
    recipe = Recipe.load(out)
    assert set(recipe.layers) <= {"fc1", "fc2"} and recipe.sparsity == 0
    assert "recommended" in result.stdout and "uniform" in result.stdout and "measured (no fine-tune)" in result.stdout
    measured = float(result.stdout.split("recommended          measured (no fine-tune): ")[1].split("%")[0]) / 100
    assert measured >= 0.6 - 0.001


def test_recommend_scans_when_no_scan_is_given(tmp_path):
    out = tmp_path / "rec.yaml"
    result = runner.invoke(app, ["recommend", "demo:lenet300", "--samples", "100", "--max-drop", "0.02", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert Recipe.load(out).layers


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["sensitivity", "demo:lenet300", "--ratios", "", "--json", "x.json"], ["empty"]),
        (["sensitivity", "demo:lenet300", "--ratios", "0.5,1.2", "--json", "x.json"], ["[0, 1)", "1.2"]),
        (["sensitivity", "demo:lenet300", "--ratios", "0.5,half", "--json", "x.json"], ["'half' is not a number"]),
        (["sensitivity", "demo:lenet300", "--granularity", "nm", "--json", "x.json"], ["no ratio to scan"]),
        (["recommend", "demo:lenet300", "--out", "r.yaml"], ["exactly one target"]),
        (["recommend", "demo:lenet300", "--target-sparsity", "0.5", "--max-drop", "0.1", "--out", "r.yaml"], ["exactly one target"]),
    ],
    ids=["empty ratios", "ratio 1.2", "not a number", "nm", "no target", "two targets"],
)
def test_bad_input_exits_2_with_one_line(args, fragments):
    assert_one_line_error(runner.invoke(app, args), *fragments)


def test_an_impossible_target_names_the_closest_achievable(curves, tmp_path):
    path, _ = curves
    result = runner.invoke(app, ["recommend", "demo:lenet300", "--scan", str(path), "--target-sparsity", "0.95",
                                 "--out", str(tmp_path / "r.yaml")])
    assert_one_line_error(result, "cannot be met", "closest achievable")
    assert not (tmp_path / "r.yaml").exists()


def test_a_scan_of_other_weights_is_refused(curves, tmp_path):
    path, _ = curves
    result = runner.invoke(app, ["recommend", "demo:mnist-cnn", "--scan", str(path), "--target-sparsity", "0.5",
                                 "--out", str(tmp_path / "r.yaml")])
    assert_one_line_error(result, "other weights")


def test_recommend_search_lists_the_candidates_and_writes_the_searched_recipe(curves, tmp_path):
    path, _ = curves
    out = tmp_path / "searched.yaml"
    for flag in ("--search", "--refine"):  # --refine: the old name, kept
        result = runner.invoke(app, ["recommend", "demo:lenet300", "--scan", str(path), "--target-sparsity", "0.8",
                                     flag, "--check", "--out", str(out)])
        assert result.exit_code == 0, result.output
        lines = [line for line in result.stdout.splitlines() if line.startswith("candidate ")]
        assert len(lines) == 5 and sum(line.endswith("<- start") for line in lines) == 1
        assert lines[0].startswith("candidate global threshold")
        assert "training images" in result.stdout and "measured on 200 held-out test images" in result.stdout
        assert "global threshold     measured (no fine-tune)" in result.stdout
        assert "on the last 800 test images" in result.stdout  # the scan's 200 are held out for the search
        recipe = Recipe.load(out)
        assert recipe.scope == "layerwise" and set(recipe.layers) <= {"fc1", "fc2"}


def test_a_scan_of_other_data_is_refused(curves, tmp_path):
    import numpy as np

    from pruner_core.io.data import load_data

    demo = load_data("demo:mnist5k")
    other = tmp_path / "other.npz"
    np.savez(other, x=demo.x_train[:200].numpy(), y=demo.y_train[:200].numpy())
    path, _ = curves
    result = runner.invoke(app, ["recommend", "demo:lenet300", "--scan", str(path), "--data", str(other),
                                 "--target-sparsity", "0.5", "--out", str(tmp_path / "r.yaml")])
    assert_one_line_error(result, "measured on data 'demo:mnist5k'", "--data")
