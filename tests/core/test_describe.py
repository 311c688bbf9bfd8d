"""Describing a model: prunable layers, parameters, measured FLOPs, coupled groups, prunability."""

from __future__ import annotations

import functools
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pruner_core.graph.flops import layer_flops
from pruner_core.graph.layers import prunable_layers
from pruner_core.io.archs import ARCHITECTURES, LeNet300
from pruner_core.io.models import LoadedModel, load_model
from pruner_core.pruning.describe import LayerInfo, describe_model

JIT_DEPRECATED = pytest.mark.filterwarnings("ignore:.*torch\\.jit.*is deprecated:DeprecationWarning")


def loaded(module: nn.Module, name: str = "test", eager: bool = True) -> LoadedModel:
    return LoadedModel(module.eval(), name, "factory" if eager else "torchscript", eager)


@functools.cache
def arch_and_layers(name: str) -> tuple[nn.Module, tuple[LayerInfo, ...]]:
    """A seeded, randomly initialised demo architecture and its description (described once per session)."""
    torch.manual_seed(0)
    module = ARCHITECTURES[name].build().eval()
    return module, tuple(describe_model(loaded(module, name), ARCHITECTURES[name].input_shape))


class Zoo(nn.Module):
    """One of every kind of layer the describer should or should not call prunable."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1d = nn.Conv1d(2, 4, 3)
        self.bn = nn.BatchNorm1d(4)
        self.conv2d = nn.Conv2d(1, 4, 3, bias=False)
        self.conv3d = nn.Conv3d(1, 2, 3)
        self.deconv = nn.ConvTranspose2d(4, 2, 3)
        self.embedding = nn.Embedding(10, 4)
        self.norm = nn.LayerNorm(4)
        self.head = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout())
        self.fc = nn.Linear(8, 3)


def test_prunable_layers_are_exactly_the_conv_linear_and_embedding_layers():
    found = prunable_layers(Zoo())
    assert [(name, kind) for name, _, kind in found] == [
        ("conv1d", "Conv1d"), ("conv2d", "Conv2d"), ("embedding", "Embedding"), ("head.0", "Linear"), ("fc", "Linear")
    ]


def test_a_bare_linear_is_not_its_own_prunable_layer():
    assert prunable_layers(nn.Linear(3, 2)) == []  # the root has no name to report


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_demo_layers_params_and_flops_match_an_independent_count(name):
    module, layers = arch_and_layers(name)
    expected = [(n, m) for n, m in module.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    assert [layer.name for layer in layers] == [n for n, _ in expected]

    out_shapes: dict[str, tuple[int, ...]] = {}
    handles = [
        m.register_forward_hook(lambda _m, _i, out, n=n: out_shapes.__setitem__(n, tuple(out.shape)))
        for n, m in expected
    ]
    with torch.no_grad():
        module(torch.zeros(1, *ARCHITECTURES[name].input_shape))
    for h in handles:
        h.remove()

    for layer, (n, m) in zip(layers, expected, strict=True):
        assert layer.shape == list(m.weight.shape)
        assert layer.params == m.weight.numel() + (m.bias.numel() if m.bias is not None else 0)
        if isinstance(m, nn.Linear):
            assert layer.type == "Linear"
            assert layer.flops == 2 * m.in_features * m.out_features
        else:
            _, _, h_out, w_out = out_shapes[n]
            kh, kw = m.kernel_size
            assert layer.type == "Conv2d"
            assert layer.flops == 2 * m.out_channels * (m.in_channels // m.groups) * kh * kw * h_out * w_out


def test_lenet300_total_flops_are_its_three_matrix_products():
    total, per_layer = layer_flops(LeNet300().eval(), torch.zeros(1, 1, 28, 28))
    assert per_layer == {"fc1": 2 * 784 * 300, "fc2": 2 * 300 * 100, "fc3": 2 * 100 * 10}
    assert total == sum(per_layer.values())


def test_flops_scale_with_the_batch():
    single, _ = layer_flops(LeNet300().eval(), torch.zeros(1, 1, 28, 28))
    batch, _ = layer_flops(LeNet300().eval(), torch.zeros(8, 1, 28, 28))
    assert batch == 8 * single


def conv_stride_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 5, (3, 2), stride=2, padding=1),  # 9x9 -> 5x5
        nn.ReLU(),
        nn.Conv2d(5, 4, 1),
        nn.Flatten(),
        nn.Linear(4 * 5 * 5, 6),
    )


def test_conv_flops_with_stride_padding_and_rectangular_kernel():
    layers = {layer.name: layer for layer in describe_model(loaded(conv_stride_net()), (3, 9, 9))}
    h_out, w_out = (9 + 2 - 3) // 2 + 1, (9 + 2 - 2) // 2 + 1
    assert layers["0"].flops == 2 * 5 * 3 * 3 * 2 * h_out * w_out
    assert layers["2"].flops == 2 * 4 * 5 * 1 * 1 * 5 * 5
    assert layers["4"].flops == 2 * 100 * 6
    assert layers["0"].params == 5 * 3 * 3 * 2 + 5


def partition(layers) -> set[frozenset[str]]:
    groups: dict[int, set[str]] = {}
    for layer in layers:
        groups.setdefault(layer.group, set()).add(layer.name)
    return {frozenset(g) for g in groups.values()}


def test_resnet20_coupled_groups_follow_the_residual_additions():
    _, layers = arch_and_layers("resnet20")
    names = {layer.name for layer in layers}
    coupled = {
        frozenset({"conv1", *(f"layer1.{b}.conv2" for b in range(3))}),  # identity shortcuts tie stage 1 to the stem
        frozenset({"layer2.0.shortcut.0", *(f"layer2.{b}.conv2" for b in range(3))}),
        frozenset({"layer3.0.shortcut.0", *(f"layer3.{b}.conv2" for b in range(3))}),
    }
    alone = {frozenset({n}) for n in names - set().union(*coupled)}
    assert {f"layer{s}.{b}.conv1" for s in (1, 2, 3) for b in range(3)} | {"fc"} == set().union(*alone)
    assert partition(layers) == coupled | alone


@pytest.mark.parametrize("name", ["lenet300", "mnist-cnn"])
def test_plain_chains_have_no_coupled_layers(name):
    _, layers = arch_and_layers(name)
    assert all(len(group) == 1 for group in partition(layers))


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_only_the_classifier_is_output_and_its_channels_are_kept(name):
    _, layers = arch_and_layers(name)
    assert [layer.is_output for layer in layers] == [False] * (len(layers) - 1) + [True]
    assert "model's outputs" in layers[-1].granularities["channel"]
    assert all(layer.granularities["channel"] is None for layer in layers[:-1])


class Head(nn.Module):
    """fc1 -> relu -> fc2 -> ``tail``: the classic PyTorch MNIST example ends in log_softmax."""

    def __init__(self, tail) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 3)
        self.tail = tail

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.fc2(torch.relu(self.fc1(x))))


@pytest.mark.parametrize(
    "tail",
    [
        pytest.param(lambda t: t, id="nothing"),
        pytest.param(lambda t: F.log_softmax(t, dim=1), id="log_softmax"),
        pytest.param(lambda t: t.softmax(1), id="softmax"),
        pytest.param(lambda t: t.view(t.shape[0], -1), id="view"),
        pytest.param(lambda t: t / 2.0, id="temperature"),
    ],
)
def test_classifier_is_output_whatever_follows_it(tail):
    layers = describe_model(loaded(Head(tail)), (4,))
    assert [(layer.name, layer.is_output) for layer in layers] == [("fc1", False), ("fc2", True)]
    assert layers[1].granularities["channel"] is not None


class TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(4, 8)
        self.head_a = nn.Linear(8, 3)
        self.head_b = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.body(x))
        return self.head_a(h) + self.head_b(h)


def test_summed_heads_are_both_outputs():
    layers = {layer.name: layer for layer in describe_model(loaded(TwoHeads()), (4,))}
    assert layers["head_a"].group == layers["head_b"].group  # the addition ties their channels
    assert layers["head_a"].is_output and layers["head_b"].is_output


class WithUnusedLayer(nn.Module):
    """Like Inception's auxiliary classifier in eval mode: a layer that forward() never calls."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.aux = nn.Linear(8, 3)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def test_layer_that_forward_never_uses_does_not_break_describe():
    layers = {layer.name: layer for layer in describe_model(loaded(WithUnusedLayer()), (4,))}
    assert layers["fc1"].flops == 2 * 4 * 8 and layers["fc2"].flops == 2 * 8 * 3
    assert layers["fc2"].is_output
    if "aux" in layers:  # listing it is fine; it does no work
        assert layers["aux"].flops is None


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_describe_model_leaves_the_model_untouched(name):
    torch.manual_seed(0)
    module = ARCHITECTURES[name].build().eval()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    global_hooks = (
        dict(nn.modules.module._global_forward_hooks), dict(nn.modules.module._global_forward_pre_hooks)
    )
    describe_model(loaded(module, name), ARCHITECTURES[name].input_shape)
    after = module.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    for m in module.modules():
        assert not m.training
        assert not (m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks)
    assert (
        dict(nn.modules.module._global_forward_hooks), dict(nn.modules.module._global_forward_pre_hooks)
    ) == global_hooks


