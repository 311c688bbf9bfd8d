"""The Prune page's tables: the Layers editor (its column settings and the reasons behind its short notes) and the
preview table's columns. Streamlit only; the tables themselves come from :mod:`pruner_core.measure.preview`."""

import streamlit as st

from pruner_core.measure.preview import layer_settings, overrides_from_settings
from pruner_core.present.tables import not_applicable_legend

LAYER_COLUMN = st.column_config.TextColumn(width="medium", pinned=True)  # names stay whole and in view
COUNT = st.column_config.NumberColumn(format="localized")  # 18,496 as the Model page writes it


def layers_editor(layers: list, granularity: str) -> tuple[dict[str, float], list[str] | None]:
    """The Layers table, one row per prunable layer with its ratio and whether it is pruned, drawn from the per-layer
    ratios and exclusions in ``prune.overrides`` with the user's edits on top: the recipe's ``layers`` and
    ``exclude`` it says (:func:`~pruner_core.measure.preview.overrides_from_settings`). Every ratio cell holds the
    ratio the layer gets (no blank "None"): an override is a ratio set on purpose or one that differs from the
    slider's. Below it, each short "not applicable because" note in full, once, with its layers."""
    ss = st.session_state
    m, overrides = ss["prune.nm_m"], ss["prune.overrides"]
    nm = granularity == "nm"
    sparsity = 1 - ss["prune.nm_n"] / m if nm else ss["prune.sparsity"]  # what a layer gets unless set here
    base = layer_settings(layers, granularity, overrides["layers"], overrides["exclude"], m, sparsity)
    explicit = set(overrides["layers"]) | _edited_ratios(base)
    edited = st.data_editor(
        base, key="prune.layers", hide_index=True, num_rows="fixed",
        disabled=["layer", "type", "params", "FLOPs", "note", *(["ratio"] if nm else [])],
        column_config={
            "layer": LAYER_COLUMN,
            "ratio": st.column_config.NumberColumn("ratio", min_value=0.0, max_value=0.99, step=0.01, format="%.2f",
                                                   help=RATIO_HELP),
            "prune": st.column_config.CheckboxColumn("prune"),
            "params": COUNT, "FLOPs": COUNT,
            "note": st.column_config.TextColumn("not applicable because", width="medium",
                                                help="In a few words; each is said in full below the table"),
        },
    )
    if legend := not_applicable_legend(layers, granularity, m):
        st.caption("Not applicable because: " + "; ".join(legend))
    return overrides_from_settings(edited, layers, sparsity, overrides["exclude"], explicit)


RATIO_HELP = ("The fraction this layer loses when ticked: the slider's unless set here. A ratio set here (or by its "
              "slider, or a recipe) goes into the recipe's layers; N:M's is N:M's own. 0 where the granularity does "
              "not apply.")


def _edited_ratios(settings) -> set[str]:
    """The layers whose ratio cell the user has edited in the Layers table (set on purpose, even to the slider's)."""
    state = st.session_state.get("prune.layers")
    rows = state.get("edited_rows", {}) if hasattr(state, "get") else {}
    return {settings["layer"].iloc[int(i)] for i, change in rows.items()
            if "ratio" in change and 0 <= int(i) < len(settings)}


RESULT_COLUMNS = {"change": st.column_config.TextColumn(
    help="N.NN× = the original's figure ÷ the pruned one's (above 1: fewer, smaller), as on Compare; accuracy in "
         "percentage points (pp)")}

PREVIEW_COLUMNS = {
    "layer": LAYER_COLUMN,
    **{c: COUNT for c in ("channels before", "channels after", "params before", "params after", "FLOPs before",
                          "FLOPs after", "FLOPs after (dense)", "non-zero FLOPs")},
    "removed": st.column_config.NumberColumn("removed (of params)", format="%.1f%%",
                                             help="The share of the layer's parameters removed, weights and biases"),
}


def preview_frame(table):
    """The preview table as :data:`PREVIEW_COLUMNS` shows it: ``removed`` in percent, one decimal in every row."""
    return table.assign(removed=table["removed"] * 100)
