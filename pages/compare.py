"""Compare page: the original and saved runs side by side, every figure measured here, and the hand-off downloads.

Each model is measured once per data set (accuracy, sizes, PyTorch and ONNX Runtime latency) and cached in its
run folder (:mod:`pruner_core.compare.compare`), so a second visit only reads the figures back.
"""

from pathlib import Path

import streamlit as st

from pages._common import (
    active_comparison,
    active_data,
    active_fingerprint,
    data_label,
    file_bytes,
    forget_comparisons,
    get_model,
    init_state,
    model_label,
    other_label,
    runs_for_this_session,
)
from pages._int8 import int8_controls
from pages._runs import runs_root, saved_runs
from pruner_core.compare.compare import forget, original_cache_dir, run_cache_dir
from pruner_core.errors import PrunerError
from pruner_core.pipeline.quantize import INT8_FILE
from pruner_core.present.compare_table import (
    COLUMN_GROUPS,
    comparison_table,
    display_table,
    headlines,
    measurement_notes,
    table_notes,
)
from pruner_core.present.figures import (
    COMPARE_COSTS,
    finetune_overlay,
    pareto_plot,
    per_class_change,
    sparsity_comparison,
)
from pruner_core.present.report import html_report

ss = st.session_state
DEFAULT_RUNS = 3
LATENCY_COSTS = {"PyTorch eager": "latency", "ONNX Runtime": "latency_ort"}
SIZE_COSTS = {"dense file": "size", "gzip": "size_gzip", "sparse encoding": "size_sparse"}
DEFAULT_GROUPS = ["accuracy", "latency ONNX Runtime", "FLOPs / params"]  # fits 1440 px; sizes on request
TIMES = "(N.NN×) = the original's ÷ this one's: above 1 is cheaper"
TABLE_COLUMNS = {
    "model": st.column_config.TextColumn(pinned=True, help="The run's id; the lines above say what each pruned"),
    **{c: st.column_config.TextColumn(help=f"Median ±half the inter-quartile range; {TIMES}; ≈1×: within the two "
                                           "timings' spreads") for g in COLUMN_GROUPS if g.startswith("latency")
       for c in COLUMN_GROUPS[g]},
    **{c: st.column_config.TextColumn(help=TIMES) for c in (*COLUMN_GROUPS["sizes"], "FLOPs")},
}


def remeasure(entries, runs) -> None:
    """Button callback: forget the cached figures of every model shown, so they are measured again, together."""
    for run in runs:
        forget(run_cache_dir(run))
        forget(run_cache_dir(run) / "int8")
    forget(original_cache_dir(get_model(ss["active.model"]), runs_root(), fingerprint=active_fingerprint()))
    forget_comparisons()


def downloads(entries, runs_by_id, classes) -> None:
    """The hand-off: a run's recipe, weights and ONNX, and the report of the whole comparison."""
    st.subheader("Export")
    done = [e.key for e in entries[1:] if e.figures]
    left, right = st.columns(2)
    title, measured_on = f"Pruning report: {model_label(ss['active.model'])}", data_label(ss["active.data"])
    right.download_button(  # built on click, outside the script run: the callable reads no session state
        "Report (HTML, opens offline)", key="compare.report", on_click="ignore", icon=":material/description:",
        data=lambda: html_report(entries, title=title, classes=classes, data_label=measured_on),
        file_name="pruning-report.html", mime="text/html",
        help="The table, the plots, each run's recipe and how every figure was measured, in one file",
    )
    if not done:
        left.caption("No measured run to export yet.")
        return
    key = left.selectbox("Run to export", done, key="compare.export_run")
    run = runs_by_id[key]
    cols = left.columns(3)
    cols[0].download_button("Recipe", run.recipe.to_yaml(), file_name="recipe.yaml", mime="application/x-yaml",
                            key="compare.recipe", on_click="ignore", icon=":material/download:",
                            help=f"Reproduces this run: pruner prune {run.base['spec']} --recipe recipe.yaml --out DIR")
    # bytes, not a callable read on click: Streamlit drops a deferred download when the page reruns (a click then
    # spun forever, "Deferred file not found"); file_bytes reads each file once per version
    cols[1].download_button("Weights", file_bytes(run.path / "weights.safetensors"), key="compare.weights", on_click="ignore",
                            file_name=f"{run.id}.safetensors", mime="application/octet-stream", icon=":material/download:")
    onnx = run_cache_dir(run) / "model.onnx"
    if onnx.is_file():
        cols[2].download_button("ONNX", file_bytes(onnx), file_name=f"{run.id}.onnx", key="compare.onnx", on_click="ignore",
                                mime="application/octet-stream", icon=":material/download:")
    if (run.path / INT8_FILE).is_file():
        left.download_button("INT8 ONNX", file_bytes(run.path / INT8_FILE), file_name=f"{run.id}.int8.onnx",
                             key="compare.int8_onnx", on_click="ignore", mime="application/octet-stream",
                             icon=":material/download:")


