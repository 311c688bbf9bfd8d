"""Sensitivity scan and ratio recommendation: curves measured on real models, recommendations applied and measured."""

from __future__ import annotations

import copy
import json
import threading

import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from pruner_core.errors import SpecError
from pruner_core.io.data import Dataset
from pruner_core.io.models import LoadedModel, load_model
from pruner_core.measure.metrics import accuracy
from pruner_core.pruning.recipe import Recipe
from pruner_core.sensitivity.allocate import TargetError, recommend
from pruner_core.sensitivity.cache import cache_key, cached_scan
from pruner_core.sensitivity.refine import apply_and_measure
from pruner_core.sensitivity.result import Sensitivity
from pruner_core.sensitivity.scan import DEFAULT_RATIOS, scan

SAMPLES = 300


@pytest.fixture(scope="module")
def cnn() -> LoadedModel:
    return load_model("demo:mnist-cnn")


@pytest.fixture(scope="module")
def cnn_scan(cnn, demo_data) -> Sensitivity:
    return scan(cnn, demo_data, samples=SAMPLES)


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_ratio_zero_gives_the_dense_accuracy_for_every_layer_and_the_model_is_untouched(cnn, demo_data):
    before = _state(cnn.module)
    sens = scan(cnn, demo_data, ratios=[0.0, 0.5], samples=SAMPLES)
    assert {u.name for u in sens.units} == {"conv1", "conv2", "fc1", "fc2"}
    dense = accuracy(cnn.module, demo_data.x_test[:SAMPLES], demo_data.y_test[:SAMPLES])
    assert sens.dense_accuracy == dense
    for unit in sens.units:
        assert unit.ratios == [0.0, 0.5]
        assert unit.accuracy[0] == sens.dense_accuracy, unit.name
        assert unit.loss[0] == pytest.approx(sens.dense_loss, rel=1e-5)
    # the weights were restored between ratios (pruning fc2 at 50% would show otherwise) and the original is untouched
    for key, value in cnn.module.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert sens.complete and sens.settings["samples"] == SAMPLES


def test_curves_fall_with_the_ratio_and_match_an_independent_prune(cnn, demo_data, cnn_scan):
    conv1 = cnn_scan.unit("conv1")
    assert conv1.ratios == list(DEFAULT_RATIOS)
    assert conv1.accuracy[-1] < conv1.accuracy[0] - 0.2  # 90% of the first layer's weights cannot go unnoticed
    # the 50% point equals pruning conv1 alone with torch's own L1 unstructured pruning
    work = copy.deepcopy(cnn.module)
    torch_prune.l1_unstructured(work.conv1, "weight", amount=0.5)
    expected = accuracy(work, demo_data.x_test[:SAMPLES], demo_data.y_test[:SAMPLES])
    assert conv1.accuracy[conv1.ratios.index(0.5)] == pytest.approx(expected, abs=1.5 / SAMPLES)


