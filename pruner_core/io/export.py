"""Export a (pruned) model for deployment and measure what it costs on disk and in ONNX Runtime.

- :func:`export_onnx`: ONNX (opset >= 17, dynamic batch) that passes ``onnx.checker``.
- :func:`onnx_max_diff`: ONNX Runtime's outputs against PyTorch's on the same inputs.
- :func:`size_figures`: the dense weight file, that file gzip-compressed, and a sparse encoding
  (a bitmask of the non-zeros plus their values), each in bytes of what is actually written or encoded.
- :func:`onnx_latency`: ONNX Runtime latency, labelled like :func:`~pruner_core.measure.metrics.measure_latency`.
"""

from __future__ import annotations

import gzip
import os
import threading
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pruner_core.errors import PrunerError
from pruner_core.io.data import Samples, batches
from pruner_core.io.inputs import example_input

OPSET = 17


def export_onnx(module: nn.Module, input_shape: tuple[int, ...], path: str | Path, *, opset: int = OPSET) -> Path:
    """Write ``module`` as ONNX with a dynamic batch dimension and check it with ``onnx.checker``.

    Uses the TorchScript-based exporter (the torch.export-based one needs onnxscript, which this project does
    not depend on). The module is exported in eval mode and left in the mode it had.

    Raises:
        PrunerError: the module cannot be exported or the result fails the checker (the reason is named).
    """
    import onnx

    path = Path(path)
    was_training = module.training
    module.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                module, (example_input(module, input_shape),), str(path), opset_version=opset, dynamo=False,
                input_names=["input"], output_names=["output"],
                dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            )
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:  # the exporter and the checker raise many kinds
        raise PrunerError(f"ONNX export failed: {type(e).__name__}: {e}") from e
    finally:
        module.train(was_training)
    return path


def session(path: str | Path, threads: int | None = None, *, spinning: bool = True):
    """An ONNX Runtime CPU session for ``path`` with ``threads`` intra-op threads (default: PyTorch's count).

    ``spinning=False`` makes its worker threads sleep between calls instead of spinning, so that several
    sessions timed in turn do not slow each other down.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_max_diff(path: str | Path, module: nn.Module, x: Samples, batch_size: int = 256) -> float:
    """Largest absolute difference between ONNX Runtime's and PyTorch's outputs over ``x`` (streamed in batches)."""
    sess = session(path)
    worst = 0.0
    module.eval()
    with torch.no_grad():
        for xb, _ in batches(x, torch.zeros(len(x), dtype=torch.long), batch_size):
            ours = sess.run(None, {"input": xb.numpy()})[0]
            worst = max(worst, float(np.abs(ours - module(xb).numpy()).max()))
    return worst


def onnx_accuracy(path: str | Path, x: Samples, y: torch.Tensor, batch_size: int = 256) -> float:
    """Top-1 accuracy of an ONNX file (input ``input``) in ONNX Runtime on samples ``x`` (streamed in batches, as
    :func:`~pruner_core.io.data.batches` gives them) against labels ``y``."""
    if not len(y):
        return float("nan")
    sess = session(path)
    correct = sum(int((sess.run(None, {"input": xb.float().numpy()})[0].argmax(1) == yb.numpy()).sum())
                  for xb, yb in batches(x, y, batch_size))
    return correct / len(y)


def sparse_bytes(tensors: dict[str, torch.Tensor]) -> int:
    """Bytes of a bitmask + values encoding: one bit per element, then the non-zero values at their own width."""
    total = 0
    for t in tensors.values():
        total += (t.numel() + 7) // 8 + int(torch.count_nonzero(t)) * t.element_size()
    return total


def size_figures(module: nn.Module, folder: str | Path) -> dict:
    """Write the weights as dense safetensors (and gzip of it) in ``folder``; return each size with how.

    Returns:
        ``dense_bytes`` (the safetensors file), ``gzip_bytes`` (that file gzip-compressed, level 9),
        ``sparse_bytes`` (bitmask + non-zero values, computed from the tensors, not written) and ``how``.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    dense = folder / "weights.safetensors"
    save_file(tensors, str(dense))
    packed = folder / "weights.safetensors.gz"
    packed.write_bytes(gzip.compress(dense.read_bytes(), compresslevel=9, mtime=0))
    return {
        "dense_bytes": dense.stat().st_size,
        "gzip_bytes": packed.stat().st_size,
        "sparse_bytes": sparse_bytes(tensors),
        "how": {
            "dense_bytes": "bytes of the weights written as dense safetensors",
            "gzip_bytes": "bytes of that file compressed with gzip (level 9)",
            "sparse_bytes": "a bitmask of the non-zeros (1 bit per weight) plus the non-zero values",
        },
    }


def ort_runtime() -> str:
    """How ONNX Runtime latencies are labelled: version and execution provider."""
    import onnxruntime as ort

    return f"ONNX Runtime {ort.__version__} CPU"


def ensure_onnx(module: nn.Module, input_shape: tuple[int, ...], folder: str | Path) -> Path:
    """``folder/model.onnx`` for ``module``, exported (and checked) once; later calls return the file as it is.

    The file is written under a temporary name and moved into place, so a reader never sees half of it.
    The caller owns ``folder`` and must give each distinct model its own (a run's cache folder, or one per
    base-model fingerprint): the file is not re-checked against ``module``.
    """
    folder = Path(folder)
    path = folder / "model.onnx"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".model.{os.getpid()}.{threading.get_ident()}.onnx"
    try:
        export_onnx(module, input_shape, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
