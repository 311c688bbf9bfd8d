"""The granularity registry: where each granularity applies, and the reason where it does not."""

from __future__ import annotations

import functools
import re

import pytest

from pruner_core.io.archs import ARCHITECTURES
from pruner_core.io.models import LoadedModel
from pruner_core.pruning.describe import describe_model
from pruner_core.pruning.granularities import GRANULARITIES, NM_DEFAULT, LayerFacts, prunability


def facts(type_: str, shape: tuple[int, ...], *, eager: bool = True, is_output: bool = False) -> LayerFacts:
    return LayerFacts(type_, shape, eager, is_output)


LINEAR = facts("Linear", (16, 8))
CONV3 = facts("Conv2d", (8, 4, 3, 3))

# For each granularity: a layer where it applies, and layers where it does not with the reason.
CASES = {
    "unstructured": (LINEAR, []),
    "nm": (
        LINEAR,
        [
            (facts("Linear", (16, 10)), r"^10 input features is not a multiple of M=4$"),
            (facts("Conv2d", (8, 6, 3, 3)), r"^6 input channels is not a multiple of M=4$"),
        ],
    ),
    "vector": (
        CONV3,
        [
            (LINEAR, r"^Linear weights have no kernel rows"),
            (facts("Conv2d", (8, 4, 3, 1)), r"^kernel rows of width 1 are single weights"),
        ],
    ),
    "kernel": (
        CONV3,
        [
            (LINEAR, r"^Linear weights have no kernels"),
            (facts("Conv2d", (8, 4, 1, 1)), r"^a 1x1 kernel is a single weight"),
        ],
    ),
    "channel": (
        CONV3,
        [
            (facts("Conv2d", (8, 4, 3, 3), eager=False), r"^TorchScript / torch\.export programs cannot have channels"),
            (facts("Linear", (10, 8), is_output=True), r"^its outputs are the model's outputs"),
            (facts("Conv2d", (1, 4, 3, 3)), r"^a single output channel cannot be removed"),
        ],
    ),
}


def test_every_granularity_has_cases():
    assert set(CASES) == set(GRANULARITIES)
    assert NM_DEFAULT == (2, 4)


@pytest.mark.parametrize("name", list(GRANULARITIES))
def test_granularity_applies_where_it_should(name):
    layer, _ = CASES[name]
    assert GRANULARITIES[name].why_not(layer) is None
    assert GRANULARITIES[name].label


@pytest.mark.parametrize(
    ("name", "layer", "reason"),
    [(name, layer, reason) for name, (_, refusals) in CASES.items() for layer, reason in refusals],
)
def test_granularity_is_refused_with_a_reason(name, layer, reason):
    why = GRANULARITIES[name].why_not(layer)
    assert why is not None
    assert re.search(reason, why), why


@pytest.mark.parametrize(
    "layer",
    [LINEAR, CONV3, facts("Conv1d", (4, 2, 5)), facts("Conv2d", (1, 1, 1, 1), eager=False, is_output=True)],
    ids=["linear", "conv2d", "conv1d", "1x1 output conv in a program"],
)
def test_unstructured_applies_everywhere_and_prunability_covers_the_registry(layer):
    result = prunability(layer)
    assert list(result) == list(GRANULARITIES)
    assert result["unstructured"] is None


def test_conv1d_kernel_rows_and_kernels():
    assert prunability(facts("Conv1d", (4, 8, 5))) == {
        "unstructured": None, "nm": None, "vector": None, "kernel": None, "channel": None
    }


@functools.cache
def resnet20_layers() -> dict:
    module = ARCHITECTURES["resnet20"].build().eval()
    infos = describe_model(LoadedModel(module, "resnet20", "factory", True), (1, 28, 28))
    return {layer.name: layer.granularities for layer in infos}


@pytest.mark.parametrize(
    ("layer", "applies", "refused"),
    [
        ("conv1", {"unstructured", "vector", "channel"}, {"nm", "kernel"}),  # 1 input channel: a kernel is a filter
        ("layer1.0.conv1", {"unstructured", "nm", "vector", "kernel", "channel"}, set()),
        ("layer2.0.shortcut.0", {"unstructured", "nm", "channel"}, {"vector", "kernel"}),  # 1x1 projection
        ("fc", {"unstructured", "nm"}, {"vector", "kernel", "channel"}),  # the classifier
    ],
)
def test_resnet20_prunability(layer, applies, refused):
    granularities = resnet20_layers()[layer]
    assert {g for g, why in granularities.items() if why is None} == applies
    assert {g for g, why in granularities.items() if why is not None} == refused


def test_kernel_pruning_is_refused_where_a_kernel_is_a_whole_filter():
    from torch import nn

    depthwise = nn.Conv2d(8, 8, 3, groups=8)  # weight [8, 1, 3, 3], as in MobileNet blocks
    facts = LayerFacts("Conv2d", tuple(depthwise.weight.shape), True, False)
    why = GRANULARITIES["kernel"].why_not(facts)
    assert why.startswith("each filter reads one input channel") and "removes the output channel" in why
    assert GRANULARITIES["kernel"].why_not(LayerFacts("Conv2d", (8, 2, 3, 3), True, False)) is None
    assert GRANULARITIES["vector"].why_not(facts) is None and GRANULARITIES["unstructured"].why_not(facts) is None


def test_every_reason_has_a_short_label_that_fits_a_table_cell():
    """A table shows the label ("no: depthwise"); the sentence is said once below it. Labels survive pickling (the
    pages' caches) and deep copies."""
    import copy
    import pickle

    reasons = [GRANULARITIES[name].why_not(layer) for name, (_, refusals) in CASES.items() for layer, _ in refusals]
    reasons.append(GRANULARITIES["kernel"].why_not(LayerFacts("Conv2d", (8, 1, 3, 3), True, False)))
    for why in reasons:
        assert 2 <= len(why.short) <= 20 and len(why.short) < len(why), why
    depthwise = reasons[-1]
    assert depthwise.short == "depthwise"
    for back in (pickle.loads(pickle.dumps(depthwise)), copy.deepcopy(depthwise)):
        assert back == depthwise and back.short == "depthwise"
