"""Prune page: the widgets build one recipe; preview what it removes, then run it (prune + fine-tune) as a background
job (:mod:`pruner_core.frontends.jobs`) whose id waits in ``st.session_state["prune.job"]``, so leaving the page and
coming back finds it still running."""

import streamlit as st

from pages._common import (
    activate,
    active_estimate,
    active_layers,
    active_preview,
    get_data,
    get_model,
    init_state,
    model_label,
    show_outcome,
    vital_signs_of,
)
from pages._prune_state import (
    granularity_changed,
    init_prune_state,
    load_uploaded_recipe,
    per_layer_sliders,
    recipe_from_widgets,
    scan_prediction,
)
from pages._prune_tables import PREVIEW_COLUMNS, RESULT_COLUMNS, layers_editor, preview_frame
from pages._runs import runs_root
from pruner_core.config.options import AUGMENTATIONS, OPTIMIZERS, SCHEDULES, SCOPES, SINGLE_STEP_SCHEDULES
from pruner_core.config.text import options_help
from pruner_core.errors import PrunerError
from pruner_core.frontends import jobs
from pruner_core.frontends.tracking import tracked
from pruner_core.measure.preview import comparison_table
from pruner_core.pipeline.run import run_experiment
from pruner_core.present.figures import mask_overlay_heatmap, training_curves
from pruner_core.present.tables import preview_metrics
from pruner_core.pruning.criteria import CRITERIA
from pruner_core.pruning.granularities import GRANULARITIES
from pruner_core.pruning.recipe import Recipe

ss = st.session_state
MASKED_NOTE = "masked weights are still stored and multiplied densely: dense runtimes do not run it faster"


def start_run(recipe: Recipe) -> None:
    choice, data_spec, root = dict(ss["active.model"]), ss["active.data"], runs_root()
    model, data = get_model(choice), get_data(data_spec, choice)
    uri = ss.get("prune.mlflow", "").strip()
    job = jobs.start(recipe.summary(), lambda report, cancel: tracked(run_experiment(
        model, data, recipe, data_spec=data_spec, root=root, callback=report, cancel=cancel), uri))
    ss["prune.job"], ss["prune.job_base"] = job.id, (choice, data_spec)


@st.fragment(run_every=1)
def live_job(job: jobs.Job) -> None:
    """Redrawn every second while the job runs; reruns the whole page once it has ended."""
    if not job.running:
        st.rerun()
    update = job.update
    st.progress(update.fraction if update else 0.0, text=update.message if update else "starting…")
    losses = ss.setdefault(f"prune.losses.{job.id}", [])
    if update and update.progress and (not losses or losses[-1][0] != update.progress.step):
        losses.append((update.progress.step, update.progress.loss))
    st.plotly_chart(training_curves(update.history if update else [], losses), key="prune.live_curves")
    st.button("Cancel", key="prune.cancel", on_click=job.cancel.set, icon=":material/stop:")


def finished_job(job: jobs.Job) -> None:
    if job.state in ("cancelled", "failed"):
        (st.warning if job.state == "cancelled" else st.error)(f"Run {job.state}: {job.error}", icon=":material/error:")
        return
    run = job.result
    ss.setdefault("session.runs", set()).add(str(run.path))  # this session's own: offered first on Compare and Graph
    st.success(f"Saved run `{run.id}` in {run.path}", icon=":material/check:")
    try:
        original = vital_signs_of(*ss["prune.job_base"])
    except PrunerError as e:
        st.error(str(e), icon=":material/error:")
        return
    st.dataframe(comparison_table(original, run.signs, run.has_masks), key="prune.result", hide_index=True,
                 column_config=RESULT_COLUMNS)
    st.caption(f"Measured on this machine: {run.metrics['how']['accuracy']}. Latency: Compare times both models "
               "together, in turn, in one sitting (timings taken minutes apart are not compared).")
    if run.has_masks:
        st.info(f"This run is masked: {MASKED_NOTE}.", icon=":material/info:")
    if run.history:
        st.plotly_chart(training_curves(run.history), key="prune.curves")
    left, right = st.columns(2)
    left.button("Make the pruned model active", key="prune.open",
                on_click=activate, args=({"spec": str(run.path), "weights": None, "trust": False}, ss["prune.job_base"][1]))
    if right.button("Compare with the original (PyTorch and ONNX Runtime)", key="prune.compare",
                    icon=":material/compare_arrows:", disabled=ss["active.model"] != ss["prune.job_base"][0]):
        ss["compare.runs"] = [str(run.path)]
        st.switch_page("pages/compare.py")


init_state()  # also when Streamlit runs this file before app.py's first run (a fresh server)
st.title("Prune")
st.caption(f"Prune {model_label(ss['active.model'])}: choose what goes, preview it, then run pruning + fine-tuning.")
init_prune_state()
show_outcome("model.outcome", "prune.outcome")

try:
    layers = active_layers()
except PrunerError as e:
    st.error(str(e), icon=":material/error:")
    st.stop()

what, how, recover = st.columns(3)
granularity = what.selectbox("Granularity", list(GRANULARITIES), key="prune.granularity", on_change=granularity_changed,
                             help=options_help({g: GRANULARITIES[g].label for g in GRANULARITIES}))
