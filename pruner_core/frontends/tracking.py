"""Runs tracked in MLflow: a view of the run folder (which stays the source of truth), written once a run is done.

:func:`log_run` opens (or makes) an MLflow experiment at ``uri`` — a local ``sqlite:///path.db`` store (MLflow 3's
``file:`` store is in maintenance mode and refuses new runs: its own message is passed on), or any tracking server
the user names — and logs one MLflow run for one of ours:

- parameters: the recipe, flattened (``finetune.lr``, ``quantize.kind``, ...), the base model and data specs;
- metrics per step: each fine-tuning history row (``train_loss``, ``test_accuracy``, ``sparsity``, ``lr`` at the
  row's optimizer step), then the vital signs (accuracy, parameters, sparsity, latency medians, size);
- artifacts: the run folder's recipe, metrics, history, base, structure (and INT8 figures), and a report when given.

MLflow is an optional extra (``pip install -e .[mlflow]``; ``make test`` installs it): without it, asking for
tracking says how to install it, and nothing else needs it.
"""

from __future__ import annotations

from pathlib import Path

from pruner_core.errors import PrunerError
from pruner_core.pipeline.runs import Run

EXPERIMENT = "pruning-explorer"
FILES = ("recipe.yaml", "metrics.json", "history.json", "base.json", "structure.json", "int8.json")
HISTORY = ("train_loss", "test_accuracy", "sparsity", "lr")


def flatten(data: dict, prefix: str = "") -> dict[str, str]:
    """``{"finetune": {"lr": 0.001}}`` -> ``{"finetune.lr": "0.001"}``: nested keys joined by dots, values as text
    (lists and empty mappings too), as MLflow stores parameters."""
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out |= flatten(value, f"{name}.")
        else:
            out[name] = str(value)
    return out


def _mlflow():
    try:
        import mlflow
    except ImportError:
        raise PrunerError("tracking in MLflow needs its optional extra: .venv/bin/pip install -e '.[mlflow]' "
                          "(make test installs it)") from None
    return mlflow


def log_run(run: Run, uri: str, *, experiment: str = EXPERIMENT, report: Path | None = None) -> str:
    """Log ``run`` (done) to the MLflow store at ``uri``; return the MLflow run id.

    Raises:
        PrunerError: the run is not done, MLflow is not installed, or the store cannot be opened or written (the
            message names ``uri``).
    """
    if run.status != "done":
        raise PrunerError(f"run '{run.id}' is {run.status}; only a finished run is logged to MLflow")
    mlflow = _mlflow()
    from mlflow.entities import Param
    from mlflow.tracking import MlflowClient

    try:
        client = MlflowClient(tracking_uri=uri)
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(experiment)
        tracked = client.create_run(experiment_id, run_name=run.id, tags={
            "pruner.run_folder": str(run.path.resolve()), "pruner.base_model": str(run.base.get("spec")),
            "pruner.data": str(run.base.get("data")), "pruner.world_size": str(run.base.get("world_size", 1))})
        params = flatten(run.recipe.to_dict()) if run.recipe else {}
        params |= {"base.spec": str(run.base.get("spec")), "base.data": str(run.base.get("data"))}
        client.log_batch(tracked.info.run_id, params=[Param(k, v[:6000]) for k, v in params.items()])
        client.log_batch(tracked.info.run_id, metrics=_metrics(run))
        for name in FILES:
            if (run.path / name).is_file():
                client.log_artifact(tracked.info.run_id, str(run.path / name))
        if report is not None:
            client.log_artifact(tracked.info.run_id, str(report))
        client.set_terminated(tracked.info.run_id, "FINISHED")
    except mlflow.exceptions.MlflowException as e:
        raise PrunerError(f"MLflow at {uri!r} refused the run: {str(e).splitlines()[0][:300]}") from e
    except OSError as e:
        raise PrunerError(f"MLflow at {uri!r} cannot be written: {type(e).__name__}: {e}") from e
    return tracked.info.run_id


def tracked(run: Run, uri: str | None, **kwargs) -> Run:
    """``run``, logged to ``uri`` first when one is given (:func:`log_run`).

    Raises:
        PrunerError: the run is saved, but MLflow refused it (the message says both).
    """
    if uri:
        try:
            log_run(run, uri, **kwargs)
        except PrunerError as e:
            raise PrunerError(f"run '{run.id}' is saved in {run.path}, but it was not logged: {e}") from e
    return run


def _metrics(run: Run) -> list:
    """Each history row's figures at its optimizer step, then the vital signs at the last step."""
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    out, last = [], 0
    for i, row in enumerate(run.history or []):
        step = row.step if row.step is not None else i
        last = max(last, step)
        out += [Metric(name, float(getattr(row, name)), now, step) for name in HISTORY
                if getattr(row, name) is not None]
    signs = run.metrics or {}
    for key in ("accuracy", "params", "nonzero_params", "sparsity", "flops", "size_bytes"):
        if isinstance(signs.get(key), int | float):
            out.append(Metric(f"final.{key}", float(signs[key]), now, last))
    for batch, latency in (signs.get("latency") or {}).items():
        if isinstance(latency, dict) and isinstance(latency.get("median_ms"), int | float):
            out.append(Metric(f"final.latency_ms.{batch}", float(latency["median_ms"]), now, last))
    return out
