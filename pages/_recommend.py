"""The Sensitivity page's recommendation: per-unit ratios for a target, from the curves at once, then decided by
measurement (:func:`~pruner_core.sensitivity.measured.measured_search`), checked beside the baselines on test images
the search never saw, and handed to Prune."""

import streamlit as st

from pages._common import active_data, get_model
from pages._progress import with_progress
from pages._prune_state import show_in_prune
from pruner_core.errors import PrunerError
from pruner_core.present.sensitivity_figures import allocation_bars
from pruner_core.sensitivity.allocate import TARGETS, global_baseline, recommend
from pruner_core.sensitivity.measured import KEYS, held_out, measured_search
from pruner_core.sensitivity.refine import apply_and_measure

ss = st.session_state
TARGET_LABELS = {"sparsity": "Parameter sparsity", "flops": "FLOP reduction", "drop": "Maximum accuracy drop"}


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
    if target in KEYS and left.button(
            "Search by measurement", key="sens.search", type="primary", icon=":material/science:",
            help="Prune the one-global-threshold allocation, the curves' and blends of the two, then move pruning from "
                 "unit to unit while it measurably helps: every step measured on the whole pruned network (training "
                 "images), the result on held-out test images"):
        model, data = get_model(ss["active.model"]), active_data()
        ss["sens.searched"] = (key, with_progress("Searching by measurement", lambda report: measured_search(
            model, data, sens, rec, samples=sens.settings["samples"],
            callback=lambda done, total, what: report(done / total, f"{what} ({done} of at most {total})"))))
    searched = ss.get("sens.searched")
    searched = searched[1] if searched is not None and searched[0] == key else None
    if searched is not None:
        rec = searched.recommendation
        left.dataframe([{"candidate": c["name"] + (" (start)" if c["name"] == searched.start else ""),
                         "accuracy": c["accuracy"]} for c in searched.candidates], key="sens.candidates",
                       hide_index=True, column_config={"accuracy": st.column_config.NumberColumn(format="percent")})
        kept = sum(m["kept"] for m in searched.moves)
        left.caption(f"{searched.evaluations} evaluations in {searched.seconds:.0f} s: started from "
                     f"'{searched.start}', {kept} of {len(searched.moves)} moves kept (each measurably better). "
                     f"{searched.search[:1].upper() + searched.search[1:]}.")
    show_outcome(rec, right, sens, searched is not None)
    st.plotly_chart(allocation_bars(rec), key="sens.allocation")
    if st.button("Check: apply the allocations without fine-tuning and measure them", key="sens.check",
                 icon=":material/science:"):
        check(sens, rec, target, value, searched is not None)
    with st.expander("Recommended recipe"):
        st.code(rec.recipe.to_yaml(), language="yaml", wrap_lines=True)
    left, right = st.columns(2)
    left.download_button("Download recipe", rec.recipe.to_yaml(), file_name="recommended.yaml",
                         mime="application/x-yaml", key="sens.download", on_click="ignore", icon=":material/download:")
    if right.button("Open in Prune", key="sens.open", type="primary", icon=":material/content_cut:"):
        show_in_prune(rec.recipe)
        st.switch_page("pages/prune.py")


def show_outcome(rec, where, sens, measured: bool) -> None:
    p, u = rec.predicted, rec.uniform["predicted"]
    masked = sens.settings["granularity"] != "channel"
    flops_label = "Non-zero FLOP reduction" if masked else "FLOP reduction"
    accuracy_label = "Measured accuracy" if measured else "Predicted accuracy"
    for col, (key, label) in zip(where.columns(3), (("param_sparsity", "Parameter sparsity"), ("flop_reduction", flops_label),
                                                    ("accuracy", accuracy_label)), strict=True):
        shown = "n/a" if p[key] is None else f"{p[key]:.1%}"
        uniform = "n/a" if u[key] is None else f"uniform {u[key]:.1%} (curves)"
        col.metric(label, shown, uniform, delta_color="off", delta_arrow="off")
    where.caption(("Masked weights still cost their multiply-adds in dense runtimes: non-zero FLOPs count only what a "
                   "sparse kernel would compute. " if masked else "")
                  + (f"The accuracy is measured, without fine-tuning, on the first {p['measured_on']:,} test images "
                     "(held out from the search; the rest are kept for the check). " if measured else
                     "Predicted from the curves, without fine-tuning: each layer keeps its share (1 - its drop / dense) "
                     "of what the others leave, so it stays between 0 and dense; search by measurement to replace it "
                     "with a measured figure. ")
                  + f"The uniform allocation prunes every layer by {rec.uniform['ratio']:.1%} for the same target.")


def check(sens, rec, target, value, measured: bool) -> None:
    model, data = get_model(ss["active.model"]), active_data()
    _, report = held_out(data, sens.settings["samples"])
    recipes = {"searched" if measured else "recommended (curves)": rec.recipe, "uniform": rec.uniform["recipe"],
               "one global threshold": global_baseline(sens, target, value)}
    recipes = {k: r for k, r in recipes.items() if r is not None}

    def measure_all(progress) -> dict:
        results = {}
        for i, (name, recipe) in enumerate(recipes.items()):
            progress(i / len(recipes), name)
            results[name] = apply_and_measure(model, report, recipe)
        return results

    results = with_progress("Pruning a copy per allocation and measuring it", measure_all)
    flops_label = "Non-zero FLOP reduction" if sens.settings["granularity"] != "channel" else "FLOP reduction"
    st.dataframe([{"allocation": k, "accuracy": m.accuracy, "parameter sparsity": m.param_sparsity,
                   flops_label: m.flop_reduction, "samples": m.samples} for k, m in results.items()],
                 key="sens.measured", hide_index=True, column_config={
                     c: st.column_config.NumberColumn(format="percent") for c in ("accuracy", "parameter sparsity",
                                                                                  flops_label)})
    st.caption(f"Measured on the last {len(report.y_test):,} test images, which neither the scan's first images nor "
               "the search's training images include. The curves are measured one layer at a time: in deep networks "
               "the damage of several pruned layers compounds beyond their sum, which the measured search takes into "
               "account and the curves alone do not.")
