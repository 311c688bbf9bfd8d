"""Pruning methods: masks match torch's own pruning, every (granularity, criterion) pair works, channels really go."""

from __future__ import annotations

import copy
import functools
import json

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from pruner_core.errors import SpecError
from pruner_core.graph.layers import prunable_layers
from pruner_core.graph.model_graph import graph_of
from pruner_core.io.archs import MnistCNN
from pruner_core.io.data import Dataset
from pruner_core.io.models import load_model
from pruner_core.pruning.channels import plan_channels, prune_channels
from pruner_core.pruning.criteria import CRITERIA, check_pair, valid_pairs
from pruner_core.pruning.granularities import GRANULARITIES
from pruner_core.pruning.select import apply_masks, compute_masks, scores
from pruner_core.pruning.target import Target


def seeded(build, seed: int = 0) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build().eval()


def removed(masks: dict[str, torch.Tensor]) -> dict[str, int]:
    return {name: int((~mask).sum()) for name, mask in masks.items()}


@functools.cache
def demo(name: str) -> nn.Module:
    """A demo model with its trained weights (loaded once; tests deep-copy before changing it)."""
    return load_model(f"demo:{name}").module


@pytest.fixture(scope="module")
def calib(demo_data) -> Dataset:
    """A small calibration slice of the demo data (keeps taylor, apoz and wanda quick)."""
    d = demo_data
    return Dataset("calib", d.x_train[:128], d.y_train[:128], d.x_test[:64], d.y_test[:64], d.classes, "test")


# ------------------------------------------------------------ identical to torch.nn.utils.prune


@pytest.mark.parametrize("ratio", [0.3, 0.55, 0.9])
def test_layerwise_unstructured_l1_masks_equal_torch_l1_unstructured(ratio):
    net = seeded(MnistCNN)
    names = [name for name, _, _ in prunable_layers(net)]
    masks = compute_masks(net, Target("unstructured", "l1", ratios=dict.fromkeys(names, ratio)))
    for name, mod, _ in prunable_layers(copy.deepcopy(net)):
        prune.l1_unstructured(mod, "weight", amount=ratio)
        assert torch.equal(masks[name], mod.weight_mask.bool()), name
        assert removed(masks)[name] == round(ratio * mod.weight.numel())


def test_global_unstructured_l1_masks_equal_torch_global_unstructured():
    net = seeded(MnistCNN)
    names = [name for name, _, _ in prunable_layers(net)]
    masks = compute_masks(net, Target("unstructured", "l1", "global", dict.fromkeys(names, 0.6)))
    ref = copy.deepcopy(net)
    params = [(mod, "weight") for _, mod, _ in prunable_layers(ref)]
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=0.6)
    for name, mod, _ in prunable_layers(ref):
        assert torch.equal(masks[name], mod.weight_mask.bool()), name
    assert len(set(removed(masks).values())) > 1  # one threshold: layers lose different shares


def test_channel_l2_rows_equal_torch_ln_structured():
    net = seeded(lambda: nn.Sequential(nn.Conv2d(8, 24, 3)))
    mask = compute_masks(net, Target("channel", "l2", ratios={"0": 0.4}))["0"]
    ref = copy.deepcopy(net)
    prune.ln_structured(ref[0], "weight", amount=0.4, n=2, dim=0)
    assert torch.equal(mask.flatten(1).all(1), ref[0].weight_mask.flatten(1).all(1).bool())
    assert int((~mask.flatten(1).all(1)).sum()) == round(0.4 * 24)


def test_global_fraction_is_the_parameter_weighted_mean_of_the_ratios():
    net = seeded(MnistCNN)
    ratios = {"conv2": 0.2, "fc1": 0.8}
    masks = compute_masks(net, Target("unstructured", "l2", "global", ratios))
    n2, n1 = net.conv2.weight.numel(), net.fc1.weight.numel()
    assert sum(removed(masks).values()) == round((0.2 * n2 + 0.8 * n1) / (n1 + n2) * (n1 + n2))


def test_ties_at_the_threshold_remove_the_first_in_flattened_layer_order():
    net = nn.Sequential(nn.Linear(4, 2), nn.Linear(2, 2))
    given = {"0": torch.ones(2, 4), "1": torch.ones(2, 2)}
    target = Target("unstructured", "l1", "global", {"0": 0.5, "1": 0.5})
    masks = compute_masks(net, target, layer_scores=given)
    assert masks["0"].flatten().tolist() == [False] * 6 + [True] * 2
    assert masks["1"].all()


# ------------------------------------------------------------ N:M


