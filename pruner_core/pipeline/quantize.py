"""The INT8 stage of a run: its pruned model as ONNX, quantized by ONNX Runtime, measured beside its own FP32.

:func:`quantize_run` exports the run's model (the FP32 ONNX file Compare uses, ``RUN/compare/model.onnx``),
quantizes it (:func:`~pruner_core.io.quantize.quantize_onnx`) with activation ranges calibrated on the first
``calibration_samples`` images of the training split (never the test split it is scored on), writes
``RUN/model.int8.onnx`` and measures, in one sitting, both files in ONNX Runtime: top-1 on the test split, bytes on
disk, latency at batch 1 and 64 (timed in turn, worker threads not spinning), and which layers run in INT8. The
figures go to ``RUN/int8.json``; a recipe with ``quantize`` ends its run with this stage, ``pruner quantize RUN``
runs it on an existing run, and so does the Compare page.

Where INT8 does not pay (slower than FP32, or more than a point of accuracy lost) ``verdict`` says so with the
measured figures; nothing is hidden.
"""

from __future__ import annotations

import functools
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from pruner_core.errors import PrunerError, SpecError
from pruner_core.io.data import Dataset
from pruner_core.io.export import ensure_onnx, onnx_accuracy, ort_runtime, session
from pruner_core.io.fit import check_data_fits
from pruner_core.io.quantize import int8_operators, quantize_onnx
from pruner_core.measure.metrics import Latency, latency_of
from pruner_core.pipeline.replay import load_run_model
from pruner_core.pipeline.runs import Run, load_run, run_cache_dir, write_artifact
from pruner_core.pruning.recipe import Quantize

INT8_FILE, FIGURES_FILE = "model.int8.onnx", "int8.json"
BATCHES = (1, 64)
LOSS_LIMIT = 0.01  # more accuracy lost than this (a fraction) and the verdict says INT8 does not pay here


@dataclass
class Int8Figures:
    """One run's FP32 and INT8 ONNX files, measured together."""

    settings: dict  # the Quantize section used
    accuracy_fp32: float
    accuracy_int8: float
    bytes_fp32: int
    bytes_int8: int
    latency_fp32: dict[str, Latency]  # "batch1", "batch64"
    latency_int8: dict[str, Latency]
    layers: dict[str, dict]  # layer -> {"op": ..., "int8": bool}
    calibration_samples: int
    test_samples: int
    qdq_nodes: int
    measured: str = ""
    sha256: str = ""  # of the INT8 file these figures are of
    how: dict = field(default_factory=dict)

    def speedup(self, batch: int) -> float:
        """FP32 median / INT8 median at ``batch`` (both timed in this sitting)."""
        return self.latency_fp32[f"batch{batch}"].median_ms / self.latency_int8[f"batch{batch}"].median_ms

    @property
    def size_ratio(self) -> float:
        return self.bytes_int8 / self.bytes_fp32

    @property
    def int8_layers(self) -> int:
        return sum(1 for layer in self.layers.values() if layer["int8"])

    def verdict(self) -> str:
        """One sentence with the measured figures: INT8 pays, or where it does not."""
        lost = self.accuracy_fp32 - self.accuracy_int8
        b1, b64 = self.speedup(1), self.speedup(64)
        figures = (f"{b1:.2f}x at batch 1, {b64:.2f}x at batch 64, {self.size_ratio:.2f}x the bytes, accuracy "
                   f"{self.accuracy_fp32:.2%} -> {self.accuracy_int8:.2%}; {self.int8_layers} of {len(self.layers)} "
                   "layers in INT8")
        problems = []
        slower = [str(b) for b, ratio in ((1, b1), (64, b64)) if ratio < 1]
        if slower:
            problems.append(f"INT8 is slower here at batch {' and '.join(slower)} (this CPU may lack VNNI, or the "
                            "layers are too narrow for INT8 kernels to win back the quantize/dequantize steps)")
        if lost > LOSS_LIMIT:
            problems.append(f"it loses {lost * 100:.1f} points (exclude the layers that quantize badly, e.g. the "
                            "first and last, or try another calibration method)")
        return ("INT8 does not pay everywhere: " + "; ".join(problems) + f". Measured: {figures}." if problems
                else f"INT8 pays: {figures}.")

    def to_json(self) -> dict:
        out = asdict(self)
        out["latency_fp32"] = {k: asdict(v) for k, v in self.latency_fp32.items()}
        out["latency_int8"] = {k: asdict(v) for k, v in self.latency_int8.items()}
        return out

    @classmethod
    def from_json(cls, data: dict) -> Int8Figures:
        """Read :meth:`to_json`'s output.

        Raises:
            PrunerError: not the figures this module writes.
        """
        try:
            data = dict(data)
            for key in ("latency_fp32", "latency_int8"):
                data[key] = {k: Latency(**v) for k, v in data[key].items()}
            return cls(**data)
        except (TypeError, KeyError, AttributeError) as e:
            raise PrunerError(f"{FIGURES_FILE} cannot be read ({type(e).__name__}: {e}); quantize the run again") from None


