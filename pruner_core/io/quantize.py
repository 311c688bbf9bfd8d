"""INT8 quantization of an ONNX file with ONNX Runtime's own tool, and what ran in INT8 afterwards.

- :func:`quantize_onnx`: pre-process (shape inference, graph optimisation), then static (activation ranges
  calibrated on given samples) or dynamic quantization, weights per output channel or per tensor, as QDQ pairs or
  QLinear operators; layers named in ``exclude`` stay FP32. The file is written atomically and passes
  ``onnx.checker``.
- :func:`layer_of_node`: the model layer (``layer1.0.conv1``) an exported node (``/layer1/layer1.0/conv1/Conv``)
  belongs to, so layers are named by the names a user knows.
- :func:`int8_operators`: after ONNX Runtime has fused the QDQ pairs, which of the model's compute operators run
  in INT8 and which stayed in FP32, per layer.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pruner_core.errors import PrunerError, SpecError

COMPUTE_OPS = ("Conv", "Gemm", "MatMul", "ConvTranspose")  # what INT8 makes cheaper
INT8_OPS = ("QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "QGemm", "QLinearConvTranspose",
            "DynamicQuantizeMatMul", "MatMulIntegerToFloat")
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


@dataclass
class QuantizedFile:
    """What :func:`quantize_onnx` wrote: the file, its operator counts, and the layers it kept in FP32."""

    path: Path
    ops: dict[str, int]  # operator type -> count in the written file
    excluded: list[str] = field(default_factory=list)  # layers kept FP32 on request

    @property
    def qdq_nodes(self) -> int:
        """QuantizeLinear + DequantizeLinear nodes (QDQ format), or QLinear/Integer operators (QOperator format)."""
        return sum(self.ops.get(op, 0) for op in (*QDQ_OPS, *INT8_OPS))


def layer_of_node(node_name: str) -> str:
    """The module path of an exported node: ``/layer1/layer1.0/conv1/Conv`` -> ``layer1.0.conv1`` (torch's exporter
    names each scope by the module's attribute, a child of a container as ``container.index``)."""
    parts: list[str] = []
    for comp in node_name.strip("/").split("/")[:-1]:
        head, _, tail = comp.rpartition(".")
        if parts and head and head == parts[-1]:
            parts.append(tail)  # "layer1" then "layer1.0": the child "0" of layer1
        else:
            parts.append(comp)
    return ".".join(parts)


def compute_layers(path: str | Path) -> dict[str, list[str]]:
    """``{layer: [node names]}`` of the compute operators (Conv, Gemm, MatMul) of an exported ONNX file."""
    import onnx

    found: dict[str, list[str]] = {}
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        if node.op_type in COMPUTE_OPS:
            found.setdefault(layer_of_node(node.name) or node.name, []).append(node.name)
    return found


def quantize_onnx(fp32: str | Path, out: str | Path, *, kind: str = "int8_static", calibration: np.ndarray | None = None,
                  per_channel: bool = True, fmt: str = "qdq", method: str = "minmax", exclude: list[str] = (),
                  input_name: str = "input", batch_size: int = 32) -> QuantizedFile:
    """Write the INT8 version of ``fp32`` to ``out``.

    Args:
        kind: ``int8_static`` (needs ``calibration``) or ``int8_dynamic``.
        calibration: samples ``[N, *input shape]`` (float32) whose activations set the INT8 ranges.
        per_channel: one scale per output channel of each weight (else per tensor).
        fmt: ``qdq`` (QuantizeLinear/DequantizeLinear pairs, fused by ONNX Runtime) or ``qoperator``.
        method: calibration: ``minmax``, ``entropy`` or ``percentile``.
        exclude: layers (module names, as in a recipe) kept in FP32.

    Raises:
        SpecError: an unknown kind/format/method, missing or empty calibration data, calibration samples whose
            shape is not the model's input, or an excluded layer with no operator in the graph (the valid ones named).
        PrunerError: ONNX Runtime could not quantize the file, or the result fails ``onnx.checker``.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from pruner_core.config.options import CALIBRATION_METHODS, QUANT_FORMATS, QUANTIZE_KINDS

    for name, value, valid in (("kind", kind, [k for k in QUANTIZE_KINDS if k != "none"]),
                               ("format", fmt, list(QUANT_FORMATS)), ("method", method, list(CALIBRATION_METHODS))):
        if value not in valid:
            raise SpecError(f"quantize {name} {value!r} is not one of {', '.join(valid)}")
    fp32, out = Path(fp32), Path(out)
    layers = compute_layers(fp32)
    unknown = [layer for layer in exclude if layer not in layers]
    if unknown:
        raise SpecError(f"quantize exclude: {', '.join(repr(u) for u in unknown)} has no Conv/Gemm/MatMul operator in "
                        f"the ONNX graph; layers that do: {', '.join(list(layers)[:20])}")
    if kind == "int8_static":
        _check_calibration(fp32, calibration, input_name)
    nodes = [n for layer in exclude for n in layers[layer]]
    with tempfile.TemporaryDirectory(prefix="quantize-", dir=out.parent) as tmp:
        pre, written = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        try:
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
            if kind == "int8_dynamic":
                quantize_dynamic(str(pre), str(written), per_channel=per_channel, weight_type=QuantType.QInt8,
                                 nodes_to_exclude=nodes)
            else:
                methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                           "percentile": CalibrationMethod.Percentile}
                quantize_static(str(pre), str(written), _Reader(calibration, input_name, batch_size),
                                quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
                                per_channel=per_channel, weight_type=QuantType.QInt8,
                                activation_type=QuantType.QUInt8, calibrate_method=methods[method],
                                nodes_to_exclude=nodes)
            _drop_shape_notes(written)
            onnx.checker.check_model(str(written))
        except SpecError:
            raise
        except Exception as e:  # ONNX Runtime's tool and the checker raise many kinds
            raise PrunerError(f"INT8 quantization failed: {type(e).__name__}: {str(e)[:300]}") from e
        os.replace(written, out)
    ops = Counter(node.op_type for node in onnx.load(str(out)).graph.node)
    return QuantizedFile(out, dict(ops), list(exclude))


def int8_operators(path: str | Path, threads: int = 1) -> dict[str, dict]:
    """Per layer of a quantized file, the operator ONNX Runtime runs after its graph optimisations (QDQ pairs fused):
    ``{layer: {"op": "QLinearConv", "int8": True}}``; a layer left FP32 shows its float operator."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="ort-optimized-") as tmp:
        optimized = Path(tmp) / "optimized.onnx"
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(optimized)
        options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        graph = onnx.load(str(optimized)).graph
    found: dict[str, dict] = {}
    for node in graph.node:
        if node.op_type in COMPUTE_OPS or node.op_type in INT8_OPS or node.op_type.startswith("QLinear"):
            if node.op_type in ("QLinearAdd", "QLinearGlobalAveragePool", "QLinearMul", "QLinearConcat"):
                continue  # element-wise in INT8: not one of the model's layers
            layer = layer_of_node(node.name.split("_quant")[0]) or node.name
            found[layer] = {"op": node.op_type, "int8": node.op_type not in COMPUTE_OPS}
    return found


def _drop_shape_notes(path: Path) -> None:
    """Remove the intermediate shape annotations (``value_info``) the pre-processing's shape inference added: ONNX
    Runtime infers them again at load, and the exported FP32 file carries none, so the two files' sizes compare
    like for like."""
    import onnx

    model = onnx.load(str(path))
    del model.graph.value_info[:]
    onnx.save(model, str(path))


class _Reader:
    """ONNX Runtime's calibration reader over an array, in batches."""

    def __init__(self, x: np.ndarray, input_name: str, batch_size: int) -> None:
        self.batches = iter([{input_name: x[i : i + batch_size]} for i in range(0, len(x), batch_size)])

    def get_next(self):
        return next(self.batches, None)

    def rewind(self) -> None:  # pragma: no cover - entropy/percentile read once here
        pass


def _check_calibration(fp32: Path, calibration, input_name: str) -> None:
    import onnx

    if calibration is None or len(calibration) == 0:
        raise SpecError("static INT8 needs calibration samples: calibration_samples must be at least 1 and the data "
                        "must have training samples (or use kind int8_dynamic)")
    graph = onnx.load(str(fp32), load_external_data=False).graph
    inputs = {i.name: i for i in graph.input}
    if input_name not in inputs:
        raise SpecError(f"the ONNX file has no input named {input_name!r}; it has {', '.join(inputs)}")
    dims = [d.dim_value or None for d in inputs[input_name].type.tensor_type.shape.dim][1:]
    got = list(calibration.shape[1:])
    if len(dims) != len(got) or any(d is not None and d != g for d, g in zip(dims, got, strict=False)):
        raise SpecError(f"calibration samples have shape {got}, but the model's input is {dims} per sample")
    if calibration.dtype != np.float32:
        raise SpecError(f"calibration samples must be float32; got {calibration.dtype}")
