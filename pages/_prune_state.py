"""The Prune page's widget state: a recipe shown in the widgets, the recipe the widgets make, and what happens to
per-layer ratios when the granularity changes. Other pages open a recipe in Prune through :func:`show_in_prune`."""

import streamlit as st

from pruner_core.config.options import SINGLE_STEP_SCHEDULES
from pruner_core.present.sensitivity_figures import unit_curve
from pruner_core.pruning.recipe import Recipe, RecipeError
from pruner_core.sensitivity.predict import Predictor


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
        "prune.seed": recipe.seed, "prune.int8": recipe.quantize.kind != "none",
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
        "finetune": {**ss.get("prune.finetune_rest", {}),  # what a loaded recipe set that no widget shows
                     "epochs": ss["prune.epochs"], "lr": ss["prune.lr"], "optimizer": ss["prune.optimizer"],
                     "distill": ss["prune.distill"], "augment": ss["prune.augment"]},
        "quantize": _quantize(ss.get("prune.quantize_rest", {})) if ss.get("prune.int8") else {"kind": "none"},
        "seed": ss["prune.seed"],
    }


def _quantize(loaded: dict) -> dict:
    """The INT8 section when the toggle is on: a loaded recipe's settings (kind included, if it had one), else the
    defaults (static INT8)."""
    kind = loaded.get("kind") if loaded.get("kind") not in (None, "none") else "int8_static"
    return {**loaded, "kind": kind}


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
    """Make the Prune page show ``recipe``: its widgets and its per-layer table (the table's edits are forgotten); its
    fine-tuning settings without a widget (batch size, checks per epoch, distillation temperature and weight) are
    kept, so the recipe run is the recipe loaded."""
    st.session_state.update(prune_widget_state(recipe))
    shown = {"epochs", "lr", "optimizer", "distill", "augment"}  # the fine-tuning widgets; the rest is kept as it is
    st.session_state["prune.finetune_rest"] = {k: v for k, v in recipe.to_dict()["finetune"].items() if k not in shown}
    st.session_state["prune.quantize_rest"] = recipe.to_dict()["quantize"]
    st.session_state["prune.granularity_was"] = recipe.granularity
    st.session_state["prune.overrides"] = {"layers": dict(recipe.layers), "exclude": recipe.exclude}
    st.session_state.pop("prune.layers", None)


def slider_units(layers: list, granularity: str, current: tuple[dict, list | None]) -> list[tuple[str, list[str]]]:
    """The units a slider sets a ratio for: each layer the granularity applies to and the table prunes, or for
    ``channel`` each coupled group (its ratio sits on its first member, as the recipe reads it): ``(name, members)``."""
    ratios, exclude = current
    excluded = set(exclude) if exclude is not None else {info.name for info in layers if info.is_output}
    open_ = [info for info in layers if info.granularities.get(granularity) is None and info.name not in excluded]
    if granularity != "channel":
        return [(info.name, [info.name]) for info in open_]
    groups: dict[int, list[str]] = {}
    for info in layers:
        groups.setdefault(info.group, []).append(info.name)
    return [(groups[info.group][0], groups[info.group]) for info in open_ if groups[info.group][0] == info.name]


