"""Tables built from vital signs: one row per layer, prunability as yes/no with the reason, coupled groups."""

from __future__ import annotations

import json

from pruner_core.present.tables import (
    coupled_groups_table,
    layer_table,
    preview_metrics,
    prunability_legend,
    prunability_table,
)
from pruner_core.pruning.describe import LayerInfo
from pruner_core.pruning.granularities import GRANULARITIES, Reason

ONE_BY_ONE = Reason("1x1 kernel", "a 1x1 kernel is a single weight (use unstructured)")
OUTPUT = Reason("output layer", "its outputs are the model's outputs (the classes)")


def layer(name, group, flops, **why_not):
    labels = {g: r.short for g, r in why_not.items()}  # as describe_model keeps them (JSON keeps no Reason)
    return LayerInfo(name, "Conv2d", [4, 2, 3, 3], 76, flops, group, False, {g: why_not.get(g) for g in GRANULARITIES},
                     labels=labels)


FLOPS = 400
LAYERS = [
    layer("stem", 0, 100),
    layer("block.conv", 1, 300, kernel=ONE_BY_ONE, vector=Reason("rows of width 1", "kernel rows of width 1 are ...")),
    layer("block.add", 0, None, channel=OUTPUT, kernel=ONE_BY_ONE),
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


def test_prunability_table_says_yes_or_no_with_a_short_label_and_the_legend_says_each_once():
    table = prunability_table(LAYERS)
    assert list(table.columns) == ["layer", *GRANULARITIES]
    assert table.loc[0, "unstructured"] == "yes"
    assert table.loc[1, "kernel"] == "no: 1x1 kernel"  # a cell says it in a few words: the table fits the screen
    assert table.loc[2, "channel"] == "no: output layer"
    assert table.map(len).max().max() <= 24
    legend = prunability_legend(LAYERS)
    assert legend == [  # each sentence once, in full, with the granularities and layers it applies to
        "**no: rows of width 1** (vector): kernel rows of width 1 are ... — `block.conv`",
        "**no: 1x1 kernel** (kernel): a 1x1 kernel is a single weight (use unstructured) — `block.conv`, `block.add`",
        "**no: output layer** (channel): its outputs are the model's outputs (the classes) — `block.add`",
    ]


def test_a_layer_read_back_from_json_keeps_its_short_labels():
    back = LayerInfo.from_dict(json.loads(json.dumps(LAYERS[2].to_dict())))
    assert type(back.granularities["channel"]) is str
    assert prunability_table([back]).loc[0, "channel"] == "no: output layer"
    saved = json.loads(json.dumps(LAYERS[2].to_dict()))
    older = LayerInfo.from_dict({k: v for k, v in saved.items() if k != "labels"})  # saved before labels were kept
    assert prunability_table([older]).loc[0, "channel"] == f"no: {OUTPUT}"


def test_coupled_groups_table_lists_only_groups_of_two_or_more():
    table = coupled_groups_table(LAYERS)
    assert table.to_dict("records") == [{"group": 0, "layers": "stem, block.add", "size": 2}]
    assert coupled_groups_table(LAYERS[:2]).empty


def test_preview_metrics_give_changes_as_times_fewer_as_the_compare_table_does():
    totals = {"params_before": 4000, "params_after": 2000, "flops_before": 4000, "flops_after": 1052}
    shown = {m["label"]: m for m in preview_metrics(totals, masked=False)}
    assert shown["FLOPs / sample"]["delta"] == "3.80× fewer"  # original ÷ pruned, as "(3.80×)" on Compare
    assert shown["Parameters removed"]["delta"] == "2.00× fewer: 50.0% of 4,000"
    masked = {m["label"]: m for m in preview_metrics({**totals, "flops_after": 4000, "nonzero_flops_after": 2000}, True)}
    assert masked["Non-zero FLOPs / sample"]["delta"] == "2.00× fewer"
    assert masked["FLOPs / sample (dense)"]["delta"] == "unchanged"
    none = {m["label"]: m for m in preview_metrics({**totals, "params_after": 4000, "flops_after": 4000}, False)}
    assert none["FLOPs / sample"]["delta"] == "unchanged" and none["Parameters removed"]["delta"].startswith("unchanged")
