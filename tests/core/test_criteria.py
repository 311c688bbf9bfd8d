"""Criteria are objects in one registry: a user's own criterion is a few lines and works wherever a built-in does."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pruner_core.errors import SpecError
from pruner_core.pipeline.run import prune
from pruner_core.pruning.criteria import CRITERIA, Criterion, check_pair, register_criterion, valid_pairs
from pruner_core.pruning.granularities import GRANULARITIES
from pruner_core.pruning.recipe import Recipe, RecipeError
from pruner_core.pruning.select import compute_masks, scores
from pruner_core.pruning.target import Target


class MaxMagnitude(Criterion):
    """The README's example: the largest |w| of each group."""

    name, needs, description = "max_magnitude", "weights", "largest |w| in each group"

    def score(self, job):
        for name, module, _ in job.layers:
            yield name, job.group_reduce(module.weight.detach().abs(), torch.amax)


@pytest.fixture
def user_criterion():
    criterion = register_criterion(MaxMagnitude())
    yield criterion
    del CRITERIA[criterion.name]


def test_a_registered_criterion_is_valid_in_recipes_and_prunes(user_criterion, demo_data):
    from pruner_core.io.models import load_model

    assert user_criterion.granularities == frozenset(GRANULARITIES)  # every granularity unless it says otherwise
    assert ("kernel", "max_magnitude") in valid_pairs()
    recipe = Recipe(granularity="kernel", criterion="max_magnitude", sparsity=0.5, finetune={"epochs": 0})
    model = load_model("demo:mnist-cnn")
    pruned = prune(model, demo_data, recipe)
    w = model.module.conv2.weight.detach().abs()
    top = w.amax(dim=(2, 3))  # the independent computation: kernels ranked by their largest weight
    kept = pruned.masks["conv2"][:, :, 0, 0]
    assert int((~kept).sum()) == top.numel() // 2
    assert top[kept].min() >= top[~kept].max()


def test_registered_scores_have_the_granularitys_group_shape(user_criterion):
    net = nn.Sequential(nn.Conv2d(2, 4, 3))
    for g, shape in (("unstructured", (4, 2, 3, 3)), ("vector", (4, 2, 3)), ("kernel", (4, 2)), ("channel", (4,))):
        assert tuple(scores(net, Target(g, "max_magnitude", ratios={"0": 0.5}))["0"].shape) == shape


def test_names_are_checked_when_registering():
    with pytest.raises(SpecError, match="criterion name 'l1' is taken"):
        register_criterion(type("Again", (MaxMagnitude,), {"name": "l1"})())
    with pytest.raises(SpecError, match="is not a plain identifier"):
        register_criterion(type("Bad", (MaxMagnitude,), {"name": "max magnitude"})())
    with pytest.raises(SpecError, match="unknown granularity 'blocks'"):
        register_criterion(type("Odd", (MaxMagnitude,), {"name": "odd", "granularities": frozenset({"blocks"})})())
    assert "odd" not in CRITERIA


def test_an_unregistered_criterion_is_refused_naming_the_registered_ones():
    with pytest.raises(RecipeError, match="criterion: unknown criterion; valid: l1, l2, random, taylor, apoz, bn_scale, wanda"):
        Recipe(criterion="max_magnitude")


@pytest.mark.parametrize("name", list(CRITERIA))
def test_every_criterion_says_what_it_reads_and_where_it_applies(name):
    criterion = CRITERIA[name]
    assert criterion.needs in ("weights", "gradients", "activations", "bn") and criterion.description
    for g in GRANULARITIES:
        if g in criterion.granularities:
            check_pair(g, name)
        else:
            with pytest.raises(SpecError, match=f"cannot prune at granularity '{g}'"):
                check_pair(g, name)


@pytest.mark.parametrize("name", [c for c in CRITERIA if CRITERIA[c].needs == "weights"])
def test_weight_criteria_score_every_granularity_they_claim(name):
    net = nn.Sequential(nn.Conv2d(4, 8, 3))
    for g in CRITERIA[name].granularities:
        target = Target(g, name, ratios={"0": 0.5})
        assert compute_masks(net, target)["0"].shape == net[0].weight.shape
