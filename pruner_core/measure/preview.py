"""What a recipe would remove, before running it: per-layer and total parameters and FLOPs, and the masks.

Pure functions of (model, data, recipe); the model is never modified. Mask granularities are previewed with
:func:`~pruner_core.pruning.select.compute_masks` (the weights stay stored and the dense FLOPs stay the same, so the
table also gives the FLOPs a sparse kernel would run: the non-zero multiply-adds). ``channel`` is previewed
by planning and physically removing the channels on a deep copy, whose FLOPs are then measured.

Also the tables of the Prune page that are plain data: the per-layer settings a user edits
(:func:`layer_settings`, read back with :func:`overrides_from_settings`) and the original-vs-pruned
comparison of a finished run (:func:`comparison_table`).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from pruner_core.config.text import byte_unit, format_bytes, format_times
from pruner_core.graph.flops import layer_flops
from pruner_core.graph.layers import layer_lookup
from pruner_core.io.data import Dataset
from pruner_core.io.fit import check_data_fits
from pruner_core.io.inputs import example_input
from pruner_core.io.models import LoadedModel
from pruner_core.measure.metrics import VitalSigns, count_parameters
from pruner_core.pruning.channels import plan_channels, prune_channels
from pruner_core.pruning.describe import LayerInfo, describe_model
from pruner_core.pruning.granularities import GRANULARITIES, Reason, short_reason
from pruner_core.pruning.recipe import Recipe
from pruner_core.pruning.select import compute_masks

SETTINGS_COLUMNS = ["layer", "type", "params", "FLOPs", "ratio", "prune", "note"]
MASK_COLUMNS = ["layer", "type", "pruned", "params before", "params after", "removed", "FLOPs before",
                "FLOPs after (dense)", "non-zero FLOPs"]
CHANNEL_COLUMNS = ["layer", "type", "pruned", "channels before", "channels after", "params before", "params after",
                   "removed", "FLOPs before", "FLOPs after"]


@dataclass
class Preview:
    """A recipe's effect on one model, computed without running it.

    ``table`` has one row per prunable layer (:data:`MASK_COLUMNS` for mask granularities, measured
    :data:`CHANNEL_COLUMNS` for ``channel``). ``totals`` holds ``params_before``, ``params_after``,
    ``flops_before`` and ``flops_after`` for the whole model (``flops_after`` is the dense count, equal to
    ``flops_before`` for masks), plus ``nonzero_flops_after`` for masks. ``weights`` and ``masks`` (bool keep,
    shaped like the weight) are given for every pruned layer, for :func:`~pruner_core.present.figures.mask_overlay_heatmap`.
    """

    granularity: str
    masked: bool
    table: pd.DataFrame
    totals: dict[str, int]
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0


def why_not(info: LayerInfo, granularity: str, m: int) -> Reason | None:
    """Why ``granularity`` does not apply to the layer, with its short label (None where it does); for ``nm`` the
    recipe's own M decides."""
    if granularity == "nm" and len(info.shape) >= 2:
        return GRANULARITIES["nm"].why_not(info.facts(), (1, m))
    return info.reason(granularity)


def _excluded(layers: list[LayerInfo], exclude: list[str] | None) -> set[str]:
    """The layers a recipe's ``exclude`` leaves alone (None: the default, the layers whose outputs are the model's)."""
    return {info.name for info in layers if info.is_output} if exclude is None else set(exclude)


def layer_settings(
    layers: list[LayerInfo], granularity: str, overrides: dict[str, float] | None = None,
    exclude: list[str] | None = None, m: int = 4, sparsity: float = 0.0,
) -> pd.DataFrame:
    """The per-layer settings table (:data:`SETTINGS_COLUMNS`) for a recipe's ``layers`` and ``exclude``.

    ``ratio`` is the fraction the layer loses when it is pruned: its override, else ``sparsity`` (the global slider's,
    or N:M's share), so no cell is blank; ``prune`` is False for excluded layers (by default, ``exclude`` None, the
    layers whose outputs are the model's outputs). A layer the granularity does not apply to does not look prunable:
    ratio 0, unticked, and ``note`` says in a few words why (empty where it applies; :func:`why_not` says it in full).
    Read it back with :func:`overrides_from_settings`, given the same ``sparsity`` and ``exclude``.
    """
    overrides = overrides or {}
    excluded = _excluded(layers, exclude)
    rows = []
    for info in layers:
        note = short_reason(why_not(info, granularity, m) or "")
        rows.append({
            "layer": info.name, "type": info.type, "params": info.params, "FLOPs": info.flops,
            "ratio": 0.0 if note else float(overrides.get(info.name, sparsity)),
            "prune": not note and info.name not in excluded, "note": note,
        })
    return pd.DataFrame(rows, columns=SETTINGS_COLUMNS).astype({"ratio": float, "prune": bool})


