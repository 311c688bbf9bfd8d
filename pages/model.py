"""Model page: pick a demo or your own model and data, then read its measured vital signs."""

import streamlit as st

from pages._common import activate, active_vital_signs, exposure, get_model, init_state, save_upload, show_outcome
from pages._data import picked_preprocess, preprocess_picker
from pruner_core.config.text import format_bytes, options_help
from pruner_core.errors import PrunerError
from pruner_core.graph.layers import parameter_coverage
from pruner_core.io.archs import ARCHITECTURES
from pruner_core.io.preprocess import join_spec
from pruner_core.present.tables import (
    coupled_groups_table,
    coverage_sentence,
    layer_table,
    prunability_legend,
    prunability_table,
)

WHOLE_MODEL = "(whole model file: TorchScript, .pt2, or pickled)"
SOURCES = ["Demo model", "Upload a file", "Path on this machine"]
DATA_SOURCES = ["Demo MNIST-5k", "Upload a file", "Path on this machine"]
LAYER_COLUMN = st.column_config.TextColumn(width="medium", pinned=True)  # names stay in view as the table scrolls

init_state()  # also when Streamlit runs this file before app.py's first run (a fresh server)
st.title("Model")
st.caption("Pick a model and data, then read its vital signs. Every figure below is measured on this machine.")
EXPOSURE = exposure()
OFFERED, DATA_OFFERED = (SOURCES, DATA_SOURCES) if EXPOSURE.paths_allowed else (SOURCES[:2], DATA_SOURCES[:2])
PATH_HELP = f"A path under {EXPOSURE.path_root}, the folder this shared app serves" if EXPOSURE.shared else (
    "A file or run folder on this machine")
FACTORY_HELP = (f"Factory specs (package.module:function) only from {', '.join(EXPOSURE.factories)}"
                if EXPOSURE.factories else "Factory specs (package.module:function) are off: start the app with "
                "make run FACTORIES=pkg.module to allow one")


def server_path(key: str) -> str | None:
    """The path typed into ``key``, checked against what this server may read (raises PrunerError)."""
    text = (st.session_state.get(key) or "").strip()
    return EXPOSURE.resolve_path(text) if text else None


def picked() -> tuple[dict, str | None]:
    """The model and data the pickers name now (read from their state, so a click sees the latest values).

    Raises:
        PrunerError: an upload too large, or a path this server may not read.
    """
    ss = st.session_state
    source, spec, weights = ss.get("model.source", SOURCES[0]), None, None
    if source == SOURCES[0]:
        spec = f"demo:{ss.get('model.demo') or 'mnist-cnn'}"
    else:
        upload = ss.get("model.upload")
        path = (save_upload(upload) if upload else None) if source == SOURCES[1] else server_path("model.path")
        arch = ss.get("model.arch", WHOLE_MODEL)
        spec, weights = (path or None, None) if arch == WHOLE_MODEL else (f"demo:{arch}" if path else None, path or None)
    data_source = ss.get("model.data_source", DATA_SOURCES[0])
    if data_source == DATA_SOURCES[0]:
        data = "demo:mnist5k"
    elif data_source == DATA_SOURCES[1]:
        data = save_upload(ss["model.data_upload"]) if ss.get("model.data_upload") else None
    else:
        data = server_path("model.data_path")
    trust = bool(ss.get("model.trust")) and source != SOURCES[0]
    return {"spec": spec, "weights": weights, "trust": trust}, join_spec(data, picked_preprocess(ss["active.data"])) if data else None


def load_picked() -> None:
    """The Load button: activate what the pickers name, or say why not."""
    try:
        choice, data = picked()
    except PrunerError as e:
        st.session_state["model.outcome"] = ("error", str(e))
        return
    activate(choice, data)