def _redundant_model() -> tuple[LoadedModel, Dataset]:
    """An MLP on separable data: 'wide' (layer 1) holds each of its 4 units 8 times over; 'narrow' (layer 0) has
    no spare unit. All rows of a layer tie in L1, so L1 channel pruning removes the first ones."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(600, 8, generator=g)
    y = (x[:, :4].sum(1) > 0).long() + 2 * (x[:, 4:].sum(1) > 0).long()
    narrow = nn.Linear(8, 8)
    wide = nn.Linear(8, 32)
    head = nn.Linear(32, 4)
    with torch.no_grad():
        narrow.weight.copy_(torch.eye(8) * 3)
        narrow.bias.zero_()
        # 8 copies of [+s1, -s1, +s2, -s2] (s1, s2 = sums of the two halves): any one copy is enough
        rows = []
        for _ in range(8):
            rows += [torch.cat([torch.ones(4), torch.zeros(4)]), -torch.cat([torch.ones(4), torch.zeros(4)]),
                     torch.cat([torch.zeros(4), torch.ones(4)]), -torch.cat([torch.zeros(4), torch.ones(4)])]
        wide.weight.copy_(torch.stack(rows) / 3)
        wide.bias.zero_()
        head.weight.zero_()
        head.bias.zero_()
        a, na, b, nb = (wide.weight[:, :4].sum(1) > 0), (wide.weight[:, :4].sum(1) < 0), (wide.weight[:, 4:].sum(1) > 0), (wide.weight[:, 4:].sum(1) < 0)
        for cls in range(4):
            sa = a if cls % 2 else na
            sb = b if cls // 2 else nb
            head.weight[cls] = (sa | sb).float() * 0.3
    module = nn.Sequential(narrow, wide, nn.ReLU(), head).eval()
    data = Dataset("separable", x[:400], y[:400], x[400:], y[400:], [str(i) for i in range(4)], "test")
    return LoadedModel(module, "test:redundant", "module", True, num_classes=4), data


def test_a_layer_made_redundant_comes_out_least_sensitive():
    model, data = _redundant_model()
    assert accuracy(model.module, data.x_test, data.y_test) > 0.95
    sens = scan(model, data, granularity="channel", ratios=[0.25, 0.5, 0.75], latency=False)
    order = sens.least_sensitive()
    assert order[0] == "1", (order, [(u.name, u.accuracy) for u in sens.units])
    wide, narrow = sens.unit("1"), sens.unit("0")
    assert wide.accuracy[-1] == pytest.approx(sens.dense_accuracy, abs=0.02)  # 8 of 32 copies still carry everything
    assert narrow.accuracy[-1] < sens.dense_accuracy - 0.1  # every narrow unit carries a feature of its own


def test_residual_partners_of_resnet20_are_scanned_as_one_group(demo_data):
    model = load_model("demo:resnet20")
    sens = scan(model, demo_data, granularity="channel", ratios=[0.5], samples=100, latency=False,
                layers=["layer3.0.conv2", "layer3.1.conv1"])
    by_name = {u.name: u for u in sens.units}
    assert set(by_name) == {"layer3.0.conv2", "layer3.1.conv1"}
    group = by_name["layer3.0.conv2"]
    assert set(group.layers) == {"layer3.0.conv2", "layer3.0.shortcut.0", "layer3.1.conv2", "layer3.2.conv2"}
    assert {"layer3.1.conv1", "layer3.2.conv1", "fc"} <= set(group.consumers)
    assert group.kept_channels == [32] and group.channels == 64
    assert by_name["layer3.1.conv1"].layers == ["layer3.1.conv1"]
    # the emulated removal equals pruning the group physically with the pipeline
    rec = recommend(sens, "sparsity", 0.0)
    measured = apply_and_measure(model, demo_data, rec.recipe.replace(layers={m: 0.5 for m in group.layers}), samples=100)
    assert measured.accuracy == pytest.approx(group.accuracy[0], abs=1.5 / 100)


def test_channel_latency_is_measured_against_kept_channels(cnn, demo_data):
    sens = scan(cnn, demo_data, granularity="channel", ratios=[0.5], samples=50, latency_runs=1, layers=["conv1"])
    (unit,) = sens.units
    lat = unit.latency
    assert lat is not None and unit.channels == 32
    assert {8, 16, 24, 32} <= set(lat["kept"]) and len(lat["kept"]) == len(lat["ms"])
    assert all(ms > 0 for ms in lat["ms"]) and "batch" in lat["how"]


def test_channel_latency_is_timed_interleaved_with_its_spread_and_noisy_points_drawn_so(cnn, demo_data, monkeypatch):
    from pruner_core.present.sensitivity_figures import channel_latency as latency_figure
    from pruner_core.sensitivity import latency as latency_module

    order = []  # the kept-channel count of each layer call, in the order the timing made them
    real = latency_module._resized

    def recording(mod, out=None, inp=None):
        made = real(mod, out=out, inp=inp)
        made.register_forward_pre_hook(lambda m, a, k=out or inp: order.append(k))
        return made

    monkeypatch.setattr(latency_module, "_resized", recording)
    sens = scan(cnn, demo_data, granularity="channel", ratios=[0.5], samples=50, latency_runs=4, layers=["conv1"])
    lat = sens.units[0].latency
    points = len(lat["kept"])
    members = len(order) // (5 * points)  # layers timed per count: conv1 and its reader(s)
    rounds = [order[i * points * members:(i + 1) * points * members:members] for i in range(5)]
    assert all(r == rounds[0] for r in rounds)  # every round times every count once, in the same turn
    assert len(lat["p25_ms"]) == len(lat["p75_ms"]) == len(lat["noisy"]) == points
    assert all(lo <= m <= hi for m, lo, hi in zip(lat["ms"], lat["p25_ms"], lat["p75_ms"], strict=True))
    assert "in turn" in lat["how"] and "noisy" in lat["how"]
    fig = latency_figure(sens)
    assert fig.data[0].error_y.array is not None
    lat["noisy"][0] = True
    fig = latency_figure(sens)
    assert fig.data[0].marker.symbol[0] == "circle-open" and "noisy" in fig.layout.title.text


@pytest.mark.parametrize(("target", "value"), [("sparsity", 0.5), ("sparsity", 0.7), ("flops", 0.4)])
def test_recommended_recipes_meet_their_targets(cnn, demo_data, cnn_scan, target, value):
    rec = recommend(cnn_scan, target, value)
    assert "fc2" not in rec.recipe.layers  # the output layer is excluded by default, as in a recipe
    measured = apply_and_measure(cnn, demo_data, rec.recipe, samples=SAMPLES)
    got = measured.param_sparsity if target == "sparsity" else measured.flop_reduction
    assert value - 1e-4 <= got <= value + 0.01  # met, and closely: not overshot
    assert got == pytest.approx(rec.predicted["param_sparsity" if target == "sparsity" else "flop_reduction"], abs=1e-3)
    uniform = apply_and_measure(cnn, demo_data, rec.uniform["recipe"], samples=SAMPLES)
    assert (uniform.param_sparsity if target == "sparsity" else uniform.flop_reduction) >= value - 1e-4


@pytest.mark.parametrize("value", [0.3, 0.5, 0.7])
def test_a_coarse_scan_is_not_overshot_where_several_layers_lose_nothing(cnn, demo_data, value):
    coarse = scan(cnn, demo_data, ratios=[0.3, 0.6, 0.9], samples=300)
    rec = recommend(coarse, "sparsity", value)
    assert value - 1e-4 <= rec.predicted["param_sparsity"] <= value + 0.01
    assert apply_and_measure(cnn, demo_data, rec.recipe, samples=300).param_sparsity == pytest.approx(
        rec.predicted["param_sparsity"], abs=1e-3)


def test_max_drop_target_keeps_the_predicted_drop_within_it(cnn_scan):
    rec = recommend(cnn_scan, "drop", 0.01)
    assert rec.predicted["accuracy_drop"] <= 0.01 + 1e-9
    assert rec.predicted["param_sparsity"] >= rec.uniform["predicted"]["param_sparsity"]


def test_recommended_beats_uniform_at_70_percent_on_mnist_cnn(cnn, demo_data, cnn_scan):
    rec = recommend(cnn_scan, "sparsity", 0.7)
    ours = apply_and_measure(cnn, demo_data, rec.recipe)
    uniform = apply_and_measure(cnn, demo_data, rec.uniform["recipe"])
    print(f"mnist-cnn 70% no fine-tune: recommended {ours.accuracy:.2%}, uniform {uniform.accuracy:.2%}")
    assert ours.param_sparsity >= 0.7 - 1e-4 and uniform.param_sparsity >= 0.7 - 1e-4
    assert ours.accuracy > uniform.accuracy + 0.05
    # sensitive conv1 keeps more than the big, tolerant fc1
    assert rec.ratios["conv1"] < rec.ratios["fc1"]


def test_channel_recommendation_meets_sparsity_when_applied(cnn, demo_data):
    sens = scan(cnn, demo_data, granularity="channel", samples=100, latency=False)
    rec = recommend(sens, "sparsity", 0.5)
    measured = apply_and_measure(cnn, demo_data, rec.recipe, samples=100)
    assert measured.param_sparsity >= 0.5 - 1e-4
    assert measured.param_sparsity == pytest.approx(rec.predicted["param_sparsity"], abs=1e-3)


@pytest.mark.parametrize(
    ("target", "value", "fragments"),
    [
        ("sparsity", 0.95, ["cannot be met", "closest achievable"]),
        ("flops", 0.99, ["cannot be met", "closest achievable"]),
        ("drop", -0.01, ["cannot be met", "closest achievable is 0"]),
        ("sparsity", 1.5, ["[0, 1)", "1.5"]),
    ],
)
def test_impossible_targets_name_the_closest_achievable(cnn_scan, target, value, fragments):
    with pytest.raises(TargetError) as info:
        recommend(cnn_scan, target, value)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_the_closest_achievable_sparsity_is_achievable(cnn_scan):
    with pytest.raises(TargetError) as info:
        recommend(cnn_scan, "sparsity", 0.99)
    closest = float(str(info.value).split("closest achievable is ")[1].split()[0])
    assert recommend(cnn_scan, "sparsity", closest).predicted["param_sparsity"] >= closest - 1e-9


def test_unknown_target_is_refused(cnn_scan):
    with pytest.raises(SpecError, match="unknown target 'size'.*sparsity"):
        recommend(cnn_scan, "size", 0.5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ratios": []}, "empty"),
        ({"ratios": [0.5, 1.0]}, r"\[0, 1\); got 1.0"),
        ({"ratios": [-0.1]}, "got -0.1"),
        ({"granularity": "nm"}, "no ratio to scan"),
        ({"granularity": "kernel", "criterion": "apoz"}, "criterion 'apoz' cannot prune at granularity 'kernel'"),
        ({"layers": ["nope"]}, "no prunable layer named 'nope'"),
        ({"samples": 0}, "samples must be"),
    ],
)
def test_bad_scan_input_is_refused_naming_the_value(cnn, demo_data, kwargs, match):
    with pytest.raises(SpecError, match=match):
        scan(cnn, demo_data, **kwargs)


def test_a_cancelled_scan_keeps_its_partial_curves_marked_incomplete(cnn, demo_data):
    cancel = threading.Event()
    seen = []

    def callback(p):
        seen.append(p)
        if p.done == 11:  # two units and two ratios into the third
            cancel.set()

    sens = scan(cnn, demo_data, samples=100, callback=callback, cancel=cancel)
    assert not sens.complete
    assert [len(u.ratios) for u in sens.units] == [9, 2]
    assert sens.units[1].ratios == [0.1, 0.2] and len(sens.units[1].accuracy) == 2
    assert seen[-1].done == 11 and seen[-1].total == 36 and seen[-1].eta_s > 0 and seen[-1].current == "conv2"
    with pytest.raises(SpecError, match="cancelled"):
        recommend(sens, "sparsity", 0.5)
    restored = Sensitivity.from_json(json.loads(json.dumps(sens.to_json())))
    assert not restored.complete and restored.units[1].accuracy == sens.units[1].accuracy


def test_scan_round_trips_through_json_and_caches_by_model_data_and_settings(cnn, demo_data, tmp_path):
    settings = {"samples": 50, "ratios": [0.5]}
    first = cached_scan(cnn, demo_data, cache_dir=tmp_path, **settings)
    (stored,) = tmp_path.glob("*.json")
    data = json.loads(stored.read_text())
    assert {"ratios", "accuracy", "loss", "layers", "name"} <= set(data["units"][0])
    again = cached_scan(cnn, demo_data, cache_dir=tmp_path, **settings)
    assert again.to_json() == first.to_json()
    assert cache_key(cnn, demo_data, settings) != cache_key(cnn, demo_data, {**settings, "criterion": "l2"})
    other = copy.deepcopy(cnn)
    with torch.no_grad():
        other.module.fc2.bias.add_(1)
    assert cache_key(other, demo_data, settings) != cache_key(cnn, demo_data, settings)
    with pytest.raises(SpecError, match="format version"):
        Sensitivity.from_json({"version": 99})


def test_resnet20_scan_with_its_shortcuts_equals_pruning_each_layer_alone(demo_data):
    """The scan's speed-ups (BatchNorm folded, one shared dense forward cut per layer, ReLUs in place) must not
    change what it measures: each point equals pruning that layer alone in a fresh copy and evaluating it."""
    model = load_model("demo:resnet20")
    names = ["conv1", "layer1.0.conv2", "layer2.0.shortcut.0", "layer2.1.conv1", "layer3.2.conv2"]
    got = scan(model, demo_data, ratios=[0.5, 0.8], samples=200, layers=names)
    assert [u.name for u in got.units] == names
    for unit in got.units:
        for ratio, acc, loss in zip(unit.ratios, unit.accuracy, unit.loss, strict=True):
            alone = apply_and_measure(model, demo_data, Recipe.from_dict(
                {"sparsity": 0.0, "layers": {unit.name: ratio}, "finetune": {"epochs": 0}}), samples=200)
            assert abs(acc - alone.accuracy) <= 1 / 200, (unit.name, ratio)
            assert loss == pytest.approx(alone.loss, rel=1e-3), (unit.name, ratio)


def test_global_baseline_is_the_one_threshold_recipe_for_sparsity_targets_only(cnn, demo_data, cnn_scan):
    from pruner_core.sensitivity.allocate import global_baseline

    recipe = global_baseline(cnn_scan, "sparsity", 0.7)
    assert (recipe.scope, recipe.granularity, recipe.criterion) == ("global", "unstructured", "l1")
    assert 0.7 < recipe.sparsity < 0.71  # of the layers it prunes: the output layer (640 weights) is left alone
    measured = apply_and_measure(cnn, demo_data, recipe, samples=SAMPLES)
    assert 0.7 <= measured.param_sparsity <= 0.7 + 1e-3  # of every prunable layer: the target
    assert global_baseline(cnn_scan, "flops", 0.5) is None


def test_the_measured_search_starts_from_the_global_threshold_and_holds_the_target(cnn, demo_data, cnn_scan):
    from pruner_core.sensitivity.measured import measured_search

    rec = recommend(cnn_scan, "sparsity", 0.7)
    seen = []
    got = measured_search(cnn, demo_data, cnn_scan, rec, samples=SAMPLES, budget=12,
                          callback=lambda done, total, what: seen.append((done, total)))
    names = [c["name"] for c in got.candidates]
    assert names[:2] == ["global threshold", "curves"] and len(names) == 5  # the baseline first: the one to beat
    assert all(abs(c["target"] - 0.7) < 2e-3 for c in got.candidates)  # blends keep the sparsity
    assert all(m["to"] != m["from"] for m in got.moves) and got.evaluations <= 12
    assert seen == [(i, 12) for i in range(1, got.evaluations + 1)]
    assert "training images" in got.search and f"first {SAMPLES} test images" in got.search
    predicted = got.recommendation.predicted
    assert predicted["measured_on"] == SAMPLES and 0 <= predicted["accuracy"] <= 1
    measured = apply_and_measure(cnn, demo_data, got.recommendation.recipe, samples=SAMPLES)  # the same images
    assert predicted["accuracy"] == pytest.approx(measured.accuracy, abs=1e-9)
    assert measured.param_sparsity == pytest.approx(0.7, abs=2e-3)
    flops = measured_search(cnn, demo_data, cnn_scan, recommend(cnn_scan, "flops", 0.4), samples=100, budget=4)
    assert [c["name"] for c in flops.candidates] == ["curves"]  # no comparable global baseline for a FLOP target
    with pytest.raises(SpecError, match="sparsity or FLOP target"):
        measured_search(cnn, demo_data, cnn_scan, recommend(cnn_scan, "drop", 0.02))


def test_a_move_is_kept_only_when_measurably_better():
    from pruner_core.sensitivity.measured import Outcome

    def outcome(right: list[int], loss: float = 0.5) -> Outcome:
        correct = torch.tensor([bool(r) for r in right])
        return Outcome(correct, float(correct.float().mean()), loss)

    base = outcome([1] * 90 + [0] * 10)
    assert not outcome([1] * 91 + [0] * 9).beats(base)  # one image more: within the noise
    assert outcome([1] * 100).beats(base)  # ten more, none fewer: 10 >= 2 x sqrt(10)
    assert not outcome([0] * 5 + [1] * 95).beats(base)  # 10 won, 5 lost: 5 < 2 x sqrt(15)
    assert outcome([1] * 90 + [0] * 10, loss=0.4).beats(base)  # right on the same images: the lower loss
    assert not outcome([1] * 90 + [0] * 10, loss=0.49995).beats(base)


def test_a_prediction_compounds_the_drops_and_never_leaves_zero_to_dense():
    """A 21-layer channel scan once predicted "uniform -98.3%": single-layer drops summed past zero."""
    from pruner_core.sensitivity.predict import Predictor
    from pruner_core.sensitivity.result import Sensitivity, UnitCurve

    units = [UnitCurve(f"l{i}", [f"l{i}"], 100, 10, ratios=[0.5, 0.9], accuracy=[0.5, 0.1], loss=[1.0, 2.0])
             for i in range(21)]
    sens = Sensitivity("m", "fp", "d", {"granularity": "unstructured"}, 0.99, 0.1, units,
                       {f"l{i}": {"weights": 100, "groups": 100, "flops": 10} for i in range(21)}, True, 1.0)
    model = Predictor(sens, units)
    one = model.predict({"l0": 0.5})
    assert one["accuracy"] == pytest.approx(0.5) and one["accuracy_drop"] == pytest.approx(0.49)
    every = model.predict({u.name: 0.9 for u in units})
    assert 0 <= every["accuracy"] <= 0.99 and every["accuracy"] == pytest.approx(0.99 * (0.1 / 0.99) ** 21)
    two = model.predict({"l0": 0.5, "l1": 0.5})  # half of what one left
    assert two["accuracy"] == pytest.approx(0.99 * (0.5 / 0.99) ** 2)


@pytest.mark.parametrize(("spec", "granularity"), [("demo:mnist-cnn", "unstructured"), ("demo:resnet20", "channel")])
def test_the_estimate_counts_the_units_a_scan_runs_and_leaves_the_model_alone(spec, granularity, demo_data):
    from pruner_core.sensitivity.scan import estimate

    model = load_model(spec)
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    units, evaluations, seconds = estimate(model, demo_data, granularity=granularity, ratios=[0.3, 0.6], samples=100)
    scanned = scan(model, demo_data, granularity=granularity, ratios=[0.3, 0.6], samples=100, latency=False)
    assert units == len(scanned.units) and evaluations == 2 * units and seconds > 0
    assert all(torch.equal(before[k], v) for k, v in model.module.state_dict().items())
    assert all(p.is_contiguous() for p in model.module.parameters())  # not left in channels_last


def test_an_evaluation_is_clear_once_its_drop_is_known_or_it_is_at_chance():
    from pruner_core.sensitivity.adaptive import Rule

    dense = torch.ones(1000, dtype=torch.bool)
    rule = Rule.for_labels(dense, torch.arange(1000) % 10)
    assert rule.chance == pytest.approx(0.1)
    assert rule(torch.ones(250, dtype=torch.bool))  # no disagreement in 250: the drop is within 1 point
    assert not rule(torch.ones(100, dtype=torch.bool))  # too few to say
    some = torch.ones(250, dtype=torch.bool)
    some[:10] = False
    assert not rule(some)  # 10 disagreements: a drop near 4 points, not yet known within 1
    chance = torch.zeros(250, dtype=torch.bool)
    chance[:25] = True
    assert rule.collapsed(chance) and rule(chance)  # 10% right on ten classes
    assert not rule.collapsed(torch.cat([torch.ones(100), torch.zeros(150)]).bool())  # 40%: no collapse


def test_an_adaptive_scan_ranks_the_units_as_the_full_one_and_says_what_each_cell_used(cnn, demo_data):
    full = scan(cnn, demo_data, samples=1000, adaptive=False)
    quick = scan(cnn, demo_data, samples=1000)
    assert quick.least_sensitive() == full.least_sensitive()
    assert all(s == 1000 for u in full.units for s in u.samples)
    used = [s for u in quick.units for s in u.samples]
    assert sum(used) < 0.75 * sum(s for u in full.units for s in u.samples) and max(used) == 1000
    for u, f in zip(quick.units, full.units, strict=True):
        for i, s in enumerate(u.samples):
            if s == 0:  # past a collapse: the collapsed figure carried on, never a measurement of its own
                assert 0 in u.samples[: i + 1] and u.accuracy[i] == u.accuracy[u.samples.index(0) - 1]
            else:
                assert abs(u.accuracy[i] - f.accuracy[i]) <= 0.03  # within the tolerance's reach
    assert quick.settings["adaptive"] and "adaptive" in quick.how
    assert Sensitivity.from_json(json.loads(json.dumps(quick.to_json()))).units[0].samples == quick.units[0].samples
    old = quick.to_json()
    for u in old["units"]:
        del u["samples"]  # a scan saved before adaptive evaluation still loads
    assert Sensitivity.from_json(old).units[0].samples == []
