"""Sensitivity page: which layers can lose how much (one layer or coupled group at a time), and per-layer ratios that
meet a target, handed to Prune as a recipe. Scans run in the background with an ETA and Cancel; complete scans are
cached on disk per model, data and settings (:func:`~pruner_core.sensitivity.cache.cached_scan`)."""

import streamlit as st

from pages._common import active_data, get_model, init_state, model_label, scan_promise
from pages._prune_state import show_in_prune
from pages._runs import runs_root
from pruner_core.config.text import parse_fractions
from pruner_core.errors import PrunerError
from pruner_core.frontends import jobs
from pruner_core.present.sensitivity_figures import (
    allocation_bars,
    channel_latency,
    sensitivity_curves,
    sensitivity_heatmap,
)
from pruner_core.pruning.criteria import CRITERIA
from pruner_core.pruning.granularities import GRANULARITIES
from pruner_core.sensitivity.allocate import TARGETS, global_baseline, recommend
from pruner_core.sensitivity.cache import cached_scan
from pruner_core.sensitivity.refine import apply_and_measure, refine
from pruner_core.sensitivity.scan import DEFAULT_RATIOS, check_ratios

ss = st.session_state
SCAN_GRANULARITIES = [g for g in GRANULARITIES if g != "nm"]  # N:M has no ratio to vary
TARGET_LABELS = {"sparsity": "Parameter sparsity", "flops": "FLOP reduction", "drop": "Maximum accuracy drop"}


def start_scan(settings: dict) -> None:
    model, data = get_model(ss["active.model"]), active_data()
    folder = runs_root() / ".cache" / "sensitivity"
    job = jobs.start(f"sensitivity {settings['granularity']} {settings['criterion']}", lambda report, cancel: cached_scan(
        model, data, cache_dir=folder, callback=report, cancel=cancel, **settings))
    ss["sens.job"], ss["sens.for"] = job.id, (dict(ss["active.model"]), ss["active.data"])
    ss.pop("sens.result", None)  # the curves shown are always this scan's, or none if it fails


@st.fragment(run_every=1)
def live_scan(job: jobs.Job) -> None:
    """Redrawn every second while the scan runs; reruns the page once it has ended."""
    if not job.running:
        st.rerun()
    p = job.update
    if p is None:
        st.progress(0.0, text="measuring the dense accuracy…")
    else:
        eta = f", about {p.eta_s:.0f} s left" if p.eta_s is not None else ""
        st.progress(p.fraction, text=f"{p.done} of {p.total} evaluations: {p.current} at {p.ratio:.0%}{eta}")
    st.button("Cancel", key="sens.cancel", on_click=job.cancel.set, icon=":material/stop:")


def show_scan(sens) -> None:
    st.subheader("Curves")
    if not sens.complete:
        st.warning("The scan was cancelled: the curves below are partial (the layers and ratios it reached). "
                   "Run it to the end to get a recommendation.", icon=":material/cancel:")
    metric = st.radio("Measure", ["accuracy", "loss"], key="sens.metric", horizontal=True)
    st.plotly_chart(sensitivity_curves(sens, metric), key="sens.curves")
    st.plotly_chart(sensitivity_heatmap(sens), key="sens.heatmap")
    latency = channel_latency(sens)
    if latency is not None:
        st.plotly_chart(latency, key="sens.latency")
        st.caption(next(u.latency["how"] for u in sens.units if u.latency))
    st.caption(f"{sens.how}. Scanned in {sens.seconds:.1f} s. Least sensitive first: "
               + ", ".join(sens.least_sensitive()))