criteria = [c for c in CRITERIA if granularity in CRITERIA[c].granularities]
if ss["prune.criterion"] not in criteria:
    ss["prune.criterion"] = criteria[0]
what.selectbox("Criterion", criteria, key="prune.criterion", help=options_help({c: CRITERIA[c].description for c in criteria}))
what.radio("Scope", list(SCOPES), key="prune.scope", horizontal=True,
           help="; ".join(f"{name}: {text}" for name, text in SCOPES.items()))
of = "output channels" if granularity == "channel" else "weights"
how.slider(f"Sparsity: fraction of {of} removed", 0.0, 0.99, step=0.01, key="prune.sparsity",
           disabled=granularity == "nm", help="Every pruned layer, unless its row in the table below sets a ratio")
if granularity == "nm":
    n_col, m_col = how.columns(2)
    n_col.number_input("N (kept)", min_value=1, step=1, key="prune.nm_n")
    m_col.number_input("of M", min_value=2, step=1, key="prune.nm_m")
if granularity == "channel":
    how.number_input("Round kept channels to a multiple of (0 = off)", min_value=0, step=1, key="prune.round_to")
sched_col, steps_col = how.columns(2)
sched_col.selectbox("Schedule", list(SCHEDULES), key="prune.schedule", help="; ".join(f"{k}: {v}" for k, v in SCHEDULES.items()))
steps_col.number_input("Steps", min_value=1, step=1, key="prune.steps", disabled=ss["prune.schedule"] in SINGLE_STEP_SCHEDULES)
recover.number_input("Fine-tune epochs", min_value=0.0, step=0.05, format="%.2f", key="prune.epochs")
recover.number_input("Learning rate", min_value=1e-6, format="%.5f", step=1e-4, key="prune.lr")
recover.selectbox("Optimizer", list(OPTIMIZERS), key="prune.optimizer", help=options_help(OPTIMIZERS))
recover.selectbox("Augmentation", list(AUGMENTATIONS), key="prune.augment", help=options_help(AUGMENTATIONS))
recover.checkbox("Distil from the original model", key="prune.distill")
recover.number_input("Seed", step=1, key="prune.seed")
recover.text_input("MLflow tracking URI (optional)", key="prune.mlflow", placeholder="sqlite:///mlruns.db",
                   help="Also log the finished run there: recipe as parameters, history as metrics, its files as "
                        "artifacts (the run folder stays the record; pruner prune --mlflow does the same)")
recover.toggle("Then INT8 (ONNX Runtime)", key="prune.int8", help="End the run with its INT8 ONNX, calibrated on 256 "
               "training images and timed beside its FP32 (the recipe's quantize section); Compare shows it")

st.subheader("Layers")
st.caption("ratio: the fraction each layer loses, the slider's unless set here. Unticked layers are left alone.")
try:
    ss["prune.current"] = layers_editor(layers, granularity)  # what the table says, for granularity_changed
    recipe = Recipe.from_dict(recipe_from_widgets(*ss["prune.current"]), source="settings")
    shown = active_preview(recipe)
except PrunerError as e:
    st.error(str(e), icon=":material/error:")
    recipe = shown = None
with st.expander(f"One slider per {'coupled group' if granularity == 'channel' else 'layer'}", expanded=len(layers) <= 12):
    per_layer_sliders(layers, granularity)

left, right = st.columns(2)
right.file_uploader("Upload a recipe", type=["yaml", "yml"], key="prune.recipe_upload", on_change=load_uploaded_recipe)
if recipe is not None:
    left.download_button("Download recipe", recipe.to_yaml(), file_name="recipe.yaml", mime="application/x-yaml",
                         key="prune.download", on_click="ignore", icon=":material/download:")
    left.code(recipe.to_yaml(), language="yaml", wrap_lines=True)

if shown is not None:
    st.subheader("Preview")
    for col, m in zip(st.columns(3), preview_metrics(shown.totals, shown.masked), strict=False):
        col.metric(m["label"], m["value"], m["delta"], delta_color="off", delta_arrow="off", help=m["help"])
    st.dataframe(preview_frame(shown.table), key="prune.preview", hide_index=True, column_config=PREVIEW_COLUMNS)
    st.caption(f"Previewed in {shown.seconds:.2f} s. " + (
        f"Masks keep the dense shapes: {MASKED_NOTE}; non-zero FLOPs count only the kept multiply-adds."
        if shown.masked else "Channels are physically removed from a copy; its FLOPs are measured."))
    if (predicted := scan_prediction(recipe)) is not None:
        st.info(predicted, icon=":material/query_stats:")
    if shown.masks:
        pick = st.selectbox("Layer", list(shown.masks), key="prune.overlay_layer")
        st.plotly_chart(mask_overlay_heatmap(pick, shown.weights[pick], shown.masks[pick]), key="prune.overlay")

st.subheader("Run")
job = jobs.get(ss.get("prune.job"))
busy = job is not None and job.running
if recipe is not None and not busy:
    st.caption(active_estimate(recipe).sentence())
if st.button("Run", key="prune.run", type="primary", disabled=recipe is None or shown is None or busy,
             icon=":material/play_arrow:"):
    start_run(recipe)
    job, busy = jobs.get(ss["prune.job"]), True
if job is not None:
    st.caption(f"Job: {job.label}")
    if busy:
        live_job(job)
    else:
        finished_job(job)