def per_layer_sliders(layers: list, granularity: str) -> None:
    """One slider per unit (:func:`slider_units`), showing its ratio (its own, or the global slider's); moving one
    sets that unit's ratio in the table and the recipe, and the preview follows. Many units scroll in a panel."""
    ss = st.session_state
    current = ss.get("prune.current", ({}, None))
    if granularity == "nm":
        st.caption("N:M keeps N of every M weights in every pruned layer: there is no ratio per layer to set.")
        return
    units = slider_units(layers, granularity, current)
    if not units:
        st.caption(f"No layer the table prunes takes {granularity} pruning.")
        return
    of = "output channels" if granularity == "channel" else "weights"
    scan = matching_scan()
    if scan is not None:
        st.caption(f"Beside each slider: its curve from this session's {granularity} scan on the Sensitivity page "
                   "(accuracy with that unit alone pruned, no fine-tuning); the dotted line is the ratio set now.")
    predictor = Predictor(scan, scan.units) if scan is not None else None
    box = st.container(height=420 if scan is None else 640, border=True) if len(units) > 12 else st.container()
    for name, members in units:
        key = f"prune.slider.{name}"
        ss[key] = float(current[0].get(name, ss["prune.sparsity"]))  # what the table holds now
        label = name if len(members) == 1 else f"{name} (+ {len(members) - 1} coupled: {', '.join(members[1:])})"
        curve = scan.unit(name) if scan is not None and name in predictor.curves else None
        where = box.columns([3, 2], vertical_alignment="center") if curve is not None else [box]
        where[0].slider(f"{label}: fraction of {of} removed", 0.0, 0.99, step=0.01, key=key, on_change=_slider_moved,
                        args=(name,))
        if curve is not None:
            where[1].plotly_chart(unit_curve(curve, scan.dense_accuracy, ss[key], predictor.accuracy_at(name, ss[key])),
                                  key=f"prune.curve.{name}", config={"displayModeBar": False})


def matching_scan():
    """This session's sensitivity scan when it was made for the active model and data with the granularity and
    criterion the Prune widgets show now (so its curves mean what the sliders set); else None."""
    ss = st.session_state
    sens = ss.get("sens.result")
    if sens is None or ss.get("sens.for") != (ss.get("active.model"), ss.get("active.data")):
        return None
    settings = sens.settings
    same = settings.get("granularity") == ss["prune.granularity"] and settings.get("criterion") == ss["prune.criterion"]
    return sens if same else None


def scan_prediction(recipe: Recipe) -> str | None:
    """The accuracy the matching scan's curves predict for ``recipe`` (drops compounded, no fine-tuning), as a
    sentence; None without a matching scan. Only a layerwise recipe has its ratios known before pruning."""
    sens = matching_scan()
    if sens is None:
        return None
    if recipe.scope != "layerwise":
        return "A prediction from the sensitivity scan needs layerwise scope (a global threshold sets the ratios only when it runs)."
    predictor = Predictor(sens, sens.units)
    excluded = set(recipe.exclude) if recipe.exclude is not None else {u.name for u in sens.units if u.is_output}
    ratios = {u.name: recipe.layers.get(u.name, recipe.sparsity) for u in sens.units if u.name not in excluded}
    beyond = [n for n, r in ratios.items() if r > predictor.max_ratio(n) + 1e-9]
    if beyond:
        return (f"No prediction: {', '.join(beyond)} would lose more than the scan measured "
                f"(up to {max(predictor.max_ratio(n) for n in beyond):.0%}).")
    p = predictor.predict(ratios)
    return (f"Predicted from the scan's curves, no fine-tuning: accuracy {p['accuracy']:.1%} "
            f"(dense {sens.dense_accuracy:.1%}, {sens.settings['samples']} test samples); each unit's drop alone, "
            "compounded — an estimate, not a measurement.")


def _slider_moved(name: str) -> None:
    """A per-layer slider moved: its unit's ratio goes into the table's (and so the recipe's) per-layer ratios."""
    ss = st.session_state
    ratios, exclude = ss.get("prune.current", ({}, None))
    ss["prune.overrides"] = {"layers": {**ratios, name: ss[f"prune.slider.{name}"]}, "exclude": exclude}
    ss.pop("prune.layers", None)  # the table is redrawn from the ratios, the slider's among them


def load_uploaded_recipe() -> None:
    """Upload callback: show the uploaded recipe in the widgets, or keep the settings and say what is wrong."""
    upload = st.session_state.get("prune.recipe_upload")
    if upload is None:
        return
    try:
        recipe = Recipe.from_yaml(upload.getvalue().decode("utf-8"), source=upload.name)
    except (UnicodeDecodeError, RecipeError) as e:
        text = str(e) if isinstance(e, RecipeError) else f"{upload.name}: not a text (UTF-8) file; a recipe is YAML"
        st.session_state["prune.outcome"] = ("error", text)
        return
    show_in_prune(recipe)
    st.session_state["prune.outcome"] = ("success", f"Loaded {upload.name}: {recipe.summary()}")
