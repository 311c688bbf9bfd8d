"""Pruning runs on disk: one folder per run, written atomically, readable without unpickling anything.

A run folder ``ROOT/ID`` (``ROOT``: the ``root`` argument, else ``$PRUNER_RUNS``, else ``./runs``) holds:

- ``recipe.yaml``: the :class:`~pruner_core.pruning.recipe.Recipe`.
- ``base.json``: the base model (``spec``, ``weights``, ``trust``), ``data`` spec, ``fingerprint``,
  ``input_shape`` and ``created`` time.
- ``status.json``: ``{"status": running|done|failed|cancelled, "pid", "host", "started", "finished", "error"}``.
- ``history.json``: fine-tuning history rows (rewritten while running, for live curves).
- when done: ``weights.safetensors`` (the pruned state dict; physically smaller after channel pruning),
  ``masks.safetensors`` (bool keep-masks, masked runs only), ``structure.json`` (the channel plan of
  :func:`~pruner_core.pruning.channels.plan_channels`, ``[]`` if none) and ``metrics.json`` (vital signs plus
  ``sparsity`` per layer).

Every file is written to a temp file in the run folder and moved into place with ``os.replace``, so a
reader never sees half a file, and nothing is ever written outside the run's own folder. The status is
written last: a run whose process died is still "running" on disk and is listed as ``interrupted``.
A pruned model is rebuilt from (base model, channel plan, pruned state dict): safetensors and JSON only.

>>> import tempfile
>>> from pruner_core.pipeline.liveness import why_gone
from pruner_core.pruning.recipe import Recipe
>>> root = tempfile.mkdtemp()
>>> run = create_run(root, {"spec": "demo:lenet300", "input_shape": [1, 28, 28]}, Recipe())
>>> [r.status for r in list_runs(root)]
['running']
"""

from __future__ import annotations

import json
import os
import re
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from pruner_core.errors import PrunerError
from pruner_core.io.models import LoadedModel
from pruner_core.measure.metrics import VitalSigns
from pruner_core.pipeline.finetune import EpochRecord
from pruner_core.pipeline.liveness import why_gone
from pruner_core.pruning.recipe import Recipe

FINAL_STATUSES = ("done", "failed", "cancelled")
STATUSES = ("running", *FINAL_STATUSES)
SHOWN_STATUSES = (*STATUSES, "interrupted", "damaged")  # what list_runs can report
ARTIFACTS = (
    "recipe.yaml", "base.json", "status.json", "history.json",
    "weights.safetensors", "masks.safetensors", "structure.json", "metrics.json",
    "model.int8.onnx", "int8.json",  # written by pipeline.quantize
)


def run_cache_dir(run: Run) -> Path:
    """Where a run's comparison measurements and its FP32 ONNX file live: ``RUN/compare``."""
    return run.path / "compare"


def default_root() -> Path:
    """Where runs live when no root is given: ``$PRUNER_RUNS``, else ``./runs``."""
    return Path(os.environ.get("PRUNER_RUNS") or "runs")


@dataclass
class Run:
    """One run as read from its folder. ``status`` may also be ``interrupted`` or ``damaged`` (see :func:`list_runs`).

    ``error`` holds the failure message, or why the run is interrupted or damaged.
    """

    path: Path
    id: str
    status: str
    recipe: Recipe | None
    base: dict
    metrics: dict | None
    history: list[EpochRecord]
    error: str | None
    created: str
    structure: list = field(default_factory=list)
    pid: int | None = None
    started: str | None = None
    finished: str | None = None

    @property
    def label(self) -> str:
        """``<id> · <recipe summary>`` for pickers and logs."""
        if self.recipe is None:
            return f"{self.id} · {self.status}: {self.error}"
        return f"{self.id} · {self.recipe.summary()}"

    def made_from(self, fingerprint: str, data_spec: str) -> bool:
        """Whether this run pruned the model with these weights (its fingerprint) on this data."""
        return self.base.get("fingerprint") == fingerprint and self.base.get("data") == data_spec

    @property
    def signs(self) -> VitalSigns | None:
        """The pruned model's vital signs (``metrics.json``), once the run is done.

        Raises:
            PrunerError: ``metrics.json`` lacks a figure.
        """
        return VitalSigns.from_json(self.metrics) if self.metrics else None

    @property
    def has_masks(self) -> bool:
        return (self.path / "masks.safetensors").is_file()


# --- writing -------------------------------------------------------------------------------------------


