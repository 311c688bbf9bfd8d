"""Graph: Netron drawing the original model's ONNX beside a pruned run's, each served on 127.0.0.1."""

import uuid
from pathlib import Path

import streamlit as st

from pages._common import (
    active_fingerprint,
    active_original_onnx,
    init_state,
    model_label,
    other_label,
    runs_for_this_session,
)
from pages._runs import saved_runs
from pruner_core.compare import compare
from pruner_core.errors import PrunerError
from pruner_core.frontends import netron_server as netron_view
from pruner_core.pipeline.quantize import INT8_FILE
from pruner_core.pipeline.runs import Run

VIEW_HEIGHT = 640

init_state()
st.title("Graph")
# Each browser session claims the servers it shows, and gives up those it no longer shows (see release below).
owner = st.session_state.setdefault("graph.owner", uuid.uuid4().hex)


def original_onnx() -> Path | None:
    """The active model's ONNX file (exported once per weights fingerprint), or None after showing the error."""
    try:
        return active_original_onnx()
    except PrunerError as e:
        label = model_label(st.session_state["active.model"])
        st.error(f"The original model {label} cannot be shown: {e}", icon=":material/error:")
        return None


def run_onnx(run: Run) -> Path | None:
    """A done run's ONNX file (exported once, into the run's compare folder), or None after showing the error."""
    try:
        with st.spinner(f"Exporting run {run.id} to ONNX…"):
            return compare.run_onnx(run)
    except PrunerError as e:
        st.error(f"Run {run.id} cannot be shown: {e}", icon=":material/error:")
        return None


def show(title: str, what: str, path: Path | None, *, reference: netron_view.OnnxFile | None = None) -> netron_view.OnnxFile | None:
    """A Netron view of ``path`` under ``title``, captioned with ``what`` it is and the file's name, size and opset.

    Returns the file's figures, or None if it cannot be shown (the error is shown instead).
    """
    st.subheader(title, anchor=False)
    if path is None:
        return None
    try:
        info = netron_view.onnx_file(path)
        server = netron_view.serve(path, owner=owner)
    except PrunerError as e:
        st.error(str(e), icon=":material/error:")
        return None
    relative = f", {info.bytes / reference.bytes:.0%} of the original's" if reference and reference.bytes else ""
    st.caption(f"{what} · {info.caption}{relative}", help=str(path))
    st.iframe(server.url, height=VIEW_HEIGHT)
    st.link_button("Open in a new tab", server.url, icon=":material/open_in_new:")
    return info


runs = saved_runs()
mine, others = runs_for_this_session(runs)
done = [r for r in mine + others if r.status == "done"]  # this session's and the active model's first
skipped = [r for r in runs if r.status in ("damaged", "failed")]
original_path = original_onnx()

if not done:
    st.info(
        "No finished runs yet: run one on the Prune page to see its graph beside the original's.",
        icon=":material/info:",
    )
    original = show("Original", model_label(st.session_state["active.model"]), original_path)
    shown = [original_path]
else:
    by_id = {r.id: r for r in done}
    run_id = st.selectbox(
        "Pruned run", list(by_id), key="graph.run",
        format_func=lambda i: by_id[i].label if by_id[i] in mine else other_label(by_id[i]),
        help="Finished runs under the runs folder: this session's and the active model's first, newest first",
    )
    run = by_id[run_id]
    try:
        fingerprint = active_fingerprint()
    except PrunerError:
        fingerprint = None  # original_onnx has already said why
    if fingerprint and run.base.get("fingerprint") not in (None, fingerprint):
        st.warning(
            f"Run {run.id} was made from {Path(run.base['spec']).name}, not from the active model: the two graphs"
            " are of different models.",
            icon=":material/warning:",
        )
    int8 = run.path / INT8_FILE
    as_int8 = int8.is_file() and st.toggle("Its INT8 file (model.int8.onnx)", key="graph.int8",
                                           help="The run quantized on the Compare page or by pruner quantize: "
                                                "QuantizeLinear/DequantizeLinear around each layer")
    run_path = int8 if as_int8 else run_onnx(run)
    left, right = st.columns(2)
    with left:
        original = show("Original", model_label(st.session_state["active.model"]), original_path)
    with right:
        show("Pruned + INT8" if as_int8 else "Pruned", f"run {run.id}" + (" + INT8" if as_int8 else ""), run_path,
             reference=original)
    shown = [original_path, run_path]

if skipped:
    st.caption("Not shown (no model to draw): " + "; ".join(f"`{r.id}` {r.status}: {r.error}" for r in skipped))
served = [netron_view.server_of(p) for p in shown if p is not None]
netron_view.release(owner, keep=[p for p in shown if p is not None])
if any(served):
    ports = ", ".join(f"127.0.0.1:{s.port}" for s in served if s)
    st.caption(
        f"Netron serves each file from this machine on {ports}, with its web app from the installed netron package:"
        " the views need no internet, and open only in a browser on the machine running this app."
    )
