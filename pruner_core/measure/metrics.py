"""Measured vital signs: parameters, non-zeros, FLOPs, size on disk, accuracy, latency.

Nothing here estimates: FLOPs come from ``torch.utils.flop_counter`` running the model,
sizes are the bytes of a real serialisation, latencies are timed runs whose conditions
(device, threads, batch, runs, warm-up, runtime) travel with the figure.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import nn

from pruner_core.errors import PrunerError
from pruner_core.graph.flops import layer_flops
from pruner_core.io.data import batches
from pruner_core.io.fit import check_data_fits
from pruner_core.io.inputs import example_input, random_input
from pruner_core.pruning.describe import LayerInfo, describe_model


@torch.inference_mode()
def accuracy(module: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``module`` on ``(x, y)`` as a fraction in [0, 1]."""
    if len(y) == 0:
        return float("nan")
    device = next(module.parameters(), torch.empty(0)).device  # batches go where the module is (a GPU mid-training)
    correct = 0
    for xb, yb in batches(x, y, batch_size):
        correct += int((module(xb.to(device)).argmax(1).cpu() == yb).sum())
    return correct / len(y)


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """(parameters, non-zero parameters) over every parameter tensor of ``module``."""
    total = nonzero = 0
    for p in module.parameters():
        total += p.numel()
        nonzero += int(torch.count_nonzero(p.detach()))
    return total, nonzero


def size_bytes(module: nn.Module) -> int:
    """Bytes of the module's weights (parameters and buffers) serialised as safetensors, dense."""
    from safetensors.torch import save

    return len(save({k: v.detach().contiguous() for k, v in module.state_dict().items()}))


@dataclass(frozen=True)
class Latency:
    """A measured forward-pass latency and how it was measured."""

    batch: int
    median_ms: float
    p25_ms: float
    p75_ms: float
    min_ms: float
    runs: int
    warmup: int
    threads: int
    device: str
    runtime: str

    @property
    def label(self) -> str:
        return (
            f"{self.runtime} on {self.device}, batch {self.batch}, median of {self.runs} runs after {self.warmup}"
            f" warm-up, {self.threads} thread(s)"
        )

    def to_dict(self) -> dict:
        return asdict(self) | {"label": self.label}

    @classmethod
    def from_dict(cls, data: dict) -> Latency:
        """Read :meth:`to_dict`'s output (the label is derived, not read)."""
        return cls(**{f.name: data[f.name] for f in fields(cls)})


def device_name() -> str:
    """A short description of the CPU the figures were measured on."""
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return f"CPU ({cpu})"


PYTORCH_RUNTIME = f"PyTorch {torch.__version__.split('+')[0]} eager"


def latency_of(times_ms: list[float], batch: int, warmup: int, threads: int, runtime: str) -> Latency:
    """A :class:`Latency` from timed runs (milliseconds): median, quartiles and minimum, with the conditions."""
    q = statistics.quantiles(times_ms, n=4, method="inclusive") if len(times_ms) > 1 else [times_ms[0]] * 3
    return Latency(batch, statistics.median(times_ms), q[0], q[2], min(times_ms), len(times_ms), warmup, threads,
                   device_name(), runtime)


@torch.inference_mode()
def measure_latency(
    module: nn.Module, sample_shape: tuple[int, ...], batch: int, *, runs: int = 30, warmup: int = 5
) -> Latency:
    """Time ``runs`` forward passes of a random batch after ``warmup`` untimed ones (PyTorch eager, CPU).

    Returns the median and the inter-quartile range in milliseconds, with the conditions.
    """
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs must be >= 1 and warmup >= 0; got runs={runs}, warmup={warmup}")
    x = random_input(module, sample_shape, batch)
    times = timed_runs(lambda: module(x), runs, warmup)
    return latency_of(times, batch, warmup, torch.get_num_threads(), PYTORCH_RUNTIME)