def base_info(model: LoadedModel, *, data: str | None = None, input_shape: tuple[int, ...] | None = None) -> dict:
    """The ``base`` dict of :func:`create_run` for a loaded model (spec, weights, trust, data, fingerprint, shape)."""
    shape = input_shape or model.input_shape
    return {
        "spec": model.spec,
        "weights": model.weights,
        "trust": model.fmt == "pickle",
        "data": data,
        "fingerprint": model.fingerprint(),
        "input_shape": list(shape) if shape else None,
    }


def create_run(
    root: str | Path | None, base: dict, recipe: Recipe, name: str | None = None, *, folder: str | Path | None = None
) -> Run:
    """Start a run: make its folder and write ``recipe.yaml``, ``base.json`` and ``status.json`` (running).

    Args:
        root: the runs folder (made if missing); ``None`` = :func:`default_root`.
        base: at least ``spec``; see :func:`base_info`. Existing file paths are stored absolute.
        recipe: what this run does.
        name: a name for the id (default: a slug of the recipe).
        folder: the exact run folder (``root`` and ``name`` ignored); it must not exist or be empty.

    Returns:
        The run, id ``YYYYmmdd-HHMMSS-<slug>`` (``-2``, ``-3``... when taken).

    Raises:
        PrunerError: ``base`` lacks ``spec`` or is not JSON data; the root cannot be written.
    """
    if not isinstance(base, dict) or not base.get("spec"):
        raise PrunerError(f"a run's base must name the model it prunes ({{'spec': ...}}); got {base!r}")
    root = Path(folder).parent if folder is not None else Path(root) if root is not None else default_root()
    now = datetime.now().astimezone()
    base = {k: _absolute(v) if k in ("spec", "weights") else v for k, v in base.items()}
    base.setdefault("created", now.isoformat())
    try:
        base_text = json.dumps(_jsonable(base), indent=2, allow_nan=False)
        root.mkdir(parents=True, exist_ok=True)
    except (TypeError, ValueError) as e:
        raise PrunerError(f"a run's base must be plain JSON data ({e})") from None
    except OSError as e:
        raise PrunerError(f"cannot create the runs folder '{root}' ({e.strerror})") from None
    slug = _slug(name) if name else _recipe_slug(recipe)
    stem = f"{now:%Y%m%d-%H%M%S}-{slug}"
    path = _claim(root, stem) if folder is None else _claim_exact(Path(folder))
    run = Run(path, path.name, "running", recipe, json.loads(base_text), None, [], None, base["created"])
    try:
        write_artifact(run, "recipe.yaml", recipe.to_yaml().encode())
        write_artifact(run, "base.json", (base_text + "\n").encode())
        _write_status(run, "running", started=now.isoformat())
    except BaseException:
        for child in path.iterdir():  # only the folder we just made
            child.unlink(missing_ok=True)
        path.rmdir()
        raise
    run.pid, run.started = os.getpid(), now.isoformat()
    return run


def write_history(run: Run, history: list[EpochRecord]) -> None:
    """Replace ``history.json`` with ``history`` (call it as often as a page should refresh its curves)."""
    rows = _jsonable([record.to_json() for record in history])
    write_artifact(run, "history.json", json.dumps(rows).encode())
    run.history = list(history)


def finish_run(
    run: Run,
    *,
    state_dict: dict[str, torch.Tensor],
    masks: dict[str, torch.Tensor] | None = None,
    structure: list[dict] | None = None,
    metrics: dict,
) -> Run:
    """Write the pruned model and its measurements, then mark the run done.

    Args:
        run: a running run of this root.
        state_dict: the pruned module's ``state_dict()`` (tensors are copied to CPU).
        masks: layer name -> bool keep-mask, for masked runs.
        structure: the channel plan applied (:func:`~pruner_core.pruning.channels.plan_channels`), for channel runs.
        metrics: vital signs; ``sparsity`` per layer is added from ``masks`` when absent.

    Raises:
        PrunerError: the run already ended (done, failed or cancelled): its files are left as they are.
    """
    current = _read_status(run.path)
    if current.get("status") != "running":
        raise PrunerError(f"run '{run.id}' is {current.get('status')}, not running; its results are left as they are")
    metrics = dict(metrics)
    if masks and "sparsity" not in metrics:
        metrics["sparsity"] = {name: 1 - float(m.float().mean()) for name, m in masks.items()}
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
    _write_tensors(run, "weights.safetensors", tensors)
    if masks:
        _write_tensors(run, "masks.safetensors", {k: v.detach().cpu().bool().contiguous() for k, v in masks.items()})
    else:
        (run.path / "masks.safetensors").unlink(missing_ok=True)
    run.structure = _jsonable(list(structure or []))
    write_artifact(run, "structure.json", json.dumps(run.structure).encode())
    run.metrics = _jsonable(metrics)
    write_artifact(run, "metrics.json", json.dumps(run.metrics, indent=2).encode())
    run.finished = _write_status(run, "done", started=current.get("started"))
    run.status, run.error = "done", None
    return run


