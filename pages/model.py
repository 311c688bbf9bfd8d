"""Model page: pick a demo or your own model and data, then read its measured vital signs."""

import streamlit as st

from pages._common import activate, active_vital_signs, get_model, save_upload
from pruner_core.archs import ARCHITECTURES
from pruner_core.tables import coupled_groups_table, layer_table, prunability_table

WHOLE_MODEL = "(whole model file: TorchScript, .pt2, or pickled)"
SOURCES = ["Demo model", "Upload a file", "Path on this machine"]

st.title("Model")
st.caption("Pick a model and data, then read its vital signs. Every figure below is measured on this machine.")

with st.expander("Choose model and data", expanded=True):
    left, right = st.columns(2)
    with left:
        source = st.radio("Model source", SOURCES, key="model.source", horizontal=True)
        weights_path = path = None
        if source == "Demo model":
            demo = st.selectbox(
                "Demo model", list(ARCHITECTURES), key="model.demo",
                format_func=lambda n: f"{n} — {ARCHITECTURES[n].description}",
            )
            spec = f"demo:{demo}"
        else:
            if source == "Upload a file":
                upload = st.file_uploader(
                    "Model file", type=["pt", "pth", "pt2", "ts", "safetensors"], key="model.upload",
                    help="TorchScript, torch.export (.pt2), a state_dict (pick its architecture) or a pickled module",
                )
                path = save_upload(upload) if upload else None
            else:
                path = st.text_input("Model file path", key="model.path", placeholder="/path/to/model.pt").strip() or None
            arch = st.selectbox("Architecture of a state_dict", [WHOLE_MODEL, *ARCHITECTURES], key="model.arch")
            spec, weights_path = (path, None) if arch == WHOLE_MODEL else (f"demo:{arch}", path)
        trust = st.checkbox(
            "I trust this file: allow unpickling a whole model", key="model.trust", disabled=source == "Demo model",
            help="Unpickling runs code stored in the file. Leave off for files from others; state_dicts, "
            "TorchScript and .pt2 load safely without it.",
        )
        if trust:
            st.warning("Unpickling executes code from the file. Only do this for files you made or fully trust.")
    with right:
        data_source = st.radio("Data source", ["Demo MNIST-5k", "Upload a file", "Path on this machine"], key="model.data_source", horizontal=True)
        data_spec = "demo:mnist5k"
        if data_source == "Upload a file":
            data_upload = st.file_uploader(
                "Data file", type=["npz", "zip"], key="model.data_upload",
                help=".npz with x, y (and optionally x_test, y_test), or a .zip with one sub-folder per class",
            )
            data_spec = save_upload(data_upload) if data_upload else None
        elif data_source == "Path on this machine":
            data_spec = st.text_input("Data file path", key="model.data_path", placeholder="/path/to/data.npz").strip() or None
    if st.button("Load", key="model.load", type="primary"):
        if source != "Demo model" and not path:
            st.error("Choose a model file first.", icon=":material/error:")
        elif not data_spec:
            st.error("Choose a data file first.", icon=":material/error:")
        elif activate({"spec": spec, "weights": weights_path, "trust": trust}, data_spec):
            st.success("Loaded.", icon=":material/check:")

signs = active_vital_signs()
if signs:
    model = get_model(st.session_state["active.model"])
    st.subheader(signs["model"])
    cols = st.columns(6)
    cols[0].metric("Parameters", f"{signs['params']:,}", help=f"{signs['nonzero_params']:,} non-zero")
    cols[1].metric("Non-zero", f"{signs['nonzero_params']:,}", f"sparsity {signs['sparsity']:.1%}", delta_color="off")
    cols[2].metric("FLOPs / sample", f"{signs['flops'] / 1e6:,.2f} M", help=signs["how"]["flops"])
    cols[3].metric("Size (dense)", f"{signs['size_bytes'] / 1e6:,.3f} MB", help=signs["how"]["size_bytes"])
    cols[4].metric("Test accuracy", f"{signs['accuracy']:.2%}", help=signs["how"]["accuracy"])
    lat = signs["latency"]
    cols[5].metric(
        "Latency batch 1 / 64", f"{lat['batch1']['median_ms']:.2f} / {lat['batch64']['median_ms']:.1f} ms",
        help=f"{lat['batch1']['label']}; {lat['batch64']['label']}",
    )
    st.caption(
        f"Measured: latency {lat['batch1']['runtime']} on {lat['batch1']['device']}, {lat['batch1']['threads']} thread(s), "
        f"median (IQR {lat['batch1']['p25_ms']:.2f}–{lat['batch1']['p75_ms']:.2f} ms at batch 1) of "
        f"{lat['batch1']['runs']} / {lat['batch64']['runs']} runs after {lat['batch1']['warmup']} warm-up; "
        f"{signs['how']['accuracy']}; {signs['how']['flops']}."
    )
    if not model.eager:
        st.info(
            f"This is a {model.fmt} program: it can be masked (unstructured, N:M, vector, kernel) but its channels "
            "cannot be physically removed. See the Prunability tab.", icon=":material/info:",
        )
    layers_tab, prunability_tab, groups_tab, card_tab = st.tabs(["Layers", "Prunability", "Coupled groups", "Model card"])
    with layers_tab:
        st.dataframe(
            layer_table(signs), key="model.layers", hide_index=True,
            column_config={"FLOPs share": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1)},
        )
    with prunability_tab:
        st.caption("Which granularities apply to each layer, and why not where they do not.")
        st.dataframe(prunability_table(signs), key="model.prunability", hide_index=True)
    with groups_tab:
        groups = coupled_groups_table(signs)
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
