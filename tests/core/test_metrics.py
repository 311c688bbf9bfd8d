"""Measured vital signs: parameter counts, size on disk, accuracy, latency, and the whole report."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import save
from torch import nn

from pruner_core.errors import CompatibilityError, PrunerError
from pruner_core.io.models import load_model
from pruner_core.measure import metrics
from pruner_core.measure.metrics import VitalSigns, accuracy, count_parameters, measure_latency, size_bytes, vital_signs

from .helpers import tiny_dataset

LENET300_PARAMS = 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
LENET300_FLOPS = 2 * (784 * 300 + 300 * 100 + 100 * 10)


def linear_bn() -> nn.Module:
    """Linear(4, 3) with every weight 1, then BatchNorm1d(3): 21 parameters and 3 buffers' worth of stats."""
    net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(1.0)
    return net.eval()


def test_count_parameters_counts_exact_non_zeros():
    net = linear_bn()
    assert count_parameters(net) == (21, 21)  # buffers (running stats) are not parameters
    with torch.no_grad():
        net[0].weight[0].zero_()  # 4 weights
        net[0].weight[2, 1] = 0  # 1 more
        net[0].bias[1] = 0
    assert count_parameters(net) == (21, 15)


def test_size_bytes_is_a_real_safetensors_serialisation():
    net = linear_bn()
    expected = len(save({k: v.contiguous() for k, v in net.state_dict().items()}))
    assert size_bytes(net) == expected
    with torch.no_grad():
        net[0].weight.zero_()
    assert size_bytes(net) == expected  # dense: zeros still take their bytes


def test_size_bytes_grows_with_parameters():
    sizes = [size_bytes(nn.Linear(n, 3)) for n in (4, 40, 400)]
    assert sizes[0] < sizes[1] < sizes[2]
    assert sizes[2] - sizes[1] == (400 - 40) * 3 * 4  # float32 weights


def test_accuracy_is_the_exact_fraction_of_correct_predictions():
    logits = torch.eye(3)[[0, 1, 2, 0, 1, 2, 0, 1, 2, 0]]  # predicts 0,1,2,0,...
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 2, 0, 1])  # the last three are wrong
    assert accuracy(nn.Identity(), logits, labels, batch_size=3) == 0.7  # batches of 3, 3, 3 and 1
    assert accuracy(nn.Identity(), logits, labels) == 0.7
    assert math.isnan(accuracy(nn.Identity(), logits[:0], labels[:0]))  # no samples: no accuracy


