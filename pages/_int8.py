"""INT8 on the pages: Compare's control that quantizes a finished run in ONNX Runtime (the table then shows it beside
its FP32), and Sensitivity's per-layer INT8 scan.

The work is :func:`~pruner_core.pipeline.quantize.quantize_run`, the same as ``pruner quantize RUN`` and a recipe's
``quantize`` section: the same settings give the same ``model.int8.onnx``.
"""

from __future__ import annotations

import streamlit as st

from pages._common import active_data, forget_comparisons, get_model
from pages._progress import measured_once
from pruner_core.compare.compare import run_cache_dir
from pruner_core.config.options import CALIBRATION_METHODS
from pruner_core.errors import PrunerError
from pruner_core.io.quantize import compute_layers
from pruner_core.pipeline.quantize import quantize_run
from pruner_core.pipeline.runs import Run
from pruner_core.present.sensitivity_figures import int8_layer_bars
from pruner_core.pruning.recipe import Quantize
from pruner_core.sensitivity.int8 import int8_sensitivity

ss = st.session_state


@st.cache_data(max_entries=32, show_spinner=False)
def onnx_layers(path: str, mtime: float) -> list[str]:
    """The compute layers of an ONNX file, read once per version of it (not on every rerun of the page)."""
    return list(compute_layers(path))


def quantize(run: Run, samples: int, method: str, exclude: list[str]) -> None:
    """Button callback: quantize ``run``; the verdict (or the error) waits in ``compare.int8_outcome``."""
    try:
        with st.spinner(f"Quantizing {run.id} to INT8 and timing it beside its FP32 ONNX…"):
            figures = quantize_run(run, active_data(), Quantize(kind="int8_static", calibration_samples=samples,
                                                                method=method, exclude=exclude))
    except PrunerError as e:
        ss["compare.int8_outcome"] = ("error", str(e))
        return
    ss["compare.int8_outcome"] = ("success", f"`{run.id}`: {figures.verdict()}")
    forget_comparisons()


def int8_controls(runs: list[Run]) -> None:
    """Pick a finished run of the table, calibration images, method and layers kept in FP32; quantize it."""
    done = {r.id: r for r in runs if r.status == "done"}
    st.subheader("INT8")
    with st.container(border=True):
        st.caption("Quantize a run in ONNX Runtime: its INT8 file gets its own row in the table, timed with the rest.")
        if not done:
            st.caption("Pick a finished run above to quantize it.")
            return
        left, middle, right = st.columns(3)
        run = done[left.selectbox("Run", list(done), key="compare.int8_run")]
        samples = middle.number_input("Calibration images", 1, 100_000, 256, key="compare.int8_samples",
                                      help="The first images of the training split (never the test images INT8 is "
                                           "scored on) set the activation ranges")
        method = right.selectbox("Calibration", list(CALIBRATION_METHODS), key="compare.int8_method",
                                 help="; ".join(f"{k}: {v}" for k, v in CALIBRATION_METHODS.items()))
        fp32 = run_cache_dir(run) / "model.onnx"
        layers = onnx_layers(str(fp32), fp32.stat().st_mtime) if fp32.is_file() else []
        exclude = st.multiselect("Keep in FP32", layers, key="compare.int8_exclude",
                                 help="Layers that quantize badly (often the first and the last) stay in FP32")
        st.button("Quantize to INT8", key="compare.int8", icon=":material/bolt:", on_click=quantize,
                  args=(run, int(samples), method, exclude),
                  help="Static INT8 (QDQ, per-channel weights) of this run's ONNX; the table then shows it as "
                       "'+ INT8', timed with every other model")
    outcome = ss.get("compare.int8_outcome")  # outside the expander: a rerun closes it, the verdict stays in sight
    if outcome:
        (st.success if outcome[0] == "success" else st.error)(outcome[1], icon=":material/memory:")


def int8_scan_section() -> None:
    """The Sensitivity page's INT8 question: each layer alone in INT8, accuracy measured (once per model and data)."""
    st.subheader("INT8 per layer")
    st.caption("Each layer alone in INT8 (static, QDQ, per-channel; every other layer FP32), measured in ONNX Runtime "
               "on the first test images; calibrated on training images. The tall bars are the layers to keep in "
               "FP32 when quantizing a run on the Compare page.")
    left, right = st.columns(2)
    samples = left.number_input("Test samples", 1, 100_000, 500, key="sens.int8_samples")
    method = right.selectbox("Calibration", list(CALIBRATION_METHODS), key="sens.int8_method")
    key = (tuple(sorted(ss["active.model"].items())), ss["active.data"], int(samples), method)
    if not st.button("Scan INT8 per layer", key="sens.int8", icon=":material/memory:") and (
            ss.get("sens.int8_for") != key):
        return
    model, data = get_model(ss["active.model"]), active_data()
    try:
        result = measured_once("int8_sensitivity", key, "Quantizing one layer at a time", lambda report: int8_sensitivity(
            model, data, samples=int(samples), method=method,
            callback=lambda done, total, what: report(done / total, f"{what} ({done + 1} of {total})")))
    except PrunerError as e:
        st.error(str(e), icon=":material/error:")
        return
    ss["sens.int8_for"] = key
    st.plotly_chart(int8_layer_bars(result), key="sens.int8_bars")
    st.caption(f"FP32 {result.fp32_accuracy:.2%}, every layer in INT8 {result.int8_accuracy:.2%}; most sensitive "
               f"alone: {', '.join(result.worst())}. {result.calibration_samples} calibration images ({result.method}), "
               f"{result.seconds:.1f} s.")
