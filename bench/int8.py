"""INT8 benchmarks (issue 16): ONNX Runtime static INT8 (QDQ, per-channel weights, 256 calibration images, MinMax)
against FP32 ONNX, every file of one comparison timed in turn in one sitting (pipeline.quantize.time_in_turn)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = (30, 10)  # timed rounds at batch 1 and 64


def bench_int8() -> dict:
    """``int8_speedup.<model>.b1/.b64`` (FP32 ONNX median / INT8 ONNX median, dense; targets resnet20 >= 1.8 at
    batch 1, >= 1.5 at 64), ``channel50_int8_speedup.resnet20.b1/.b64`` (dense FP32 / channel-50% (no fine-tuning)
    + INT8; target >= 4 at 64) beside ``channel50_speedup`` (dense FP32 / channel-50% FP32) and
    ``channel50_int8_over_fp32`` (channel-50% FP32 / its INT8), ``int8_accuracy_drop.<model>`` (points, on the
    1,000 test images; target <= 0.5) and ``int8_size_ratio.<model>`` (INT8 file / FP32 file bytes; target <= 0.3),
    for the three demo models and the ResNet-50-sized network (random weights: no accuracy)."""
    import torch

    from pruner_core.io.data import load_data
    from pruner_core.io.export import export_onnx, onnx_accuracy
    from pruner_core.io.models import load_model
    from pruner_core.io.quantize import quantize_onnx
    from pruner_core.pipeline.quantize import time_in_turn
    from pruner_core.pipeline.run import prune
    from pruner_core.pruning.recipe import Recipe

    sys.path.insert(0, str(ROOT / "bench"))
    from resnet50 import INPUT_SHAPE, resnet50

    data = load_data("demo:mnist5k")

    def acc(path) -> float:
        return onnx_accuracy(path, data.x_test, data.y_test)

    calibration = data.x_train[:256].float().numpy()
    figures: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-int8-") as tmp:
        tmp = Path(tmp)
        models = [(name, load_model(f"demo:{name}").module, tuple(data.x_train.shape[1:]), calibration)
                  for name in ("mnist-cnn", "lenet300", "resnet20")]
        big = resnet50()
        g = torch.Generator().manual_seed(0)
        models.append(("resnet50", big, INPUT_SHAPE, torch.rand(64, *INPUT_SHAPE, generator=g).numpy()))
        for name, module, shape, cal in models:
            fp32 = export_onnx(module, shape, tmp / f"{name}.onnx")
            int8 = quantize_onnx(fp32, tmp / f"{name}.int8.onnx", calibration=cal).path
            paths = [fp32, int8]
            if name == "resnet20":
                pruned = prune(load_model("demo:resnet20"), data, Recipe.from_dict(
                    {"granularity": "channel", "sparsity": 0.5, "finetune": {"epochs": 0}})).module
                c50 = export_onnx(pruned, shape, tmp / "c50.onnx")
                paths += [c50, quantize_onnx(c50, tmp / "c50.int8.onnx", calibration=cal).path]
            timed = time_in_turn(paths, shape, RUNS if name != "resnet50" else (10, 3))
            med = [{b: t[f"batch{b}"].median_ms for b in (1, 64)} for t in timed]
            for b in (1, 64):
                figures[f"int8_speedup.{name}.b{b}"] = round(med[0][b] / med[1][b], 3)
                figures[f"int8_latency_ms.{name}.b{b}"] = {"fp32": round(med[0][b], 3), "int8": round(med[1][b], 3)}
            figures[f"int8_size_ratio.{name}"] = round(int8.stat().st_size / fp32.stat().st_size, 3)
            if name != "resnet50":
                figures[f"int8_accuracy_drop.{name}"] = round((acc(fp32) - acc(int8)) * 100, 2)
            if name == "resnet20":
                label = timed[0]["batch1"].runtime + " on " + timed[0]["batch1"].device
                for b in (1, 64):
                    figures[f"channel50_int8_speedup.resnet20.b{b}"] = round(med[0][b] / med[3][b], 3)
                    figures[f"channel50_speedup.resnet20.b{b}"] = round(med[0][b] / med[2][b], 3)
                    figures[f"channel50_int8_over_fp32.resnet20.b{b}"] = round(med[2][b] / med[3][b], 3)
                    figures[f"int8_latency_ms.resnet20-channel50.b{b}"] = {"fp32": round(med[2][b], 3),
                                                                          "int8": round(med[3][b], 3)}
        figures["int8.how"] = (label + f"; {RUNS[0]} rounds at batch 1, {RUNS[1]} at 64, in turn (ResNet-50: 10 and 3); "
                               "static INT8, QDQ, per-channel, MinMax on 256 training images")
    return figures