class CountingNet(nn.Module):
    """Records the batches it is called with."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(tuple(x.shape))
        return x.flatten(1).sum(1, keepdim=True)


def test_measure_latency_runs_as_asked_and_says_how():
    net = CountingNet()
    lat = measure_latency(net, (3, 4), 5, runs=4, warmup=2)
    assert net.seen == [(5, 3, 4)] * 6  # 2 warm-up + 4 timed
    assert (lat.batch, lat.runs, lat.warmup, lat.threads) == (5, 4, 2, torch.get_num_threads())
    assert 0 < lat.min_ms <= lat.p25_ms <= lat.median_ms <= lat.p75_ms
    assert "batch 5" in lat.label and "median of 4 runs" in lat.label and "2 warm-up" in lat.label
    assert lat.device.startswith("CPU") and lat.runtime.startswith("PyTorch")
    d = lat.to_dict()
    assert d["label"] == lat.label and d["median_ms"] == lat.median_ms
    json.dumps(d)


def fake_clock(durations_ms: list[float]):
    """A perf_counter that makes the i-th timed run last durations_ms[i] (warm-up is not timed)."""
    ticks = []
    t = 100.0
    for d in durations_ms:
        ticks += [t, t + d / 1000]
        t += 1
    it = iter(ticks)
    return lambda: next(it)


@pytest.mark.parametrize(
    "durations",
    [
        [5.0],
        [1.0, 3.0],
        [1.0, 2.0, 3.0],
        [4.0, 1.0, 3.0, 2.0],
        [1.0, 1.0, 1.0, 10.0, 1.0],
    ],
    ids=["1 run", "2 runs", "3 runs", "4 runs", "outlier"],
)
def test_latency_quartiles_lie_within_the_measured_times(monkeypatch, durations):
    monkeypatch.setattr(metrics.time, "perf_counter", fake_clock(durations))
    lat = measure_latency(nn.Identity(), (2,), 1, runs=len(durations), warmup=0)
    ordered = sorted(durations)
    median = (ordered[(len(ordered) - 1) // 2] + ordered[len(ordered) // 2]) / 2
    assert lat.median_ms == pytest.approx(median)
    assert lat.min_ms == pytest.approx(ordered[0])
    assert ordered[0] - 1e-9 <= lat.p25_ms <= lat.median_ms <= lat.p75_ms <= ordered[-1] + 1e-9


@pytest.mark.parametrize(("runs", "warmup"), [(0, 1), (-3, 1), (5, -1)])
def test_measure_latency_refuses_impossible_counts(runs, warmup):
    with pytest.raises(ValueError, match=rf"got runs={runs}, warmup={warmup}"):
        measure_latency(nn.Identity(), (2,), 1, runs=runs, warmup=warmup)


@pytest.fixture(scope="module")
def lenet300_signs(demo_data):
    model = load_model("demo:lenet300")
    fingerprint = model.fingerprint()
    signs = vital_signs(model, demo_data, latency_runs=(3, 2), warmup=1)
    assert model.fingerprint() == fingerprint  # measuring does not change the model
    return model, signs


def test_vital_signs_of_lenet300(lenet300_signs, demo_data):
    model, typed = lenet300_signs
    signs = typed.to_json()  # what `pruner info --json` writes and a run's metrics.json holds
    assert signs["model"] == "demo:lenet300" and signs["format"] == "demo" and signs["architecture"] == "lenet300"
    assert signs["data"] == demo_data.summary()
    assert signs["params"] == LENET300_PARAMS
    assert signs["nonzero_params"] == count_parameters(model.module)[1]
    assert signs["sparsity"] == pytest.approx(1 - signs["nonzero_params"] / LENET300_PARAMS)
    assert signs["flops"] == LENET300_FLOPS
    assert signs["size_bytes"] == size_bytes(model.module) > 4 * LENET300_PARAMS
    assert signs["accuracy"] == model.card["test_accuracy"] == signs["card_accuracy"]
    assert set(signs["latency_ms"]) == {"batch1", "batch64"}
    for key, batch, runs in (("batch1", 1, 3), ("batch64", 64, 2)):
        lat = signs["latency"][key]
        assert (lat["batch"], lat["runs"], lat["warmup"]) == (batch, runs, 1)
        assert signs["latency_ms"][key] == lat["median_ms"] > 0
    assert set(signs["how"]) == {"flops", "size_bytes", "accuracy", "latency", "device"}
    assert "1,000 test samples of demo:mnist5k" in signs["how"]["accuracy"]


def test_vital_signs_layers(lenet300_signs):
    _, typed = lenet300_signs
    signs = typed.to_json()
    assert [(layer["name"], layer["type"], layer["shape"]) for layer in signs["layers"]] == [
        ("fc1", "Linear", [300, 784]), ("fc2", "Linear", [100, 300]), ("fc3", "Linear", [10, 100])
    ]
    assert [layer["params"] for layer in signs["layers"]] == [235500, 30100, 1010]
    assert [layer["flops"] for layer in signs["layers"]] == [2 * 784 * 300, 2 * 300 * 100, 2 * 100 * 10]
    assert sum(layer["params"] for layer in signs["layers"]) == signs["params"]


def test_vital_signs_is_plain_json(lenet300_signs):
    _, typed = lenet300_signs
    signs = typed.to_json()
    assert json.loads(json.dumps(signs, allow_nan=False)) == signs
    assert VitalSigns.from_json(json.loads(json.dumps(signs))) == typed  # typed, one to_json / from_json pair
    assert typed.latency_ms == {k: lat.median_ms for k, lat in typed.latency.items()}
    assert typed.layers[0].name == "fc1" and typed.layers[0].group == 0
    with pytest.raises(PrunerError, match="vital signs are incomplete or malformed"):
        VitalSigns.from_json({k: v for k, v in signs.items() if k != "flops"})


def test_vital_signs_refuses_data_that_does_not_fit():
    with pytest.raises(CompatibilityError, match=r"shape \(3, 8, 8\) but model 'demo:lenet300' expects \(1, 28, 28\)"):
        vital_signs(load_model("demo:lenet300"), tiny_dataset(shape=(3, 8, 8)), latency_runs=(1, 1))



def test_vital_signs_report_each_step_before_it_with_a_growing_fraction(demo_data):
    seen = []
    vital_signs(load_model("demo:mnist-cnn"), demo_data, latency_runs=(3, 2), warmup=1,
                progress=lambda fraction, what: seen.append((fraction, what)))
    assert [what for _, what in seen] == ["counting FLOPs and coupled layers", "timing batch 1 (3 runs)",
                                          "timing batch 64 (2 runs)", f"accuracy on {len(demo_data.y_test):,} test samples"]
    fractions = [f for f, _ in seen]
    assert fractions[0] == 0 and fractions == sorted(fractions) and fractions[-1] < 1
    # each step weighs the samples it runs: 64 + 4 x 10 + 3 x 64 + the test samples
    total = 64 + 40 + 192 + len(demo_data.y_test)
    assert fractions[3] == pytest.approx((64 + 40 + 192) / total)