@JIT_DEPRECATED
def test_torchscript_layers_are_found_but_channels_are_refused(tmp_path):
    torch.jit.script(ARCHITECTURES["mnist-cnn"].build().eval()).save(str(tmp_path / "cnn.pt"))
    model = load_model(str(tmp_path / "cnn.pt"))
    layers = describe_model(model, (1, 28, 28))
    assert [(layer.name, layer.type) for layer in layers] == [
        ("conv1", "Conv2d"), ("conv2", "Conv2d"), ("fc1", "Linear"), ("fc2", "Linear")
    ]
    assert [layer.shape for layer in layers] == [[32, 1, 3, 3], [64, 32, 3, 3], [128, 3136], [10, 128]]
    for layer in layers:
        assert "TorchScript" in layer.granularities["channel"]
        assert layer.granularities["unstructured"] is None
    assert len({layer.group for layer in layers}) == len(layers)
    assert layers[-1].is_output


def test_export_program_layers_are_found_but_channels_are_refused(tmp_path):
    module = LeNet300().eval()
    program = torch.export.export(
        module, (torch.zeros(2, 1, 28, 28),), dynamic_shapes={"x": {0: torch.export.Dim("batch")}}
    )
    torch.export.save(program, str(tmp_path / "lenet.pt2"))
    layers = describe_model(load_model(str(tmp_path / "lenet.pt2")), (1, 28, 28))
    assert [(layer.name, layer.type, layer.shape, layer.params) for layer in layers] == [
        ("fc1", "Linear", [300, 784], 300 * 784 + 300),
        ("fc2", "Linear", [100, 300], 100 * 300 + 100),
        ("fc3", "Linear", [10, 100], 10 * 100 + 10),
    ]
    assert all("torch.export" in layer.granularities["channel"] for layer in layers)


def test_layer_info_is_plain_data():
    _, layers = arch_and_layers("lenet300")
    d = layers[0].to_dict()
    assert set(d) == {"name", "type", "shape", "params", "flops", "group", "is_output", "granularities", "constraints",
                      "labels"}
    assert d["labels"] == {"vector": "2-D weight", "kernel": "2-D weight"}  # the short label of each reason
    assert LayerInfo.from_dict(json.loads(json.dumps(d))).reason("kernel").short == "2-D weight"
    assert d["name"] == "fc1" and d["shape"] == [300, 784]


class Untraceable(nn.Module):
    """A small model; the test makes the dependency-graph build fail, as it does for some user models."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def test_untraceable_model_refuses_channel_pruning_with_reason(monkeypatch):
    import torch_pruning as tp

    def fail(*args, **kwargs):
        raise RuntimeError("cannot trace")

    monkeypatch.setattr(tp.DependencyGraph, "build_dependency", fail)
    layers = describe_model(loaded(Untraceable()), (4,))
    assert [layer.group for layer in layers] == [0, 1]
    assert all("could not trace" in layer.granularities["channel"] for layer in layers)
    assert all(layer.granularities["unstructured"] is None for layer in layers)
