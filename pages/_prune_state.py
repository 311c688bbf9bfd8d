"""The Prune page's widget state: a recipe shown in the widgets, the recipe the widgets make, and what happens to
per-layer ratios when the granularity changes. Other pages open a recipe in Prune through :func:`show_in_prune`."""

import streamlit as st

from pruner_core.config.options import SINGLE_STEP_SCHEDULES
from pruner_core.pruning.recipe import Recipe


def init_prune_state() -> None:
    """The Prune page's widgets start from the default recipe (each key once per session)."""
    st.session_state.setdefault("prune.overrides", {"layers": {}, "exclude": None})
    for key, value in prune_widget_state(Recipe()).items():
        st.session_state.setdefault(key, value)


def prune_widget_state(recipe: Recipe) -> dict:
    """The widget values that show ``recipe`` (the Prune page's keys)."""
    ft = recipe.finetune
    return {
        "prune.granularity": recipe.granularity, "prune.criterion": recipe.criterion, "prune.scope": recipe.scope,
        "prune.sparsity": recipe.sparsity, "prune.nm_n": recipe.nm.n, "prune.nm_m": recipe.nm.m,
        "prune.round_to": recipe.round_to or 0, "prune.schedule": recipe.schedule.kind, "prune.steps": recipe.schedule.steps,
        "prune.epochs": float(ft.epochs), "prune.lr": ft.lr, "prune.optimizer": ft.optimizer, "prune.distill": ft.distill,
        "prune.augment": ft.augment,
        "prune.seed": recipe.seed,
    }


def recipe_from_widgets(layers: dict, exclude: list | None) -> dict:
    """The recipe the Prune page's widgets show now (the inverse of :func:`prune_widget_state`), as plain data."""
    ss = st.session_state
    single = ss["prune.schedule"] in SINGLE_STEP_SCHEDULES
    return {
        "granularity": ss["prune.granularity"], "criterion": ss["prune.criterion"], "scope": ss["prune.scope"],
        "sparsity": ss["prune.sparsity"], "layers": layers, "exclude": exclude,
        "nm": {"n": ss["prune.nm_n"], "m": ss["prune.nm_m"]}, "round_to": ss["prune.round_to"] or None,
        "schedule": {"kind": ss["prune.schedule"], "steps": 1 if single else ss["prune.steps"]},
        "finetune": {"epochs": ss["prune.epochs"], "lr": ss["prune.lr"], "optimizer": ss["prune.optimizer"],
                     "distill": ss["prune.distill"], "augment": ss["prune.augment"]},
        "seed": ss["prune.seed"],
    }


def granularity_changed() -> None:
    """Granularity callback: a per-layer ratio is a fraction of weights (or groups of them), of output channels for
    ``channel``, and N:M has none. Switching across that line clears the per-layer ratios, and says so; the
    layers left out stay left out."""
    ss = st.session_state
    before, after = ss.get("prune.granularity_was", "unstructured"), ss["prune.granularity"]
    ss["prune.granularity_was"] = after
    ratios, exclude = ss.get("prune.current", ({}, None))
    meaning = {g: "output channels" if g == "channel" else ("none" if g == "nm" else "weights") for g in (before, after)}
    if ratios and meaning[before] != meaning[after]:
        ss["prune.overrides"] = {"layers": {}, "exclude": exclude}
        ss.pop("prune.layers", None)  # the table's edits held the old ratios
        ss["prune.outcome"] = ("warning", f"Cleared {len(ratios)} per-layer ratio(s) ({', '.join(ratios)}): they were "
                               f"fractions of {meaning[before]} under {before}, which {after} does not mean; every "
                               "pruned layer now takes the slider's value.")


def show_in_prune(recipe: Recipe) -> None:
    """Make the Prune page show ``recipe``: its widgets and its per-layer table (the table's edits are forgotten)."""
    st.session_state.update(prune_widget_state(recipe))
    st.session_state["prune.granularity_was"] = recipe.granularity
    st.session_state["prune.overrides"] = {"layers": dict(recipe.layers), "exclude": recipe.exclude}
    st.session_state.pop("prune.layers", None)