init_state()  # also when Streamlit runs this file before app.py's first run (a fresh server)
st.title("Compare")
st.caption(
    f"{model_label(ss['active.model'])} (the original) against saved runs, measured on {data_label(ss['active.data'])} "
    "on this machine. Deltas are against the original."
)

all_runs = saved_runs()
mine, others = runs_for_this_session(all_runs)
show_others = st.toggle(f"Also offer runs of other models or data ({len(others)})", key="compare.others",
                        disabled=not others)
offered = mine + (others if show_others else [])
runs_by_path = {str(r.path): r for r in offered}
if "compare.runs" not in ss:
    ss["compare.runs"] = [str(r.path) for r in mine if r.status == "done"][:DEFAULT_RUNS]
ss["compare.runs"] = [p for p in ss["compare.runs"] if p in runs_by_path]  # a folder may have gone, or is hidden
picked = st.multiselect(
    "Runs", list(runs_by_path), key="compare.runs",
    format_func=lambda p: (runs_by_path[p].label if runs_by_path[p] in mine else other_label(runs_by_path[p]))
    + ("" if runs_by_path[p].status == "done" else f" ({runs_by_path[p].status})"),
    help=f"Saved under {runs_root()}: this session's and the active model's runs; only finished (done) runs can be "
         "measured",
)
if not all_runs:
    st.info("No saved runs yet: run one on the Prune page, then compare it here.", icon=":material/info:")
elif not mine:
    st.info(f"No runs of this model and data yet ({len(others)} of other models or data: offer them with the toggle "
            "above); run one on the Prune page.", icon=":material/info:")
runs = [runs_by_path[p] for p in picked]

try:
    entries = active_comparison(runs)
    classes = active_data().classes
except PrunerError as e:
    st.error(str(e), icon=":material/error:")
    st.stop()

for e in entries:
    for warning in e.warnings:
        st.warning(f"`{e.key}`: {warning}. Shown anyway, marked in the notes.", icon=":material/warning:")
    if e.error:
        st.error(f"`{e.key}` cannot be compared: {e.error}", icon=":material/broken_image:")

table = comparison_table(entries)
for line in headlines(table):
    st.markdown(f"**{line}**")
groups = st.multiselect("Columns", list(COLUMN_GROUPS), default=DEFAULT_GROUPS, key="compare.groups",
                        help="Which figures the table shows (the model and its kind always); the default fits a laptop")
st.dataframe(display_table(table, groups), key="compare.table", hide_index=True, column_config=TABLE_COLUMNS)
for line in table_notes(table):
    st.caption(line)
if any(e.masked for e in entries):
    st.info("Masked runs keep every weight, zeros included: dense runtimes (PyTorch, ONNX Runtime) multiply the zeros"
            " too and do not run them faster. Their latency is measured and shown anyway; the gzip and sparse sizes "
            "show what the zeros save on disk.", icon=":material/info:")
with st.expander("How these figures were measured"):
    st.markdown("\n".join(f"- {line}" for line in measurement_notes(entries)))
    st.caption("Measured in " + ", ".join(f"{e.key} {e.seconds:.1f} s" for e in entries)
               + " (a model read back from its cache takes well under a second).")
st.button("Measure again", key="compare.remeasure", on_click=remeasure, args=(entries, runs), icon=":material/refresh:",
          help="Forget the cached figures of the models shown and measure them again, one after another")
int8_controls(runs)

st.subheader("Trade-offs")
left, right = st.columns(2)
latency = left.radio("Latency", list(LATENCY_COSTS), key="compare.latency", horizontal=True)
left.plotly_chart(pareto_plot(table, LATENCY_COSTS[latency]), key="compare.pareto_latency")
size = right.radio("Size", list(SIZE_COSTS), key="compare.size", horizontal=True)
right.plotly_chart(pareto_plot(table, SIZE_COSTS[size]), key="compare.pareto_size")
st.caption(f"Pareto front (dotted): no other model is both cheaper and more accurate. Costs: "
           f"{COMPARE_COSTS[LATENCY_COSTS[latency]][1]}; {COMPARE_COSTS[SIZE_COSTS[size]][1]}.")
if len(entries) > 1:
    left, right = st.columns(2)
    left.plotly_chart(sparsity_comparison(entries), key="compare.sparsity")
    right.plotly_chart(per_class_change(entries, classes), key="compare.per_class")
    if any(e.history for e in entries):
        st.plotly_chart(finetune_overlay(entries), key="compare.curves")

downloads(entries, {r.id: r for r in runs}, classes)
st.caption(f"Runs are read from {Path(runs_root()).resolve()}; their measurements are cached in each run's "
           "compare/ folder.")