@pytest.mark.parametrize("nm", [(2, 4), (1, 4)])
@pytest.mark.parametrize("layer", [nn.Linear(16, 6), nn.Conv2d(8, 5, 3)], ids=["linear", "conv"])
def test_nm_leaves_exactly_n_non_zeros_in_every_group_of_m(nm, layer):
    net = seeded(lambda: nn.Sequential(copy.deepcopy(layer)))
    apply_masks(net, compute_masks(net, Target("nm", "l1", ratios={"0": 0.0}, nm=nm)))
    w = net[0].weight.detach()
    along_in = w.movedim(1, -1) if w.dim() > 2 else w
    groups = along_in.reshape(-1, nm[1])
    assert ((groups != 0).sum(1) == nm[0]).all()
    kept = groups.abs().sort(1, descending=True).values
    assert (kept[:, nm[0] - 1] > 0).all()  # the survivors are the largest of their group


# ------------------------------------------------------------ large layers (speed: bench/run.py global_threshold)


def test_global_threshold_on_five_large_layers_removes_exactly_half():
    """How much faster than torch's global_unstructured this is, is measured, not asserted: bench/run.py
    ``global_threshold`` (``global_threshold_speedup.*``) on this same net."""
    net = seeded(lambda: nn.Sequential(*[nn.Linear(1000, 1000, bias=False) for _ in range(5)]))
    target = Target("unstructured", "l1", "global", {str(i): 0.5 for i in range(5)})
    apply_masks(net, compute_masks(net, target))
    assert sum(int((m.weight == 0).sum()) for m in net) == 2_500_000


# ------------------------------------------------------------ every valid pair on mnist-cnn

LAYERS = {  # layers of mnist-cnn each granularity applies to
    "unstructured": ["conv1", "conv2", "fc1", "fc2"],
    "nm": ["conv2", "fc1", "fc2"],  # conv1 has 1 input channel
    "vector": ["conv1", "conv2"],
    "kernel": ["conv2"],  # conv1 has 1 input channel: each kernel is a whole filter
    "channel": ["conv1", "conv2", "fc1"],  # fc2's outputs are the classes
}


def expected_groups_removed(granularity: str, criterion: str, shape: torch.Size, ratio: float) -> int:
    if granularity == "unstructured" and criterion == "wanda":  # compared within each output row
        return shape[0] * round(ratio * shape[1:].numel())
    groups = {"unstructured": shape.numel(), "vector": shape[:-1].numel(), "kernel": shape[:2].numel(), "channel": shape[0]}
    return round(ratio * groups[granularity])


def group_keep(mask: torch.Tensor, granularity: str) -> torch.Tensor:
    """Reduce a weight mask to its groups, checking every group is wholly kept or wholly removed."""
    kept = {"unstructured": 4, "vector": 3, "kernel": 2, "channel": 1}[granularity] if mask.dim() == 4 else (
        {"unstructured": 2, "channel": 1}[granularity]
    )
    flat = mask.reshape(*mask.shape[:kept], -1)
    assert torch.equal(flat.all(-1), flat.any(-1)), "a group is partly removed"
    return flat.all(-1)


@pytest.mark.parametrize(("granularity", "criterion"), valid_pairs())
def test_every_valid_pair_prunes_mnist_cnn_by_the_requested_amount(granularity, criterion, calib):
    net = demo("mnist-cnn")
    before = copy.deepcopy(net.state_dict())
    net.train()  # the caller's mode must survive
    layers = ["conv1", "conv2"] if criterion == "bn_scale" else LAYERS[granularity]  # BN follows the convs only
    ratio = 0.3
    try:
        masks = compute_masks(net, Target(granularity, criterion, ratios=dict.fromkeys(layers, ratio)), calib)
    finally:
        train_mode = net.training
        net.eval()
    assert train_mode and all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    weights = dict(net.named_modules())
    assert list(masks) == layers
    for name, mask in masks.items():
        w = weights[name].weight
        assert mask.dtype == torch.bool and mask.shape == w.shape
        if granularity == "nm":
            assert (mask.movedim(1, -1).reshape(-1, 4).sum(1) == 2).all()
        else:
            lost = int((~group_keep(mask, granularity)).sum())
            assert lost == expected_groups_removed(granularity, criterion, w.shape, ratio), name


@pytest.mark.parametrize("criterion", sorted(CRITERIA))
def test_criteria_that_score_any_weight_give_one_score_per_group(criterion):
    net = seeded(lambda: nn.Sequential(nn.Conv2d(4, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 4 * 4, 3)))
    data = Dataset("t", torch.rand(8, 4, 6, 6), torch.arange(8) % 3, torch.rand(2, 4, 6, 6), torch.zeros(2, dtype=torch.long), list("abc"))
    for granularity in [g for g, c in valid_pairs() if c == criterion and g != "nm"]:
        got = scores(net, Target(granularity, criterion, ratios={"0": 0.5}), data)["0"]
        assert got.shape == {"unstructured": (6, 4, 3, 3), "vector": (6, 4, 3), "kernel": (6, 4), "channel": (6,)}[granularity]