def fail_run(run: Run, error: str, *, cancelled: bool = False) -> Run:
    """Mark the run failed (or cancelled) with ``error``; a run already done is left done.

    Nothing else is touched: the base model and the other runs are never written by a run.
    """
    try:
        current = _read_status(run.path)
    except PrunerError:  # called while handling another error: marking the run must not fail too
        current = {}
    if current.get("status") == "done":
        return run
    status = "cancelled" if cancelled else "failed"
    run.finished = _write_status(run, status, started=current.get("started"), error=str(error))
    run.status, run.error = status, str(error)
    return run


# --- reading -------------------------------------------------------------------------------------------


def list_runs(root: str | Path | None = None) -> list[Run]:
    """Every run under ``root``, newest first. Never raises.

    A folder whose files are missing or corrupt is listed with status ``damaged`` and the reason in
    ``error``; a ``running`` run whose process is gone (its pid is not alive, or now belongs to a process
    started after the run) is listed as ``interrupted``.
    """
    root = Path(root) if root is not None else default_root()
    try:
        folders = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except OSError:
        return []
    runs = []
    for folder in folders:
        try:
            runs.append(_read_run(folder))
        except Exception as e:  # a listing must show every folder; any failure to read one marks it damaged
            runs.append(_damaged(folder, e))
    return sorted(runs, key=lambda r: (_timestamp(r), r.id), reverse=True)


def load_run(path: str | Path) -> Run:
    """Read one run folder.

    Raises:
        PrunerError: no such folder, or a damaged run (the message names the file and what is wrong).
    """
    path = Path(path)
    if not path.is_dir():
        raise PrunerError(f"no run folder at '{path}'")
    return _read_run(path)


# --- internals -----------------------------------------------------------------------------------------


def _read_run(path: Path) -> Run:
    status = _read_status(path)
    state = status.get("status")
    if state not in STATUSES:
        raise PrunerError(f"run '{path.name}': status.json has status {state!r}; expected one of {', '.join(STATUSES)}")
    base = _read_json(path, "base.json", dict)
    if not base.get("spec") or not isinstance(base["spec"], str):
        raise PrunerError(f"run '{path.name}': base.json does not name the base model ('spec')")
    _check_input_shape(path.name, base.get("input_shape"))
    recipe = Recipe.load(path / "recipe.yaml") if (path / "recipe.yaml").is_file() else None
    if recipe is None:
        raise PrunerError(f"run '{path.name}': recipe.yaml is missing")
    try:
        history = [EpochRecord.from_json(row) for row in _read_json(path, "history.json", list, missing=[])]
    except PrunerError as e:
        raise PrunerError(f"run '{path.name}': history.json: {e}") from None
    structure = _read_json(path, "structure.json", list, missing=[])
    metrics = _read_json(path, "metrics.json", dict, missing=None)
    if state == "done":
        for name in ("weights.safetensors", "metrics.json"):
            if not (path / name).is_file():
                raise PrunerError(f"run '{path.name}': it is marked done but {name} is missing")
    error = status.get("error")
    if state == "running":
        gone = why_gone(status)
        if gone:
            state, error = "interrupted", gone
    created = str(base.get("created") or status.get("started") or "")
    return Run(
        path, path.name, state, recipe, base, metrics, history, error, created, structure,
        status.get("pid"), status.get("started"), status.get("finished"),
    )


MAX_SAMPLE_VALUES = 2**26  # 67 M values: 268 MB per sample in float32, far beyond any model this tool handles


def _check_input_shape(run_id: str, shape: Any) -> None:
    """``input_shape`` is absent, or 1 to 4 positive whole numbers of at most :data:`MAX_SAMPLE_VALUES` values."""
    if shape is None:
        return
    if not isinstance(shape, list) or not 1 <= len(shape) <= 4 or not all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise PrunerError(f"run '{run_id}': base.json input_shape {str(shape)[:60]} is not 1 to 4 positive whole numbers")
    values = 1
    for d in shape:
        values *= d
    if values > MAX_SAMPLE_VALUES:
        raise PrunerError(f"run '{run_id}': base.json input_shape {shape} is {values:,} values per sample; at most "
                          f"{MAX_SAMPLE_VALUES:,}")