def show_recommendation(sens) -> None:
    st.subheader("Recommendation")
    left, right = st.columns([1, 2])
    target = left.radio("Target", list(TARGETS), key="sens.target", format_func=TARGET_LABELS.get,
                        help="\n\n".join(f"**{TARGET_LABELS[k]}**: {v}" for k, v in TARGETS.items()))
    if target == "drop":
        value = left.slider("Accuracy drop allowed (percentage points)", 0.0, 20.0, 1.0, 0.1, key="sens.drop") / 100
    else:
        value = left.slider(f"{TARGET_LABELS[target]} (fraction removed)", 0.05, 0.95, 0.7, 0.01, key=f"sens.{target}")
    try:
        rec = recommend(sens, target, value)
    except PrunerError as e:
        left.error(str(e), icon=":material/error:")
        return
    key = (ss.get("sens.job"), target, value)  # one scan (of one model and data set), one target
    if global_baseline(sens, target, value) is not None and left.button(
            "Refine by measurement", key="sens.refine", icon=":material/science:",
            help="Prune with the curves' allocation, the one-global-threshold one and blends of the two, measure each "
                 "on training images (not the test images reported) and keep the most accurate"):
        with st.spinner("Pruning and measuring five candidate allocations…"):
            ss["sens.refined"] = (key, refine(get_model(ss["active.model"]), active_data(), sens, rec))
    refined = ss.get("sens.refined")
    refined = refined[1] if refined is not None and refined[0] == key else None
    if refined is not None:
        rec = refined.recommendation
        left.dataframe([{"candidate": c["name"] + (" (chosen)" if c["name"] == refined.chosen else ""),
                         "accuracy": c["accuracy"]} for c in refined.candidates], key="sens.candidates",
                       hide_index=True, column_config={"accuracy": st.column_config.NumberColumn(format="percent")})
        left.caption(f"Chosen by accuracy on {refined.selection}, every candidate at the same target.")
    p, u = rec.predicted, rec.uniform["predicted"]
    cols = right.columns(3)
    masked = sens.settings["granularity"] != "channel"
    flops_label = "Non-zero FLOP reduction" if masked else "FLOP reduction"
    for col, (key, label) in zip(cols, (("param_sparsity", "Parameter sparsity"), ("flop_reduction", flops_label),
                                        ("accuracy", "Predicted accuracy")), strict=True):
        shown = "n/a" if p[key] is None else f"{p[key]:.1%}"
        uniform = "n/a" if u[key] is None else f"uniform {u[key]:.1%}"
        col.metric(label, shown, uniform, delta_color="off", delta_arrow="off")
    right.caption(("Masked weights still cost their multiply-adds in dense runtimes: non-zero FLOPs count only what a "
                   "sparse kernel would compute. " if masked else "")
                  + "Predicted from the curves, without fine-tuning: each layer keeps its share (1 - its drop / dense) "
                  f"of what the others leave, so it stays between 0 and dense. The uniform allocation prunes every layer by {rec.uniform['ratio']:.1%} for the same "
                  "target.")
    st.plotly_chart(allocation_bars(rec), key="sens.allocation")
    if st.button("Check: apply the three allocations without fine-tuning and measure", key="sens.check",
                 icon=":material/science:"):
        model, data = get_model(ss["active.model"]), active_data()
        with st.spinner("Pruning a copy per allocation (recommended, uniform, one global threshold) and measuring it…"):
            recipes = {"recommended": rec.recipe, "uniform": rec.uniform["recipe"],
                       "one global threshold": global_baseline(sens, target, value)}
            measured = {name: apply_and_measure(model, data, recipe, samples=sens.settings["samples"])
                        for name, recipe in recipes.items() if recipe is not None}
        st.dataframe([{"allocation": k, "accuracy": m.accuracy, "parameter sparsity": m.param_sparsity,
                       flops_label: m.flop_reduction, "samples": m.samples} for k, m in measured.items()],
                     key="sens.measured", hide_index=True, column_config={
                         c: st.column_config.NumberColumn(format="percent")
                         for c in ("accuracy", "parameter sparsity", flops_label)})
        st.caption("Measured on the scan's test samples. The curves are measured one layer at a time: in deep "
                   "networks the damage of several pruned layers compounds beyond their sum, so check the "
                   "recommendation against the uniform and the one-global-threshold allocations before using it.")
    with st.expander("Recommended recipe"):
        st.code(rec.recipe.to_yaml(), language="yaml")
    left, right = st.columns(2)
    left.download_button("Download recipe", rec.recipe.to_yaml(), file_name="recommended.yaml",
                         mime="application/x-yaml", key="sens.download", on_click="ignore", icon=":material/download:")
    if right.button("Open in Prune", key="sens.open", type="primary", icon=":material/content_cut:"):
        show_in_prune(rec.recipe)
        st.switch_page("pages/prune.py")


init_state()  # also when Streamlit runs this file before app.py's first run (a fresh server)
st.title("Sensitivity")
st.caption(f"Which layers of {model_label(ss['active.model'])} can lose how much? Each layer (or coupled group) is "
           "pruned alone at each ratio, without fine-tuning, and measured on test images.")
ss.setdefault("sens.granularity", "unstructured")
ss.setdefault("sens.ratios", ", ".join(f"{r:g}" for r in DEFAULT_RATIOS))

try:
    data = active_data()
    get_model(ss["active.model"])  # a model that fails to load is said here, once
except PrunerError as e:
    st.error(str(e), icon=":material/error:")
    st.stop()

left, mid, right = st.columns(3)
granularity = left.selectbox("Granularity", SCAN_GRANULARITIES, key="sens.granularity",
                             format_func=lambda g: f"{g} — {GRANULARITIES[g].label}")
criteria = [c for c in CRITERIA if granularity in CRITERIA[c].granularities]
if ss.get("sens.criterion") not in criteria:
    ss["sens.criterion"] = criteria[0]
left.selectbox("Criterion", criteria, key="sens.criterion", format_func=lambda c: f"{c} — {CRITERIA[c].description}")
mid.text_input("Ratios", key="sens.ratios", help="Fractions removed, comma-separated, each in [0, 1)")
right.number_input("Test samples", min_value=1, max_value=len(data.y_test), value=min(1000, len(data.y_test)),
                   step=100, key="sens.samples", help="The first test images: the evaluation subset")
right.number_input("Time budget (seconds, 0 = none)", min_value=0, value=0, step=10, key="sens.seconds",
                   help="Fewer test samples (not fewer than 100) when the scan would take longer, as estimated from "
                        "one dense evaluation; the samples used are stated with the curves")

job = jobs.get(ss.get("sens.job"))
busy = job is not None and job.running
if st.button("Run scan", key="sens.run", type="primary", disabled=busy, icon=":material/play_arrow:"):
    try:
        ratios = check_ratios(parse_fractions(ss["sens.ratios"], "ratios"))
    except PrunerError as e:
        st.error(str(e), icon=":material/error:")
    else:
        start_scan({"granularity": granularity, "criterion": ss["sens.criterion"], "ratios": ratios,
                    "samples": int(ss["sens.samples"]), "seconds": float(ss["sens.seconds"]) or None})
        job, busy = jobs.get(ss["sens.job"]), True

if busy:
    live_scan(job)
elif job is not None:
    if job.state == "failed":
        st.error(f"Scan failed: {job.error}", icon=":material/error:")
    elif job.result is not None:
        ss["sens.result"] = job.result
result = ss.get("sens.result")
if result is not None and not busy:
    if ss.get("sens.for") != (ss["active.model"], ss["active.data"]):
        st.info("The last scan was of another model or data set; run the scan for these.", icon=":material/info:")
    else:
        show_scan(result)
        if result.complete:
            show_recommendation(result)
elif not busy:
    st.info("Choose what to scan and press Run scan. " + scan_promise(granularity, ss["sens.ratios"], int(ss["sens.samples"])),
            icon=":material/info:")