def test_random_scores_are_seeded():
    net = seeded(MnistCNN)
    a, b, c = (scores(net, Target("kernel", "random", ratios={"conv2": 0.5}, seed=s))["conv2"] for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_taylor_leaves_no_gradients_and_keeps_frozen_weights_frozen(calib):
    net = copy.deepcopy(demo("mnist-cnn"))
    net.conv1.weight.requires_grad_(False)
    compute_masks(net, Target("unstructured", "taylor", ratios={"conv1": 0.5, "fc1": 0.5}), calib)
    assert all(p.grad is None for p in net.parameters())
    assert not net.conv1.weight.requires_grad and net.fc1.weight.requires_grad


# ------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    ("granularity", "criterion"), [(g, c) for g in GRANULARITIES for c in CRITERIA if (g, c) not in valid_pairs()]
)
def test_invalid_pairs_are_refused(granularity, criterion):
    with pytest.raises(SpecError, match=criterion):
        check_pair(granularity, criterion)
    with pytest.raises(SpecError, match="cannot prune"):
        compute_masks(seeded(MnistCNN), Target(granularity, criterion, ratios={"conv2": 0.5}))


@pytest.mark.parametrize(
    ("granularity", "layer", "reason"),
    [
        ("vector", "fc1", "no kernel rows"),
        ("kernel", "fc2", "no kernels"),
        ("nm", "conv1", "not a multiple of M=4"),
        ("channel", "conv1", None),  # applies: no error
    ],
)
def test_a_layer_the_granularity_does_not_apply_to_is_named(granularity, layer, reason):
    target = Target(granularity, "l1", ratios={layer: 0.5})
    if reason is None:
        compute_masks(seeded(MnistCNN), target)
        return
    with pytest.raises(SpecError, match=f"'{layer}'.*{reason}"):
        compute_masks(seeded(MnistCNN), target)


@pytest.mark.parametrize("ratio", [1.0, -0.1, 1.5, float("nan"), "half"])
def test_a_ratio_outside_0_1_is_refused_naming_layer_and_value(ratio):
    with pytest.raises(SpecError, match=f"'conv2'.*{ratio!r}"):
        compute_masks(seeded(MnistCNN), Target("unstructured", "l1", ratios={"conv2": ratio}))


def test_unknown_layer_and_scope_are_refused():
    with pytest.raises(SpecError, match="'conv9'.*prunable: conv1, conv2"):
        compute_masks(seeded(MnistCNN), Target("unstructured", "l1", ratios={"conv9": 0.5}))
    with pytest.raises(SpecError, match="scope 'everywhere'"):
        compute_masks(seeded(MnistCNN), Target("unstructured", "l1", "everywhere", {"conv2": 0.5}))


def test_activation_criteria_need_data():
    with pytest.raises(SpecError, match="needs calibration data"):
        compute_masks(seeded(MnistCNN), Target("unstructured", "wanda", ratios={"conv2": 0.5}))


def test_apoz_and_bn_scale_name_a_layer_without_relu_or_batchnorm():
    net = seeded(lambda: nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 24 * 24, 2)))
    data = Dataset("t", torch.rand(4, 1, 28, 28), torch.arange(4) % 2, torch.rand(2, 1, 28, 28), torch.zeros(2, dtype=torch.long), ["a", "b"])
    with pytest.raises(SpecError, match="layer '0': no ReLU follows it.*use l1 or l2"):
        compute_masks(net, Target("channel", "apoz", ratios={"0": 0.5}), data)
    with pytest.raises(SpecError, match="layer '1': no affine BatchNorm.*use l1 or l2"):
        compute_masks(net, Target("channel", "bn_scale", ratios={"1": 0.5}), data)
    assert removed(compute_masks(net, Target("channel", "apoz", ratios={"1": 0.5}), data))["1"] == 2 * 3 * 3 * 4


# ------------------------------------------------------------ apply_masks


def test_apply_masks_zeroes_in_place_without_hooks_or_reparametrisation():
    net = seeded(MnistCNN)
    weight = net.conv2.weight
    before = weight.detach().clone()
    masks = compute_masks(net, Target("kernel", "l2", ratios={"conv2": 0.5}))
    apply_masks(net, masks)
    assert net.conv2.weight is weight and isinstance(weight, nn.Parameter) and weight.requires_grad
    assert not net.conv2._forward_pre_hooks and "weight_orig" not in dict(net.conv2.named_parameters())
    assert (weight[~masks["conv2"]] == 0).all() and torch.equal(weight[masks["conv2"]], before[masks["conv2"]])
    with pytest.raises(SpecError, match="'conv1': mask of shape"):
        apply_masks(net, {"conv1": masks["conv2"]})


