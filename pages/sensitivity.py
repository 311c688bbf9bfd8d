"""Sensitivity page: which layers can lose how much (one layer or coupled group at a time), and per-layer ratios that
meet a target, handed to Prune as a recipe. Scans run in the background with an ETA and Cancel; complete scans are
cached on disk per model, data and settings (:func:`~pruner_core.sensitivity.cache.cached_scan`)."""

import streamlit as st

from pages._common import active_data, get_model, init_state, model_label, scan_promise
from pages._int8 import int8_scan_section
from pages._recommend import show_recommendation
from pages._runs import runs_root
from pruner_core.config.text import options_help, parse_fractions
from pruner_core.errors import PrunerError
from pruner_core.frontends import jobs
from pruner_core.present.sensitivity_figures import channel_latency, sensitivity_curves, sensitivity_heatmap
from pruner_core.pruning.criteria import CRITERIA
from pruner_core.pruning.granularities import GRANULARITIES
from pruner_core.sensitivity.cache import cached_scan
from pruner_core.sensitivity.scan import DEFAULT_RATIOS, check_ratios

ss = st.session_state
SCAN_GRANULARITIES = [g for g in GRANULARITIES if g != "nm"]  # N:M has no ratio to vary


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
                             help=options_help({g: GRANULARITIES[g].label for g in SCAN_GRANULARITIES}))
criteria = [c for c in CRITERIA if granularity in CRITERIA[c].granularities]
if ss.get("sens.criterion") not in criteria:
    ss["sens.criterion"] = criteria[0]
left.selectbox("Criterion", criteria, key="sens.criterion", help=options_help({c: CRITERIA[c].description for c in criteria}))
mid.text_input("Ratios", key="sens.ratios", help="Fractions removed, comma-separated, each in [0, 1)")
right.number_input("Test samples", min_value=1, max_value=len(data.y_test), value=max(1, min(1000, len(data.y_test) // 2)),
                   step=100, key="sens.samples", help="The first test images: the evaluation subset (at most half of "
                   "them by default: the search's figure is measured on them, and the rest are kept to check on)")
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
int8_scan_section()