def quantize_run(run: Run | str, data: Dataset, settings: Quantize, *, latency_runs: tuple[int, int] = (30, 10),
                 warmup: int = 3) -> Int8Figures:
    """Quantize a finished run to INT8 and measure it beside its own FP32 ONNX (see the module's docstring).

    Raises:
        SpecError: ``settings.kind`` is ``none``, or anything :func:`~pruner_core.io.quantize.quantize_onnx` refuses
            (calibration data of the wrong shape, an excluded layer not in the graph).
        CompatibilityError: ``data`` does not fit the run's model.
        PrunerError: the run is not done, or cannot be exported or quantized.
    """
    run = load_run(run) if not isinstance(run, Run) else run
    if settings.kind == "none":
        raise SpecError("quantize kind is none: nothing to do (use int8_static or int8_dynamic)")
    if not data.x_train.is_floating_point():
        raise SpecError(f"INT8 here quantizes models whose inputs are floating-point (images, sequences, tables); "
                        f"'{data.name}' holds integer ids ({data.x_train.dtype}), which need an embedding-aware "
                        "quantization not built yet")
    model = load_run_model(run)
    shape = check_data_fits(model, data)
    fp32 = ensure_onnx(model.module, shape, run_cache_dir(run))
    pending = run.path / f".{INT8_FILE}.pending"  # measured first; it and its figures replace the old ones together
    n_cal = min(settings.calibration_samples, len(data.x_train)) if settings.kind == "int8_static" else 0
    calibration = data.x_train[:n_cal].float().numpy() if n_cal else None
    quantized = quantize_onnx(fp32, pending, kind=settings.kind, calibration=calibration,
                              per_channel=settings.per_channel, fmt=settings.format, method=settings.method,
                              exclude=list(settings.exclude))
    x, y = data.x_test, data.y_test
    accuracy = {name: onnx_accuracy(path, x, y) for name, path in (("fp32", fp32), ("int8", quantized.path))}
    latency = time_in_turn([fp32, quantized.path], shape, latency_runs, warmup)
    figures = Int8Figures(
        settings.model_dump(mode="json"), accuracy["fp32"], accuracy["int8"], fp32.stat().st_size,
        quantized.path.stat().st_size, latency[0], latency[1], int8_operators(quantized.path), n_cal, len(y),
        quantized.qdq_nodes, time.strftime("%Y-%m-%dT%H:%M:%S%z"), _sha256(pending),
        {"accuracy": f"top-1 in ONNX Runtime on the {len(y):,} test samples (not used to calibrate)",
         "calibration": f"activation ranges from the first {n_cal} training samples ({settings.method})"
                        if calibration is not None else "dynamic: ranges computed at run time",
         "latency": "FP32 and INT8 ONNX files timed in turn in one sitting (" + ort_runtime() +
                    ", worker threads not spinning)",
         "layers": "the operator ONNX Runtime runs for each layer after fusing the QDQ pairs"},
    )
    write_artifact(run, FIGURES_FILE, json.dumps(figures.to_json(), indent=2).encode())
    os.replace(pending, run.path / INT8_FILE)
    (run_cache_dir(run) / "int8" / "compare.json").unlink(missing_ok=True)  # Compare measures the new file again
    return figures


def read_int8(run: Run) -> Int8Figures | None:
    """The run's stored INT8 figures, or None when it was never quantized (or its INT8 file is gone)."""
    path, int8 = run.path / FIGURES_FILE, run.path / INT8_FILE
    if not path.is_file() or not int8.is_file():
        return None
    try:
        figures = Int8Figures.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, PrunerError):
        return None
    return figures if figures.sha256 == _sha256(int8) else None  # figures of another file (interrupted): none


def _sha256(path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def time_in_turn(paths, input_shape: tuple[int, ...], latency_runs: tuple[int, int] = (30, 10),
                 warmup: int = 3) -> list[dict[str, Latency]]:
    """Latency of each file at batch 1 and 64, timed round by round in turn (a load that comes and goes is shared)."""
    sessions = [session(p, spinning=False) for p in paths]
    threads = torch.get_num_threads()
    label = ort_runtime() + ", worker threads not spinning"
    out: list[dict[str, Latency]] = [{} for _ in paths]
    for batch, runs in zip(BATCHES, latency_runs, strict=True):
        x = np.random.default_rng(0).random((batch, *input_shape), dtype=np.float32)
        calls = [functools.partial(s.run, None, {"input": x}) for s in sessions]
        times: list[list[float]] = [[] for _ in calls]
        for call in calls:
            for _ in range(warmup):
                call()
        for _ in range(runs):
            for i, call in enumerate(calls):
                start = time.perf_counter()
                call()
                times[i].append((time.perf_counter() - start) * 1000)
        for i, t in enumerate(times):
            out[i][f"batch{batch}"] = latency_of(t, batch, warmup, threads, label)
    return out
