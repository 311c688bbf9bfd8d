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
    ``exclude`` it says (:func:`~pruner_core.measure.preview.overrides_from_settings`). Below it, each short "not
    applicable because" note in full, once, with its layers."""
    ss = st.session_state
    m = ss["prune.nm_m"]
    base = layer_settings(layers, granularity, ss["prune.overrides"]["layers"], ss["prune.overrides"]["exclude"], m)
    edited = st.data_editor(
        base, key="prune.layers", hide_index=True, num_rows="fixed", disabled=["layer", "type", "params", "FLOPs", "note"],
        column_config={
            "layer": LAYER_COLUMN,
            "ratio": st.column_config.NumberColumn("ratio", min_value=0.0, max_value=0.99, step=0.01),
            "prune": st.column_config.CheckboxColumn("prune"),
            "params": COUNT, "FLOPs": COUNT,
            "note": st.column_config.TextColumn("not applicable because", width="medium",
                                                help="In a few words; each is said in full below the table"),
        },
    )
    if legend := not_applicable_legend(layers, granularity, m):
        st.caption("Not applicable because: " + "; ".join(legend))
    return overrides_from_settings(edited, layers)


RESULT_COLUMNS = {"change": st.column_config.TextColumn(
    help="N.NN× = the original's figure ÷ the pruned one's (above 1: fewer, smaller), as on Compare; accuracy in "
         "percentage points (pp)")}