with st.expander("Choose model and data", expanded=True):
    if EXPOSURE.shared:
        st.caption(
            f"This app is shared (listening on {EXPOSURE.address or 'every interface'}): "
            + (f"paths are read only under {EXPOSURE.path_root}" if EXPOSURE.path_root else "paths on the server are off")
            + f"; uploads up to {EXPOSURE.upload_mb} MB."
        )
    left, right = st.columns(2)
    with left:
        source = st.radio("Model source", OFFERED, key="model.source", horizontal=True)
        if source == SOURCES[0]:
            active = st.session_state["active.model"]["spec"].removeprefix("demo:")
            st.selectbox(
                "Demo model", list(ARCHITECTURES), key="model.demo",
                index=list(ARCHITECTURES).index(active) if active in ARCHITECTURES else 0,
                help=options_help({n: a.description for n, a in ARCHITECTURES.items()}),
            )
        else:
            if source == SOURCES[1]:
                st.file_uploader(
                    "Model file", type=["pt", "pth", "pt2", "ts", "safetensors"], key="model.upload",
                    help="TorchScript, torch.export (.pt2), a state_dict (pick its architecture) or a pickled module; "
                    f"up to {EXPOSURE.upload_mb} MB",
                )
            else:
                st.text_input("Model file path", key="model.path", placeholder="/path/to/model.pt",
                              help=f"{PATH_HELP}. {FACTORY_HELP}.")
            st.selectbox("Architecture of a state_dict", [WHOLE_MODEL, *ARCHITECTURES], key="model.arch")
        trust = st.checkbox(
            "I trust this file: allow unpickling a whole model", key="model.trust", disabled=source == SOURCES[0],
            help="Unpickling runs code stored in the file. Leave off for files from others; state_dicts, "
            "TorchScript and .pt2 load safely without it.",
        )
        if trust:
            st.warning("Unpickling executes code from the file. Only do this for files you made or fully trust.")
    with right:
        data_source = st.radio("Data source", DATA_OFFERED, key="model.data_source", horizontal=True)
        if data_source == DATA_SOURCES[1]:
            st.file_uploader(
                "Data file", type=["npz", "zip"], key="model.data_upload",
                help=".npz with x, y (and optionally x_test, y_test), or a .zip with one sub-folder per class; "
                f"up to {EXPOSURE.upload_mb} MB",
            )
        elif data_source == DATA_SOURCES[2]:
            st.text_input("Data file or folder path", key="model.data_path", placeholder="/path/to/images/",
                          help=f"{PATH_HELP}: a .npz, a .zip of an image folder, or an image folder itself (one "
                          "sub-folder per class, optionally under train/ and test/ or val/), read as it streams")
        preprocess_picker(st.session_state["active.data"])
    st.button("Load", key="model.load", type="primary", on_click=load_picked)
    show_outcome()

signs = active_vital_signs()
if signs:
    model = get_model(st.session_state["active.model"])
    st.subheader(signs.model)
    top, bottom = st.columns(4), st.columns(4)
    top[0].metric("Parameters", f"{signs.params:,}", help="All parameter tensors, BatchNorm included")
    top[1].metric(
        "Non-zero", f"{signs.nonzero_params:,}", f"sparsity {signs.sparsity:.1%}", delta_color="off",
        delta_arrow="off",
    )
    top[2].metric("FLOPs / sample", f"{signs.flops / 1e6:,.2f} M", help=signs.how["flops"])
    top[3].metric("Size (dense)", format_bytes(signs.size_bytes, 3), help=signs.how["size_bytes"])
    bottom[0].metric("Test accuracy", f"{signs.accuracy:.2%}", help=signs.how["accuracy"])
    lat = signs.latency
    for col, key in zip(bottom[1:3], ("batch1", "batch64"), strict=False):
        m = lat[key]
        col.metric(
            f"Latency batch {m.batch}", f"{m.median_ms:.2f} ms", f"IQR {m.p25_ms:.2f}–{m.p75_ms:.2f} ms",
            delta_color="off", delta_arrow="off", help=m.label,
        )
    b1, b64 = lat["batch1"], lat["batch64"]
    st.caption(
        f"Measured: latency {b1.runtime} on {b1.device}, {b1.threads} thread(s), median and inter-quartile range of "
        f"{b1.runs} (batch 1) / {b64.runs} (batch 64) runs after {b1.warmup} warm-up; "
        f"{signs.how['accuracy']}; {signs.how['flops']}."
    )
    if not model.eager:
        st.info(
            f"This is a {model.fmt} program: it can be masked (unstructured, N:M, vector, kernel) but its channels "
            "cannot be physically removed. See the Prunability tab.", icon=":material/info:",
        )
    view = "|".join(str(v) for v in st.session_state["active.model"].values())  # a model's tables get their own widths
    layers_tab, prunability_tab, groups_tab, card_tab = st.tabs(["Layers", "Prunability", "Coupled groups", "Model card"])
    with layers_tab:
        st.dataframe(
            layer_table(signs.layers, signs.flops), key=f"model.layers.{view}", hide_index=True,
            column_config={
                "layer": LAYER_COLUMN,
                "parameters": st.column_config.NumberColumn(format="localized"),
                "FLOPs": st.column_config.NumberColumn(format="localized"),
                "FLOPs share": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1),
            },
        )
    with prunability_tab:
        st.caption(coverage_sentence(*parameter_coverage(model.module)) + " Which granularities apply to each "
                   "layer, and why not where they do not:")
        st.dataframe(prunability_table(signs.layers), key=f"model.prunability.{view}", hide_index=True,  # widths per model
                     column_config={"layer": LAYER_COLUMN})
        if legend := prunability_legend(signs.layers):
            st.caption("Each label in full, with the granularities and layers it applies to:")
            st.markdown("\n".join(f"- {line}" for line in legend))
    with groups_tab:
        groups = coupled_groups_table(signs.layers)
        if groups.empty:
            st.write("No coupled layers: every layer's output channels can be pruned on their own.")
        else:
            st.caption("Output channels of these layers are tied (residual additions): channel pruning removes them together.")
            st.dataframe(groups, key="model.groups", hide_index=True)
    with card_tab:
        if model.card:
            st.json(model.card)
        else:
            st.write("No model card: this model was not trained by `pruner train-demo`.")