def timed_runs(call, runs: int, warmup: int) -> list[float]:
    """Milliseconds of ``runs`` calls of ``call()``, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return times


@dataclass
class VitalSigns:
    """A model's measured figures on one data set: what ``pruner info`` prints and the Model page shows.

    ``how`` says how each figure was measured (``flops``, ``size_bytes``, ``accuracy``, ``latency``, ``device``).
    """

    model: str
    format: str
    architecture: str | None
    data: dict
    params: int
    nonzero_params: int
    sparsity: float
    flops: int
    size_bytes: int
    accuracy: float
    latency: dict[str, Latency]  # "batch1", "batch64"
    layers: list[LayerInfo]
    card_accuracy: float | None
    how: dict[str, str]

    @property
    def latency_ms(self) -> dict[str, float]:
        """The median latency per batch key."""
        return {k: v.median_ms for k, v in self.latency.items()}

    def to_json(self) -> dict:
        """Plain data (``pruner info --json`` writes it; a run's ``metrics.json`` holds it)."""
        return {
            "model": self.model, "format": self.format, "architecture": self.architecture, "data": self.data,
            "params": self.params, "nonzero_params": self.nonzero_params, "sparsity": self.sparsity,
            "flops": self.flops, "size_bytes": self.size_bytes, "accuracy": self.accuracy,
            "latency_ms": self.latency_ms, "latency": {k: v.to_dict() for k, v in self.latency.items()},
            "layers": [layer.to_dict() for layer in self.layers], "card_accuracy": self.card_accuracy,
            "how": dict(self.how),
        }

    @classmethod
    def from_json(cls, data: dict) -> VitalSigns:
        """Read :meth:`to_json`'s output; other keys (a run's ``recipe``, per-layer sparsity) are ignored.

        Raises:
            PrunerError: a key is missing or of the wrong kind.
        """
        try:
            return cls(
                data["model"], data["format"], data.get("architecture"), dict(data["data"]), int(data["params"]),
                int(data["nonzero_params"]), float(data["sparsity"]), int(data["flops"]), int(data["size_bytes"]),
                float(data["accuracy"]), {k: Latency.from_dict(v) for k, v in data["latency"].items()},
                [LayerInfo.from_dict(layer) for layer in data["layers"]], data.get("card_accuracy"), dict(data["how"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise PrunerError(f"vital signs are incomplete or malformed ({type(e).__name__}: {e})") from None


def vital_signs(model, data, *, latency_runs: tuple[int, int] = (30, 10), warmup: int = 5,
                input_shape: tuple[int, ...] | None = None,
                progress: Callable[[float, str], None] | None = None) -> VitalSigns:
    """Measure a model's vital signs on a data set: the figures ``pruner info`` prints and the Model page shows.

    Args:
        model: a :class:`~pruner_core.io.models.LoadedModel` (not modified).
        data: a :class:`~pruner_core.io.data.Dataset` that fits it.
        latency_runs: timed runs at batch 1 and at batch 64.
        warmup: untimed runs before each latency measurement.
        input_shape: the sample shape, when the data is already known to fit (else checked here).
        progress: ``(fraction done, what comes next)`` before each step; the fractions weigh each step by the
            samples it runs (a batch-1 sample as ten).

    Returns:
        The :class:`VitalSigns`.

    Raises:
        CompatibilityError: the data does not fit the model.
    """
    shape = tuple(input_shape) if input_shape is not None else check_data_fits(model, data)
    steps = [("counting FLOPs and coupled layers", 64)] + [
        (f"timing batch {b} ({runs} runs)", (runs + warmup) * (10 if b == 1 else b))
        for b, runs in zip((1, 64), latency_runs, strict=True)] + [
        (f"accuracy on {len(data.y_test):,} test samples", len(data.y_test))]
    total = sum(w for _, w in steps)

    def step(i: int) -> None:
        if progress is not None:
            progress(sum(w for _, w in steps[:i]) / total, steps[i][0])

    step(0)
    params, nonzero = count_parameters(model.module)
    flops, per_layer = layer_flops(model.module, example_input(model.module, shape))
    layers = describe_model(model, shape, per_layer)  # one FLOP count serves the total and the layers
    lat = {}
    for i, (b, runs) in enumerate(zip((1, 64), latency_runs, strict=True), start=1):
        step(i)
        lat[f"batch{b}"] = measure_latency(model.module, shape, b, runs=runs, warmup=warmup)
    step(3)
    return VitalSigns(
        model=model.label, format=model.fmt, architecture=model.arch, data=data.summary(), params=params,
        nonzero_params=nonzero, sparsity=1 - nonzero / params if params else 0.0, flops=flops,
        size_bytes=size_bytes(model.module), accuracy=accuracy(model.module, data.x_test, data.y_test), latency=lat,
        layers=layers, card_accuracy=model.card.get("test_accuracy"),
        how={
            "flops": "torch.utils.flop_counter on one forward pass at batch 1 (a multiply-add counts as 2 FLOPs)",
            "size_bytes": "bytes of the weights (parameters and buffers) written as dense safetensors",
            "accuracy": f"top-1 on the {len(data.y_test):,} test samples of {data.name}",
            "latency": lat["batch1"].label.replace(", batch 1", "") + " (per batch size)",
            "device": device_name(),
        },
    )


def onnx_latency(path: str | Path, input_shape: tuple[int, ...], batch: int, *, runs: int = 30, warmup: int = 5) -> Latency:
    """Median and spread of ONNX Runtime (CPU) inference time at ``batch`` on zeros of ``input_shape`` (id 0 for token ids)."""
    if runs < 1:
        raise ValueError(f"runs must be at least 1; got {runs}")
    import numpy as np

    from pruner_core.io.export import ort_runtime, session

    sess = session(path)
    ids = sess.get_inputs()[0].type == "tensor(int64)"  # a model that takes token ids: id 0
    x = np.zeros((batch, *input_shape), dtype=np.int64 if ids else np.float32)
    times = timed_runs(lambda: sess.run(None, {"input": x}), runs, warmup)
    return latency_of(times, batch, warmup, sess.get_session_options().intra_op_num_threads, ort_runtime())
