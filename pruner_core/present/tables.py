"""Tables (pandas) built from measured figures, shared by the pages, the CLI and the report."""

from __future__ import annotations

import pandas as pd

from pruner_core.pruning.granularities import GRANULARITIES


def layer_table(signs: dict) -> pd.DataFrame:
    """One row per prunable layer: type, weight shape, parameters, measured FLOPs, coupled group."""
    rows = [
        {
            "layer": layer["name"],
            "type": layer["type"],
            "weight shape": " x ".join(map(str, layer["shape"])),
            "parameters": layer["params"],
            "FLOPs": layer["flops"],
            "FLOPs share": (layer["flops"] / signs["flops"]) if layer["flops"] is not None and signs["flops"] else None,
            "coupled group": layer["group"],
        }
        for layer in signs["layers"]
    ]
    return pd.DataFrame(rows, columns=["layer", "type", "weight shape", "parameters", "FLOPs", "FLOPs share", "coupled group"])


def prunability_table(signs: dict) -> pd.DataFrame:
    """One row per prunable layer, one column per granularity: "yes" or "no: <reason>"."""
    rows = []
    for layer in signs["layers"]:
        row = {"layer": layer["name"]}
        for name in GRANULARITIES:
            why = layer["granularities"].get(name)
            row[name] = "yes" if why is None else f"no: {why}"
        rows.append(row)
    return pd.DataFrame(rows, columns=["layer", *GRANULARITIES])


def coupled_groups_table(signs: dict) -> pd.DataFrame:
    """Groups of two or more layers whose output channels are tied (e.g. by residual additions)."""
    groups: dict[int, list[str]] = {}
    for layer in signs["layers"]:
        groups.setdefault(layer["group"], []).append(layer["name"])
    rows = [{"group": g, "layers": ", ".join(members), "size": len(members)} for g, members in groups.items() if len(members) > 1]
    return pd.DataFrame(rows, columns=["group", "layers", "size"])