def overrides_from_settings(
    settings: pd.DataFrame, layers: list[LayerInfo], sparsity: float = 0.0, exclude: list[str] | None = None,
    explicit: set[str] | frozenset[str] = frozenset(),
) -> tuple[dict[str, float], list[str] | None]:
    """The recipe's ``layers`` and ``exclude`` from an edited :func:`layer_settings` table.

    A ticked row's ratio is an override only where it differs from ``sparsity`` or its layer is in ``explicit`` (set
    on purpose: by the recipe, a per-layer slider or an edit of the cell), so the recipe's ``layers`` holds only real
    overrides; a blank cell means the slider's. Rows whose ``note`` is set (the granularity does not apply) are shown
    unticked but keep the exclusion the table was drawn with (``exclude``), so switching granularity loses nothing.
    ``exclude`` is returned None when the unchecked layers are exactly the default ones (the model's output layers),
    so the recipe stays portable.
    """
    overrides: dict[str, float] = {}
    unchecked: list[str] = []
    before = _excluded(layers, exclude)
    for row in settings.itertuples(index=False):
        if row.note:
            if row.layer in before:
                unchecked.append(row.layer)
        elif not bool(row.prune):
            unchecked.append(row.layer)
        elif row.ratio is not None and not pd.isna(row.ratio) and (
                row.layer in explicit or abs(float(row.ratio) - sparsity) > 1e-9):
            overrides[row.layer] = float(row.ratio)
    default = [info.name for info in layers if info.is_output]
    return overrides, (None if unchecked == default else unchecked)


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in (getattr(module, "weight", None), getattr(module, "bias", None))
               if isinstance(p, torch.Tensor))


