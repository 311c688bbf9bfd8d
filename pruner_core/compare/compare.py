"""Side-by-side comparison of the original model and saved runs: every figure measured, cached per run.

- :func:`measure_static`: accuracy (overall and per class), parameters and non-zeros, FLOPs, the three sizes of
  :func:`~pruner_core.io.export.size_figures` and the ONNX file's size; :func:`time_together`: latency in PyTorch eager and ONNX Runtime at
  batch 1 and 64 (median and inter-quartile range, with device, threads and runs).
- :func:`compare`: one :class:`Entry` per model (the original first), each measured once per data set and
  cached on disk, so a second visit reads JSON. Runs of another base model or data set are measured anyway
  and carry a warning; runs that are damaged or not done are listed with the reason and no figures.

An entry's figures are a :class:`~pruner_core.compare.result.ModelFigures`; the tables and plots built from them
are in :mod:`pruner_core.present.compare_table` and :mod:`pruner_core.present.figures`.

Measurements of a run are cached in ``RUN/compare/`` (the run's own folder: nothing is written elsewhere),
those of an original model in ``ROOT/.cache/original-<fingerprint>/`` (hidden from the run listing). Each
folder holds ``compare.json`` (figures, keyed by the data set's digest), ``weights.safetensors(.gz)`` (the
files whose bytes are the sizes) and ``model.onnx``. A cache entry that cannot be read whole is measured again.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import torch
from torch import nn

from pruner_core.compare.result import ModelFigures, Sizes
from pruner_core.errors import PrunerError
from pruner_core.graph.flops import layer_flops
from pruner_core.graph.layers import weight_sparsity
from pruner_core.io.data import Dataset, batches, sample_digest
from pruner_core.io.export import ensure_onnx, size_figures
from pruner_core.io.fit import check_data_fits, fit_data
from pruner_core.io.inputs import example_input, random_input
from pruner_core.io.models import LoadedModel
from pruner_core.measure.metrics import PYTORCH_RUNTIME, Latency, count_parameters, device_name, latency_of
from pruner_core.pipeline.quantize import INT8_FILE
from pruner_core.pipeline.replay import load_run_model
from pruner_core.pipeline.runs import Run, default_root, run_cache_dir

VERSION = 2  # bump when the cached figures change: older caches are measured again
BATCHES = (1, 64)
RUNTIMES = {"pytorch": "PyTorch eager", "onnxruntime": "ONNX Runtime"}


def original_cache_dir(model: LoadedModel, root: str | Path | None = None, *, fingerprint: str | None = None) -> Path:
    """Where an original (unpruned) model's measurements and ONNX file live, one folder per weights fingerprint
    (pass ``fingerprint`` when it is known, to spare hashing the weights again)."""
    root = Path(root) if root is not None else default_root()
    return root / ".cache" / f"original-{fingerprint or model.fingerprint()}"


def run_onnx(run: Run) -> Path:
    """A done run's ONNX file, ``RUN/compare/model.onnx``: exported (and checked) once, then read as it is.

    Raises:
        PrunerError: the run is not done or cannot be rebuilt, records no input shape, or the export fails.
    """
    path = run_cache_dir(run) / "model.onnx"
    if path.is_file():  # rebuilding the pruned model is only needed for the first export
        return path
    loaded = load_run_model(run)
    shape = tuple(run.base.get("input_shape") or loaded.input_shape or ())
    if not shape:
        raise PrunerError(f"run '{run.id}' records no input shape to export the model with")
    return ensure_onnx(loaded.module, shape, run_cache_dir(run))


def data_digest(data: Dataset) -> str:
    """A short hash of the test split (inputs and labels): measurements are only reused on the same data."""
    return sample_digest(data.x_test, data.y_test)


@torch.inference_mode()
def per_class_accuracy(module: Callable[[torch.Tensor], torch.Tensor], data: Dataset,
                       batch_size: int = 256) -> tuple[float, list[float | None]]:
    """Top-1 accuracy overall and per class (``None`` for a class absent from the test split); ``module`` is a
    model, or any callable from a batch to its logits (an ONNX Runtime session's, say)."""
    classes = max(data.num_classes, int(data.y_test.max()) + 1 if len(data.y_test) else 0)
    correct = torch.zeros(classes, dtype=torch.long)
    seen = torch.zeros(classes, dtype=torch.long)
    for xb, yb in batches(data.x_test, data.y_test, batch_size):
        hit = (module(xb).argmax(1) == yb).long()
        correct.index_add_(0, yb, hit)
        seen.index_add_(0, yb, torch.ones_like(yb))
    total = int(seen.sum())
    overall = int(correct.sum()) / total if total else float("nan")
    return overall, [int(c) / int(s) if s else None for c, s in zip(correct, seen, strict=True)]


def measure_static(module: nn.Module, input_shape: tuple[int, ...], data: Dataset, folder: str | Path, *,
                   onnx: bool = True) -> ModelFigures:
    """A model's figures but latency (see :func:`time_together`), writing the weight files (and ONNX) into ``folder``.

    Returns:
        The :class:`~pruner_core.compare.result.ModelFigures`, with no latency yet; ``onnx_error`` says why ONNX
        is missing, if it is.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    module.eval()
    acc, per_class = per_class_accuracy(module, data)
    params, nonzero = count_parameters(module)
    flops, _ = layer_flops(module, example_input(module, input_shape))
    written = size_figures(module, folder)
    how = dict(written["how"])
    onnx_error = onnx_bytes = None
    if onnx:
        try:
            path = ensure_onnx(module, input_shape, folder)
        except PrunerError as e:
            onnx_error = str(e)
        else:
            onnx_bytes = path.stat().st_size
            how["onnx_bytes"] = "bytes of the ONNX file (opset 17; weights stored dense, as ONNX stores them)"
    sparsity = weight_sparsity(module)
    how |= {
        "accuracy": f"top-1 on the {len(data.y_test):,} test samples of {data.name}",
        "flops": "torch.utils.flop_counter on one forward pass at batch 1 (a multiply-add counts as 2 FLOPs)",
        "latency": "median and inter-quartile range of timed forward passes on " + device_name() + "; the models "
                   "of one comparison are timed together, in turn, so a busy machine slows them alike",
    }
    sizes = Sizes(written["dense_bytes"], written["gzip_bytes"], written["sparse_bytes"], onnx_bytes)
    return ModelFigures(accuracy=acc, per_class=per_class, params=params, nonzero_params=nonzero, flops=flops,
                        sizes=sizes, sparsity=sparsity, how=how, onnx_error=onnx_error)


def measure_int8(module: nn.Module, input_shape: tuple[int, ...], int8: Path, data: Dataset,
                 folder: str | Path) -> ModelFigures:
    """The figures of a run's INT8 ONNX file (:mod:`~pruner_core.pipeline.quantize`) but latency: accuracy in ONNX
    Runtime, the run's parameters and FLOPs (INT8 makes each multiply-add cheaper, not fewer), and the file's bytes:
    as it is, gzip-compressed, and as a bitmask of its non-zero initializer values plus those values."""
    import gzip

    import numpy as np
    import onnx
    from onnx import numpy_helper

    from pruner_core.io.export import session

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sess = session(int8)
    accuracy, per_class = per_class_accuracy(
        lambda xb: torch.from_numpy(sess.run(None, {"input": xb.float().numpy()})[0]), data)
    params, nonzero = count_parameters(module)
    flops, _ = layer_flops(module, example_input(module, input_shape))
    raw = int8.read_bytes()
    sparse = 0
    for tensor in onnx.load(str(int8)).graph.initializer:
        values = numpy_helper.to_array(tensor)
        sparse += (values.size + 7) // 8 + int(np.count_nonzero(values)) * values.itemsize
    sizes = Sizes(len(raw), len(gzip.compress(raw, compresslevel=9, mtime=0)), sparse, len(raw))
    how = {"dense_bytes": "bytes of the INT8 ONNX file (its weights are the model's file)",
           "gzip_bytes": "bytes of that file compressed with gzip (level 9)",
           "sparse_bytes": "a bitmask of the non-zero initializer values (1 bit each) plus those values",
           "onnx_bytes": "bytes of the INT8 ONNX file (QuantizeLinear/DequantizeLinear, INT8 weights)",
           "accuracy": f"top-1 in ONNX Runtime on the {len(data.y_test):,} test samples of {data.name}",
           "latency": "ONNX Runtime only: INT8 runs there, not in PyTorch eager"}
    return ModelFigures(accuracy=accuracy, per_class=per_class, params=params, nonzero_params=nonzero, flops=flops, sizes=sizes, sparsity={}, how=how)


@dataclass
class Subject:
    """A model to time: its module, one sample's shape, and its ONNX file (None: PyTorch only)."""

    module: nn.Module
    input_shape: tuple[int, ...]
    onnx: Path | None = None
    pytorch: bool = True  # False: an ONNX-only model (INT8), timed in ONNX Runtime alone (module: for its inputs)


def time_together(subjects: list[Subject], *, latency_runs: tuple[int, int] = (30, 10),
                  warmup: int = 3) -> list[dict[str, dict[str, Latency]]]:
    """Latency of several models, interleaved: each timed round goes through every model in turn.

    Timing the models of a comparison one after another lets a load that comes and goes favour whichever ran
    in a quiet moment; in turn, they share it. Each runtime is timed in a phase of its own (PyTorch eager, then
    ONNX Runtime where a file is given): ONNX Runtime's worker threads keep spinning after a call and would slow
    a PyTorch call right after it many times over, and the sessions are made with spinning off, so that one
    session's idle threads do not slow the next one's call. Per runtime and batch (1 and 64): ``warmup`` untimed calls
    per model, then ``runs`` rounds.

    Returns:
        Per subject: ``{runtime: {"batch1": Latency, "batch64": Latency}}`` (:attr:`ModelFigures.latency
        <pruner_core.compare.result.ModelFigures.latency>`).
    """
    from pruner_core.io.export import ort_runtime, session

    out: list[dict[str, dict[str, Latency]]] = [({"pytorch": {}} if s.pytorch else {}) | (
        {"onnxruntime": {}} if s.onnx else {}) for s in subjects]
    threads = torch.get_num_threads()
    inputs = {b: [random_input(s.module, s.input_shape, b) for s in subjects]
              for b in BATCHES}
    phases = [("pytorch", PYTORCH_RUNTIME, {i: s.module for i, s in enumerate(subjects) if s.pytorch})]
    sessions = {i: session(s.onnx, spinning=False) for i, s in enumerate(subjects) if s.onnx}
    if sessions:
        phases.append(("onnxruntime", ort_runtime() + ", worker threads not spinning",
                       {i: functools.partial(lambda sess, x: sess.run(None, {"input": x.numpy()}), sess)
                        for i, sess in sessions.items()}))
    for runtime, label, runners in phases:
        for batch, runs in zip(BATCHES, latency_runs, strict=True):
            calls = {i: functools.partial(run, inputs[batch][i]) for i, run in runners.items()}
            times: dict[int, list[float]] = {i: [] for i in calls}
            with torch.inference_mode():
                for call in calls.values():
                    for _ in range(warmup):
                        call()
                for _ in range(runs):
                    for i, call in calls.items():
                        start = time.perf_counter()
                        call()
                        times[i].append((time.perf_counter() - start) * 1000)
            for i, t in times.items():
                out[i][runtime][f"batch{batch}"] = latency_of(t, batch, warmup, threads, label)
    return out


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def _cache_key(data: Dataset) -> str:
    """Figures are reused only on the same data, machine, thread count and runtime versions (a run folder may
    have been measured elsewhere and handed on)."""
    from pruner_core.io.export import ort_runtime

    where = f"{device_name()}|{torch.get_num_threads()}|{PYTORCH_RUNTIME}|{ort_runtime()}"
    return f"v{VERSION}-{data_digest(data)}-{hashlib.sha256(where.encode()).hexdigest()[:8]}"


def read_cached(folder: str | Path, data: Dataset) -> ModelFigures | None:
    """The figures cached in ``folder/compare.json`` for ``data`` (None: never measured, or unreadable or damaged,
    so that they are measured again)."""
    try:
        entries = json.loads((Path(folder) / "compare.json").read_text())
    except (OSError, ValueError):
        return None
    figures = entries.get(_cache_key(data)) if isinstance(entries, dict) else None
    if figures is None:
        return None
    try:
        return ModelFigures.from_json(figures)
    except PrunerError:
        return None


def write_cached(folder: str | Path, data: Dataset, figures: ModelFigures) -> None:
    """Store ``figures`` for ``data`` in ``folder/compare.json`` (atomically; other data sets' entries kept)."""
    folder = Path(folder)
    try:
        entries = json.loads((folder / "compare.json").read_text())
        entries = entries if isinstance(entries, dict) else {}
    except (OSError, ValueError):
        entries = {}
    entries[_cache_key(data)] = figures.to_json()
    tmp = folder / f".compare.{os.getpid()}.{threading.get_ident()}.json"
    tmp.write_text(json.dumps(entries, indent=1))
    os.replace(tmp, folder / "compare.json")


def forget(folder: str | Path) -> None:
    """Drop the cached figures in ``folder`` so the next comparison measures again (the ONNX file is kept)."""
    (Path(folder) / "compare.json").unlink(missing_ok=True)


@dataclass
class Entry:
    """One model in a comparison: the original or a run, its figures (None if it could not be measured)."""

    key: str
    label: str
    kind: str  # "original", "masked", "channel", "dense" (a run that removed nothing) or "int8" (a run's INT8 ONNX)
    figures: ModelFigures | None = None
    history: list = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    status: str = "done"
    seconds: float = 0.0
    recipe: str | None = None  # the run's recipe as YAML
    of: str | None = None  # for an "int8" entry: the key of the run it quantizes

    @property
    def masked(self) -> bool:
        return self.kind == "masked"


def _kind(run: Run) -> str:
    if run.structure:
        return "channel"
    return "masked" if run.has_masks else "dense"


def _run_warnings(run: Run, original: LoadedModel, data_spec: str | None) -> list[str]:
    warnings = []
    if run.base.get("fingerprint") and run.base["fingerprint"] != original.fingerprint():
        warnings.append(
            f"pruned from another base model ({run.base.get('spec')}, weights {run.base['fingerprint']}) than the "
            f"original shown ({original.label}, weights {original.fingerprint()}): deltas compare different models"
        )
    if data_spec is not None and run.base.get("data") and run.base["data"] != data_spec:
        warnings.append(
            f"pruned and fine-tuned on other data ({run.base['data']}) than the data measured here ({data_spec})"
        )
    return warnings


def compare(
    original: LoadedModel,
    data: Dataset,
    runs: list[Run],
    *,
    data_spec: str | None = None,
    root: str | Path | None = None,
    latency_runs: tuple[int, int] = (30, 10),
    callback: Callable[[int, int, str], None] | None = None,
) -> list[Entry]:
    """The original and each run on ``data``, the original first; figures read from cache when all are there.

    When any model is new to the cache, the new ones are measured and then every model shown is timed again,
    together (:func:`time_together`), so the latencies of one table always come from one sitting; the new
    latencies are cached for all of them.

    Args:
        original: the unpruned model (not modified).
        data: the data every model is measured on.
        runs: the runs to compare, as listed by :func:`~pruner_core.pipeline.runs.list_runs` (any status).
        data_spec: how ``data`` was loaded; runs pruned on another spec get a warning.
        root: the runs folder holding the original's cache (see :func:`original_cache_dir`).
        latency_runs: timed rounds at batch 1 and 64 (only used when measuring).
        callback: ``(done, total, label)`` as models are measured.

    Returns:
        One :class:`Entry` per model. A run that is not done, damaged, or cannot be rebuilt or measured has
        ``error`` set and no figures; nothing here raises for one bad run.

    Raises:
        CompatibilityError: ``data`` does not fit the original model.
    """
    shape = check_data_fits(original, data)
    entries = [Entry("original", f"original · {original.label}", "original")]
    folders = [original_cache_dir(original, root)]
    sources: list[Run | None] = [None]  # the run each entry measures (None: the original)
    for run in runs:
        entries.append(Entry(run.id, run.label, _kind(run) if run.status == "done" else "—", status=run.status,
                             history=list(run.history or []), recipe=run.recipe.to_yaml() if run.recipe else None))
        folders.append(run_cache_dir(run))
        sources.append(run)
        if run.status != "done":
            entries[-1].error = run.status + (f": {run.error}" if run.error else "")
            continue
        entries[-1].warnings = _run_warnings(run, original, data_spec)
        if (run.path / INT8_FILE).is_file():  # quantized: its INT8 ONNX is a model of the table too
            entries.append(Entry(f"{run.id}+int8", f"{run.label} + INT8", "int8", recipe=entries[-1].recipe,
                                 warnings=list(entries[-1].warnings), of=run.id))
            folders.append(run_cache_dir(run) / "int8")
            sources.append(run)
    for entry, folder in zip(entries, folders, strict=True):
        if entry.error is None:
            entry.figures = read_cached(folder, data)
    measured = [e.figures for e in entries if e.error is None]
    if all(f is not None for f in measured) and len({f.measured for f in measured}) <= 1:
        return entries  # every figure cached, and every latency from one sitting
    _measure_missing(original, shape, data, sources, entries, folders, latency_runs, callback)
    return entries


def _measure_missing(original, shape, data, sources, entries, folders, latency_runs, callback) -> None:
    """Measure the entries without figures, then time every measurable entry together and cache all."""
    subjects: dict[int, Subject] = {}
    total = len(entries) + 1
    for i, entry in enumerate(entries):
        if entry.error is not None:
            continue
        if callback:
            callback(i, total, entry.label)
        start = time.perf_counter()
        run = sources[i]
        try:
            if run is not None and not run.path.is_dir():
                raise PrunerError(f"run '{run.id}' is no longer on disk at {run.path}")
            model = original if run is None else load_run_model(run)
            model_shape = shape if run is None else check_data_fits(model, data)
            if entry.figures is None and entry.kind == "int8":
                entry.figures = measure_int8(model.module, model_shape, run.path / INT8_FILE, data, folders[i])
            elif entry.figures is None:
                onnx = run is not None or original.fmt not in ("torchscript", "export")
                entry.figures = measure_static(model.module, model_shape, data, folders[i], onnx=onnx)
        except PrunerError as e:
            entry.error, entry.figures = str(e), None
        except (OSError, RuntimeError, ValueError) as e:  # a folder changed on disk under us: report, do not crash
            entry.error, entry.figures = f"{type(e).__name__}: {e}", None
        else:
            if entry.kind == "int8":
                subjects[i] = Subject(model.module, model_shape, run.path / INT8_FILE, pytorch=False)
            else:
                has_onnx = entry.figures.sizes.onnx_bytes is not None
                subjects[i] = Subject(model.module, model_shape, folders[i] / "model.onnx" if has_onnx else None)
        entry.seconds = time.perf_counter() - start
    if callback:
        callback(total - 1, total, "timing every model together")
    start = time.perf_counter()
    order = list(subjects)
    try:
        timed = time_together([subjects[i] for i in order], latency_runs=latency_runs)
    except Exception:  # noqa: BLE001 - ONNX Runtime raises its own kinds: find the model that fails, alone
        order = [i for i in order if _times_alone(subjects[i], entries[i])]
        timed = time_together([subjects[i] for i in order], latency_runs=latency_runs)
    measured = _now()
    share = (time.perf_counter() - start) / max(len(order), 1)
    for i, latency in zip(order, timed, strict=True):
        entries[i].figures = replace(entries[i].figures, latency=latency, measured=measured)
        entries[i].seconds += share
        try:
            write_cached(folders[i], data, entries[i].figures)
        except OSError as e:  # the run folder went away while it was being measured
            entries[i].error, entries[i].figures = f"its figures could not be cached: {type(e).__name__}: {e}", None


def _times_alone(subject: Subject, entry: Entry) -> bool:
    """Whether ``subject`` can be timed; if not, its entry says why (and has no figures)."""
    try:
        time_together([subject], latency_runs=(1, 1), warmup=0)
    except Exception as e:  # noqa: BLE001 - see above
        entry.error, entry.figures = f"latency could not be measured: {type(e).__name__}: {e}", None
        return False
    return True


def compare_saved(
    runs: list[Run], *, model: LoadedModel | None = None, data_spec: str | None = None,
    latency_runs: tuple[int, int] = (30, 10),
) -> tuple[list[Entry], Dataset]:
    """Compare saved runs headless (the CLI): against ``model``, else the first run's base model, on ``data_spec``,
    else the data the first run was pruned with. The original's figures are cached beside the runs.

    Raises:
        PrunerError: no runs; the first run names no base model or data; they cannot be loaded or do not fit.
    """
    from pruner_core.io.data import load_data
    from pruner_core.io.models import load_model

    if not runs:
        raise PrunerError("no runs to compare: name at least one run folder")
    base = runs[0].base
    if model is None:
        if not base.get("spec"):
            raise PrunerError(f"run '{runs[0].id}' names no base model; pass the original model explicitly")
        model = load_model(base["spec"], weights=base.get("weights"))
    data_spec = data_spec or base.get("data")
    if not data_spec:
        raise PrunerError(f"run '{runs[0].id}' does not record its data; pass --data")
    data = fit_data(model, load_data(data_spec))
    entries = compare(model, data, runs, data_spec=data_spec, root=runs[0].path.parent, latency_runs=latency_runs)
    return entries, data
