"""Tables built from vital signs: one row per layer, prunability as yes/no with the reason, coupled groups."""

from __future__ import annotations

from pruner_core.present.tables import coupled_groups_table, layer_table, prunability_table
from pruner_core.pruning.describe import LayerInfo
from pruner_core.pruning.granularities import GRANULARITIES


def layer(name, group, flops, **why_not):
    return LayerInfo(name, "Conv2d", [4, 2, 3, 3], 76, flops, group, False, {g: why_not.get(g) for g in GRANULARITIES})


FLOPS = 400
LAYERS = [
    layer("stem", 0, 100),
    layer("block.conv", 1, 300, kernel="a 1x1 kernel is a single weight (use unstructured)"),
    layer("block.add", 0, None, channel="its outputs are the model's outputs (the classes)"),
]


def test_layer_table_has_one_row_per_layer_with_flops_share():
    table = layer_table(LAYERS, FLOPS)
    assert list(table.columns) == ["layer", "type", "weight shape", "parameters", "FLOPs", "FLOPs share", "coupled group"]
    assert table["layer"].tolist() == ["stem", "block.conv", "block.add"]
    assert table["weight shape"].tolist() == ["4 x 2 x 3 x 3"] * 3
    assert table["FLOPs share"].tolist()[:2] == [0.25, 0.75]
    assert table["FLOPs share"].isna().tolist() == [False, False, True]  # unmeasured FLOPs have no share
    # a layer alone in its group shows none (the Coupled groups tab lists none for it), the others its number there
    assert table["coupled group"].tolist() == ["0", "—", "0"]
    assert coupled_groups_table(LAYERS)["group"].tolist() == [0]


def test_prunability_table_says_yes_or_no_with_the_reason():
    table = prunability_table(LAYERS)
    assert list(table.columns) == ["layer", *GRANULARITIES]
    assert table.loc[0, "unstructured"] == "yes"
    assert table.loc[1, "kernel"] == "no: a 1x1 kernel is a single weight (use unstructured)"
    assert table.loc[2, "channel"] == "no: its outputs are the model's outputs (the classes)"


def test_coupled_groups_table_lists_only_groups_of_two_or_more():
    table = coupled_groups_table(LAYERS)
    assert table.to_dict("records") == [{"group": 0, "layers": "stem, block.add", "size": 2}]
    assert coupled_groups_table(LAYERS[:2]).empty