def preview(model: LoadedModel, data: Dataset, recipe: Recipe) -> Preview:
    """What ``recipe`` would remove from ``model``, per layer and in total (the model is not modified).

    Args:
        model: the model to prune.
        data: calibration data for the criteria that need it (taylor, apoz, wanda).
        recipe: what to prune; its schedule and fine-tuning are ignored (the final sparsity is previewed).

    Returns:
        A :class:`Preview`.

    Raises:
        RecipeError: the recipe does not fit the model (``Recipe.target``).
        SpecError: the criterion cannot score a layer, or channels cannot be removed from this model.
        CompatibilityError: the data does not fit the model.

    Example:
        >>> from pruner_core.io.data import load_data
        >>> from pruner_core.io.models import load_model
        >>> p = preview(load_model("demo:mnist-cnn"), load_data("demo:mnist5k"), Recipe(sparsity=0.5))
        >>> p.table.set_index("layer").loc["conv1", "params after"]  # 288 weights, 144 removed; 32 biases
        176
    """
    start = time.perf_counter()
    shape = check_data_fits(model, data)
    example = example_input(model.module, shape)
    flops_before, per_layer = layer_flops(model.module, example)
    layers = describe_model(model, shape, per_layer)
    target = recipe.target(layers)
    params_before = count_parameters(model.module)[0]
    modules = layer_lookup(model.module)
    if recipe.granularity == "channel":
        plan = plan_channels(model.module, target, example, data) if target.ratios else []
        work = copy.deepcopy(model.module)
        prune_channels(work, plan, example)
        flops_after, per_layer_after = layer_flops(work, example)
        after = layer_lookup(work)
        removed_rows = {entry["layer"]: entry["channels"] for entry in plan}
        group_rows = {info.group: removed_rows[info.name] for info in layers if info.name in removed_rows}
        masks = {}
        for info in layers:
            chans = group_rows.get(info.group)
            if chans:
                keep = torch.ones(info.shape[0], dtype=torch.bool)
                keep[chans] = False
                masks[info.name] = keep.reshape(-1, *[1] * (len(info.shape) - 1)).expand(*info.shape)
        rows = []
        for info in layers:
            new = after[info.name]
            rows.append({
                "layer": info.name, "type": info.type, "pruned": info.name in target.ratios,
                "channels before": info.shape[0], "channels after": int(new.weight.shape[0]),
                "params before": info.params, "params after": _params(new),
                "removed": 1 - _params(new) / info.params if info.params else 0.0,
                "FLOPs before": info.flops, "FLOPs after": per_layer_after.get(info.name),
            })
        table = pd.DataFrame(rows, columns=CHANNEL_COLUMNS)
        totals = {"params_before": params_before, "params_after": count_parameters(work)[0],
                  "flops_before": flops_before, "flops_after": flops_after}
    else:
        masks = compute_masks(model.module, target, data) if target.ratios else {}
        rows, removed_flops, removed_params = [], 0.0, 0
        for info in layers:
            mask = masks.get(info.name)
            gone = int((~mask).sum()) if mask is not None else 0
            kept_share = float(mask.float().mean()) if mask is not None else 1.0
            nonzero_flops = round(info.flops * kept_share) if info.flops is not None else None
            removed_params += gone
            removed_flops += (info.flops or 0) - (nonzero_flops or 0)
            rows.append({
                "layer": info.name, "type": info.type, "pruned": info.name in target.ratios,
                "params before": info.params, "params after": info.params - gone,
                "removed": gone / info.params if info.params else 0.0,
                "FLOPs before": info.flops, "FLOPs after (dense)": info.flops, "non-zero FLOPs": nonzero_flops,
            })
        table = pd.DataFrame(rows, columns=MASK_COLUMNS)
        totals = {"params_before": params_before, "params_after": params_before - removed_params,
                  "flops_before": flops_before, "flops_after": flops_before,
                  "nonzero_flops_after": round(flops_before - removed_flops)}
    return Preview(
        recipe.granularity, recipe.granularity != "channel", table, totals,
        weights={k: modules[k].weight.detach().numpy().copy() for k in masks},
        masks={k: v.numpy().copy() for k, v in masks.items()},
        seconds=time.perf_counter() - start,
    )


def comparison_table(original: VitalSigns, pruned: VitalSigns, masked: bool) -> pd.DataFrame:
    """Original vs pruned (their :class:`~pruner_core.measure.metrics.VitalSigns`), one row per figure.

    Columns ``figure``, ``original``, ``pruned``, ``change`` (text, formatted for people, one convention: a cost as
    ``N.NN×`` = original ÷ pruned, above 1 cheaper, as the Compare table writes it; accuracy in percentage points,
    ``pp``). Both sizes are written in the original's unit. For a masked model the FLOPs row says that the dense count
    is unchanged. Latency is left out on purpose: the two models were timed minutes apart, under whatever else the
    machine was doing, so their ratio would not be a measured speed-up (the Compare page times models together, in
    turn, in one sitting).
    """
    unit = byte_unit(original.size_bytes)
    rows = [
        ("test accuracy", f"{original.accuracy:.2%}", f"{pruned.accuracy:.2%}",
         f"{(pruned.accuracy - original.accuracy) * 100:+.2f} pp"),
        ("parameters", f"{original.params:,}", f"{pruned.params:,}", format_times(original.params, pruned.params)),
        ("non-zero parameters", f"{original.nonzero_params:,}", f"{pruned.nonzero_params:,}",
         format_times(original.nonzero_params, pruned.nonzero_params)),
        ("FLOPs / sample" + (" (dense)" if masked else ""), f"{original.flops:,}", f"{pruned.flops:,}",
         format_times(original.flops, pruned.flops)),
        ("size (dense safetensors)", format_bytes(original.size_bytes, 2, unit), format_bytes(pruned.size_bytes, 2, unit),
         format_times(original.size_bytes, pruned.size_bytes)),
    ]
    return pd.DataFrame(rows, columns=["figure", "original", "pruned", "change"])
