"""Runs tracked in MLflow (a view of the run folder): ``pruner prune --mlflow URI`` logs the recipe as parameters, the
fine-tuning history as per-step metrics and the run's files and report as artifacts, found again with
``mlflow.search_runs`` (a local sqlite store: MLflow 3 keeps its file store read-only)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from pruner_core.errors import PrunerError
from pruner_core.frontends.cli import app
from pruner_core.frontends.tracking import flatten, tracked
from pruner_core.pipeline.runs import load_run

mlflow = pytest.importorskip("mlflow")  # the optional extra: make test installs it
runner = CliRunner()
RECIPE = "granularity: unstructured\nsparsity: 0.5\nfinetune: {epochs: 0.5, checks_per_epoch: 4, lr: 0.0005}\n"


def test_pruner_prune_logs_the_run_to_mlflow(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the sqlite store keeps its artifacts in ./mlruns
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    (tmp_path / "r.yaml").write_text(RECIPE)
    result = runner.invoke(app, ["prune", "demo:mnist-cnn", "--recipe", "r.yaml", "--out", "run", "--mlflow", uri])
    assert result.exit_code == 0, result.output
    mlflow.set_tracking_uri(uri)
    found = mlflow.search_runs(experiment_names=["pruning-explorer"])
    assert len(found) == 1
    row = found.iloc[0]
    assert row["params.granularity"] == "unstructured" and row["params.finetune.lr"] == "0.0005"
    assert row["params.base.spec"] == "demo:mnist-cnn" and row["tags.pruner.run_folder"] == str(tmp_path / "run")
    run = load_run(tmp_path / "run")
    assert row["metrics.final.accuracy"] == pytest.approx(run.metrics["accuracy"])
    client = mlflow.tracking.MlflowClient(uri)
    history = client.get_metric_history(row["run_id"], "test_accuracy")
    assert [m.step for m in history] == [r.step for r in run.history if r.test_accuracy is not None]
    assert len(history) >= 2  # a curve, step by step
    assert [m.value for m in history] == pytest.approx([r.test_accuracy for r in run.history if r.test_accuracy])
    artifacts = {a.path for a in client.list_artifacts(row["run_id"])}
    assert {"recipe.yaml", "metrics.json", "history.json", "report.html"} <= artifacts


def test_only_a_finished_run_is_logged_and_a_refusal_says_the_run_is_kept(tmp_path, demo_data):
    from pruner_core.io.models import load_model
    from pruner_core.pipeline.run import run_experiment
    from pruner_core.pruning.recipe import Recipe

    run = run_experiment(load_model("demo:mnist-cnn"), demo_data, Recipe.from_dict({"finetune": {"epochs": 0}}),
                         data_spec="demo:mnist5k", root=tmp_path, latency_runs=(2, 1))
    run.status = "failed"
    with pytest.raises(PrunerError, match=f"run '{run.id}' is saved in .*, but it was not logged: run '{run.id}' is "
                                          "failed; only a finished run is logged"):
        tracked(run, f"sqlite:///{tmp_path / 'm.db'}")
    assert tracked(run, None) is run  # no URI: nothing to log


def test_nested_recipe_keys_become_dotted_parameters():
    assert flatten({"finetune": {"lr": 0.001, "distill": False}, "layers": {}, "exclude": ["fc2"]}) == {
        "finetune.lr": "0.001", "finetune.distill": "False", "layers": "{}", "exclude": "['fc2']"}