# ------------------------------------------------------------ channels on ResNet-20

EXAMPLE = torch.zeros(2, 1, 28, 28)


def resnet_target(ratio: float = 0.5, **kw) -> Target:
    names = [name for name, _, _ in prunable_layers(demo("resnet20")) if name != "fc"]
    return Target("channel", "l1", ratios=dict.fromkeys(names, ratio), **kw)


@pytest.fixture(scope="module")
def resnet_plan() -> list[dict]:
    return plan_channels(demo("resnet20"), resnet_target(), EXAMPLE)


def test_the_plan_is_plain_data_one_entry_per_coupled_group(resnet_plan):
    assert json.loads(json.dumps(resnet_plan)) == resnet_plan
    names = [name for name, _, _ in prunable_layers(demo("resnet20"))]
    group_of = graph_of(demo("resnet20"), EXAMPLE.shape[1:]).group_of
    planned = [group_of[entry["layer"]] for entry in resnet_plan]
    assert len(planned) == len(set(planned)) == len(set(group_of.values())) - 1  # every group but the classifier's
    first = {}
    for name in names:
        first.setdefault(group_of[name], name)
    assert all(entry["layer"] == first[group_of[entry["layer"]]] for entry in resnet_plan)


def test_coupled_layers_lose_the_same_channels(resnet_plan):
    base, pruned = demo("resnet20"), copy.deepcopy(demo("resnet20"))
    prune_channels(pruned, resnet_plan, EXAMPLE)
    stem = next(entry for entry in resnet_plan if entry["layer"] == "conv1")
    kept = [c for c in range(16) if c not in stem["channels"]]
    # the BatchNorms after every layer of the stem's residual group keep exactly the stem's surviving channels
    for bn in ["bn1", "layer1.0.bn2", "layer1.1.bn2", "layer1.2.bn2"]:
        assert torch.equal(pruned.get_submodule(bn).weight, base.get_submodule(bn).weight[kept]), bn


def test_pruned_channels_shrink_the_model_and_replay_on_a_fresh_copy(resnet_plan):
    base, pruned = demo("resnet20"), copy.deepcopy(demo("resnet20"))
    prune_channels(pruned, resnet_plan, EXAMPLE)
    x = torch.rand(4, 1, 28, 28)
    assert pruned(x).shape == base(x).shape == (4, 10)
    assert sum(p.numel() for p in pruned.parameters()) < 0.4 * sum(p.numel() for p in base.parameters())
    assert pruned.layer3[2].conv2.weight.shape[0] == 32 and pruned.fc.weight.shape == (10, 32)
    fresh = load_model("demo:resnet20").module
    prune_channels(fresh, json.loads(json.dumps(resnet_plan)), EXAMPLE)
    fresh.load_state_dict(pruned.state_dict())
    assert torch.equal(fresh(x), pruned(x))


def test_plan_channels_leaves_the_model_unchanged():
    net = copy.deepcopy(demo("resnet20")).train()
    before = copy.deepcopy(net.state_dict())
    plan_channels(net, resnet_target(0.3), EXAMPLE)
    assert net.training and all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_round_to_keeps_a_multiple_of_8_channels_never_none():
    net = demo("resnet20")
    plan = plan_channels(net, resnet_target(0.6, round_to=8), EXAMPLE)
    outs = {name: mod.weight.shape[0] for name, mod, _ in prunable_layers(net)}
    assert plan
    for entry in plan:
        kept = outs[entry["layer"]] - len(entry["channels"])
        assert kept % 8 == 0 and kept >= 8, entry["layer"]
    plan = plan_channels(net, resnet_target(0.99, round_to=None), EXAMPLE)
    assert all(outs[e["layer"]] - len(e["channels"]) == 1 for e in plan)


def test_the_classifier_never_loses_channels():
    with pytest.raises(SpecError, match="'fc'.*model's outputs"):
        plan_channels(demo("resnet20"), Target("channel", "l1", ratios={"fc": 0.5}), EXAMPLE)


def test_a_plan_removing_every_channel_or_naming_no_layer_is_refused():
    net = copy.deepcopy(demo("resnet20"))
    with pytest.raises(SpecError, match="all 16 output channels"):
        prune_channels(net, [{"layer": "conv1", "channels": list(range(16))}], EXAMPLE)
    with pytest.raises(SpecError, match="'nope'"):
        prune_channels(net, [{"layer": "nope", "channels": [0]}], EXAMPLE)


def test_a_channel_preview_with_data_refuses_the_classifier_too(calib):
    with pytest.raises(SpecError, match="'fc2'.*model's outputs"):
        compute_masks(demo("mnist-cnn"), Target("channel", "l1", ratios={"fc2": 0.5}), calib)
