"""Inspect page: where the active network is redundant, layer by layer and channel by channel.

Three independent signals side by side (weight magnitude, APoZ, BatchNorm scale). The statistics are computed
once per model, data and sample count (cached); norm, colour scale and layer only redraw the figures.
"""

import streamlit as st

from pages._common import active_analysis, active_data, init_state, model_label
from pruner_core.errors import PrunerError
from pruner_core.present.figures import (
    CHANNEL_SIGNALS,
    HEAD_SIGNALS,
    channel_signal_heatmap,
    head_heatmap,
    kernel_heatmap,
    layer_signal_table,
    weight_histogram,
)
from pruner_core.present.tables import shared_groups

COLORSCALES = ["Viridis", "Cividis", "Plasma", "Inferno", "Magma", "Blues", "Greys", "RdBu"]
NORMS = {"L2": "l2", "L1": "l1"}
DEFAULT_SAMPLES = 256

init_state()  # also when Streamlit runs this file before app.py's first run (a fresh server)
st.title("Inspect")
st.caption(
    "Where does the network carry little? Low weight magnitude, high APoZ (average percentage of zeros after the "
    "activation) and small BatchNorm scale |γ| each point at channels that pruning could remove."
)

try:
    train_size = len(active_data().x_train)
except PrunerError as e:
    st.error(str(e), icon=":material/error:")
    st.stop()

if st.session_state.get("inspect.samples", 0) > train_size:  # another data set became active
    del st.session_state["inspect.samples"]

controls = st.columns(3)
samples = controls[0].number_input(
    "Calibration samples", min_value=1, max_value=train_size, value=min(DEFAULT_SAMPLES, train_size), step=64,
    key="inspect.samples", help="First training samples run through the model to measure APoZ and mean activation",
)
norm_label = controls[1].radio("Norm", list(NORMS), key="inspect.norm", horizontal=True,
                               help="Norm of a kernel (heatmap) and of a channel's weights (magnitude signal)")
colorscale = controls[2].selectbox("Colour scale", COLORSCALES, key="inspect.colorscale")
norm = NORMS[norm_label]

try:
    analysis = active_analysis(samples)
except (PrunerError, ValueError) as e:
    st.error(str(e), icon=":material/error:")
    st.stop()

if not analysis.layers:
    st.warning(f"{model_label(st.session_state['active.model'])} has no prunable layers (Conv1d, Conv2d, Linear).")
    st.stop()

st.caption(
    f"{model_label(st.session_state['active.model'])}: {len(analysis.layers)} prunable layers, APoZ over "
    f"{analysis.samples} calibration samples; analysed in {analysis.seconds:.2f} s."
)
for note in analysis.notes:
    st.info(note, icon=":material/info:")

names = [la.name for la in analysis.layers]
if st.session_state.get("inspect.layer") not in names:  # a new model: its layers have other names
    st.session_state.pop("inspect.layer", None)
    st.session_state.pop("inspect.group", None)

st.subheader("One layer")
name = st.selectbox("Layer", names, key="inspect.layer")
la = analysis.layer(name)
left, right = st.columns([3, 2])
left.plotly_chart(kernel_heatmap(la, norm=norm, colorscale=colorscale), key="inspect.kernel")
right.plotly_chart(weight_histogram(la), key="inspect.histogram")
right.caption(f"After {la.activation}: {la.statistic}." if la.statistic else f"APoZ {la.activation or 'n/a'}.")

st.subheader("Across layers")
st.caption("Each row is one layer's output channels, divided by that layer's largest value; hover for raw values.")
signals = [s for s in CHANNEL_SIGNALS if s != "near_zero" or any(la.near_zero for la in analysis.layers)]
for signal in signals:
    fig = channel_signal_heatmap(analysis, signal, norm=norm, colorscale=colorscale)
    st.plotly_chart(fig, key=f"inspect.signal.{signal}")

if analysis.heads:
    st.subheader("Attention heads")
    st.caption(
        "One row per attention module, one column per head. Magnitude is the norm of the head's query, key and value "
        "rows with the output projection's columns that read it; channel pruning removes heads whole where the "
        "module's forward allows it (the Model page's Prunability tab says which). Mean |output| is the head's output averaged over the "
        "calibration samples."
    )
    for signal in HEAD_SIGNALS:
        st.plotly_chart(head_heatmap(analysis, signal, norm=norm, colorscale=colorscale), key=f"inspect.heads.{signal}")

groups = analysis.groups()
st.subheader("Coupled groups")
if not groups:
    st.caption("No coupled layers: every layer's output channels can be pruned on their own.")
else:
    st.caption(
        "Layers whose outputs are added together (residual connections) must lose the same output channels: "
        "channel pruning scores each channel over the whole group. Rows are the members; columns the shared channels."
    )
    number = shared_groups(analysis.layers)  # the numbers the Layers table below and the Model page show
    labels = {f"group {number[g]}: {', '.join(members)}": g for g, members in groups.items()}
    picked = st.selectbox("Group", list(labels), key="inspect.group")
    members = groups[labels[picked]]
    for signal in signals:
        fig = channel_signal_heatmap(
            analysis, signal, norm=norm, colorscale=colorscale, layers=members, heading=f"in group {labels[picked]}"
        )
        st.plotly_chart(fig, key=f"inspect.group.{signal}")

st.subheader("Layers")
if analysis.forward_ms is not None:
    st.caption(
        f"Time share: the fraction of the calibration forward ({analysis.forward_ms:,.0f} ms over {analysis.samples} "
        "samples, this machine, PyTorch eager) spent inside each layer. FLOPs at batch 1 (a multiply-add counts as 2)."
    )
st.dataframe(
    layer_signal_table(analysis), key="inspect.table", hide_index=True,
    column_config={
        "params": st.column_config.NumberColumn(format="localized"),
        "FLOPs": st.column_config.NumberColumn(format="compact"),
        "time share": st.column_config.NumberColumn(format="percent"),
        "sparsity": st.column_config.NumberColumn(format="percent"),
    },
)
