"""Per-layer INT8 sensitivity: each layer alone in INT8 (every other layer kept FP32), accuracy measured in ONNX
Runtime, beside the whole model in INT8 and in FP32 — the pruning scan's question ("which layers can take it?") asked
of quantization, with the same answer shape: one accuracy per layer on the first ``samples`` test images.

Calibration reads the first ``calibration_samples`` training images, never the test images scored.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pruner_core.errors import SpecError
from pruner_core.io.data import Dataset
from pruner_core.io.export import export_onnx, onnx_accuracy
from pruner_core.io.fit import check_data_fits
from pruner_core.io.models import LoadedModel
from pruner_core.io.quantize import compute_layers, quantize_onnx


@dataclass
class Int8Sensitivity:
    """Accuracy with one layer at a time in INT8 (``layers``), the whole model in INT8 and in FP32 (ONNX Runtime)."""

    fp32_accuracy: float
    int8_accuracy: float
    layers: dict[str, float]  # layer -> accuracy with that layer alone in INT8
    samples: int
    calibration_samples: int
    method: str
    seconds: float

    def drops(self) -> dict[str, float]:
        """Accuracy lost per layer alone in INT8, in points (negative: it happened to help)."""
        return {name: (self.fp32_accuracy - acc) * 100 for name, acc in self.layers.items()}

    def worst(self, n: int = 3) -> list[str]:
        """The ``n`` layers that lose most alone in INT8: the first to keep in FP32."""
        return sorted(self.layers, key=lambda name: self.layers[name])[:n]


def int8_sensitivity(model: LoadedModel, data: Dataset, *, samples: int = 500, calibration_samples: int = 256,
                     method: str = "minmax", callback: Callable[[int, int, str], None] | None = None) -> Int8Sensitivity:
    """Quantize each compute layer of ``model`` alone (static INT8, QDQ, per-channel) and measure accuracy.

    Raises:
        SpecError: no test or training samples, a model that is not an eager module (it must export to ONNX), or
            anything :func:`~pruner_core.io.quantize.quantize_onnx` refuses.
        CompatibilityError: the data does not fit the model.
    """
    start = time.perf_counter()
    shape = check_data_fits(model, data)
    n = min(samples, len(data.y_test))
    if n < 1 or len(data.x_train) < 1:
        raise SpecError(f"data '{data.name}' needs test samples to score and training samples to calibrate on")
    x, y = data.x_test[:n].float(), data.y_test[:n]
    calibration = data.x_train[:calibration_samples].float().numpy()
    with tempfile.TemporaryDirectory(prefix="int8-sensitivity-") as tmp:
        fp32 = export_onnx(model.module, shape, Path(tmp) / "fp32.onnx")
        layers = list(compute_layers(fp32))
        total = len(layers) + 2
        report = callback or (lambda done, of, what: None)
        report(0, total, "FP32")
        fp32_acc = onnx_accuracy(fp32, x, y)
        report(1, total, "every layer in INT8")
        whole = quantize_onnx(fp32, Path(tmp) / "all.onnx", calibration=calibration, method=method).path
        int8_acc = onnx_accuracy(whole, x, y)
        alone = {}
        for i, layer in enumerate(layers):
            report(i + 2, total, f"{layer} alone in INT8")
            path = quantize_onnx(fp32, Path(tmp) / "one.onnx", calibration=calibration, method=method,
                                 exclude=[other for other in layers if other != layer]).path
            alone[layer] = onnx_accuracy(path, x, y)
    return Int8Sensitivity(fp32_acc, int8_acc, alone, n, len(calibration), method, time.perf_counter() - start)