def _damaged(path: Path, error: Exception) -> Run:
    reason = str(error) if isinstance(error, PrunerError) else f"run '{path.name}': {type(error).__name__}: {error}"
    try:
        created = datetime.fromtimestamp(path.stat().st_mtime).astimezone().isoformat()
    except OSError:
        created = ""
    return Run(path, path.name, "damaged", None, {}, None, [], reason, created)


def _read_json(path: Path, name: str, kind: type, *, missing: Any = ...) -> Any:
    file = path / name
    if not file.is_file():
        if missing is not ...:
            return missing
        raise PrunerError(f"run '{path.name}': {name} is missing")
    try:
        value = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise PrunerError(f"run '{path.name}': {name} is not readable JSON ({e})") from None
    if not isinstance(value, kind):
        raise PrunerError(
            f"run '{path.name}': {name} holds a {type(value).__name__}, expected a"
            f" {'JSON object' if kind is dict else 'JSON list'}"
        )
    return value


def _read_status(path: Path) -> dict:
    return _read_json(path, "status.json", dict)


def _write_status(run: Run, status: str, *, started: str | None, error: str | None = None) -> str | None:
    finished = datetime.now().astimezone().isoformat() if status in FINAL_STATUSES else None
    payload = {
        "status": status, "pid": os.getpid(), "host": socket.gethostname(),
        "started": started, "finished": finished, "error": error,
    }
    write_artifact(run, "status.json", json.dumps(payload, indent=2).encode())
    return finished


def write_artifact(run: Run, name: str, payload: bytes) -> None:
    """Write one of the run's :data:`ARTIFACTS` atomically (a temp file beside it, then ``os.replace``)."""
    _atomic(run, name, lambda tmp: tmp.write_bytes(payload))



def _write_tensors(run: Run, name: str, tensors: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    _atomic(run, name, lambda tmp: save_file(tensors, str(tmp)))


def _atomic(run: Run, name: str, write: Callable[[Path], Any]) -> None:
    """Write ``run.path / name`` through a temp file in the same folder and ``os.replace``."""
    if name not in ARTIFACTS:  # a run writes only its own known files, never a path from outside
        raise ValueError(f"'{name}' is not a run artifact; expected one of {', '.join(ARTIFACTS)}")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=run.path)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, run.path / name)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _claim(root: Path, stem: str) -> Path:
    """Make and return a new folder ``root/stem`` (``stem-2``, ``stem-3``... if taken); mkdir is the lock."""
    for i in range(1, 1000):
        path = root / (stem if i == 1 else f"{stem}-{i}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise PrunerError(f"cannot find a free run id for '{stem}' in '{root}'")


CLAIM = ".claimed"  # created exclusively in a run folder named by the caller: whoever creates it owns the folder


def _claim_exact(path: Path) -> Path:
    """Make and return ``path`` as a new run folder; an existing non-empty folder is refused (never overwritten).

    Two processes naming the same folder at once cannot both get it: the folder may already exist (empty), so
    ``mkdir`` is no lock here; an exclusively created claim file inside it is.
    """
    taken = f"'{path}' already exists and is not an empty folder; choose a new folder for the run"
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise PrunerError(taken)
    try:
        path.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path / CLAIM, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        raise PrunerError(taken + " (another run claimed it first)") from None
    except OSError as e:
        raise PrunerError(f"cannot create the run folder '{path}' ({e.strerror})") from None
    return path


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "run"


def _recipe_slug(recipe: Recipe) -> str:
    if recipe.granularity == "nm":
        amount = f"{recipe.nm.n}of{recipe.nm.m}"
    elif recipe.layers:  # per-layer ratios: the range they span, not the slider's value they override
        ratios = [r for r in recipe.layers.values() if isinstance(r, int | float)] or [recipe.sparsity]
        low, high = round(min(ratios) * 100), round(max(ratios) * 100)
        amount = f"layers-{low}" if low == high else f"layers-{low}to{high}"
    else:
        amount = f"{round(recipe.sparsity * 100)}"
    scope = "-global" if recipe.scope == "global" else ""
    return _slug(f"{recipe.granularity}-{recipe.criterion}-{amount}{scope}")


def _absolute(value: Any) -> Any:
    if isinstance(value, str | Path) and str(value) and Path(value).exists():
        return str(Path(value).resolve())
    return str(value) if isinstance(value, Path) else value


def _jsonable(value: Any) -> Any:
    """Plain JSON data from tensors, numpy scalars, tuples and paths (what metrics and histories hold)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    return value


def _timestamp(run: Run) -> float:
    try:
        return datetime.fromisoformat(run.created).timestamp()
    except (TypeError, ValueError):
        return 0.0
