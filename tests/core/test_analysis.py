"""Redundancy signals checked against independent computations on nets whose numbers the test controls."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pruner_core.io.archs import ARCHITECTURES, ResNet20
from pruner_core.io.data import Dataset
from pruner_core.io.models import LoadedModel
from pruner_core.measure.analysis import analyze, weight_stats


def loaded(module: nn.Module, eager: bool = True) -> LoadedModel:
    return LoadedModel(module.eval(), "test", "factory" if eager else "torchscript", eager)


def dataset(x: torch.Tensor) -> Dataset:
    y = torch.zeros(len(x), dtype=torch.long)
    return Dataset("test", x, y, x, y, ["0"])


class Controlled(nn.Module):
    """fc: channel 0 is always positive, channel 1 always negative, channel 2 has the input's sign."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(1, 3)
        self.head = nn.Linear(3, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[0.0], [0.0], [1.0]]))
            self.fc.bias.copy_(torch.tensor([1.0, -1.0, 0.0]))

    def forward(self, x):
        return self.head(torch.relu(self.fc(x)))


def test_apoz_counts_zeros_after_the_following_relu():
    x = torch.tensor([[1.0], [2.0], [-1.0], [-3.0]])  # half positive
    result = analyze(loaded(Controlled()), dataset(x), samples=4, batch_size=3)
    fc = result.layer("fc")
    assert fc.apoz == pytest.approx([0.0, 1.0, 0.5])
    assert fc.mean_activation == pytest.approx([1.0, 0.0, 0.75])
    head = result.layer("head")
    assert head.apoz is None and head.activation.startswith("n/a")  # nothing follows the classifier


class ConvBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(2)
        self.act = nn.ReLU()
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
            self.bn.weight.copy_(torch.tensor([0.5, -2.0]))

    def forward(self, x):
        return self.act(self.bn(self.conv(x))).mean((2, 3))


def test_apoz_over_spatial_positions_and_bn_scale_is_abs_gamma():
    x = torch.tensor([[[[1.0, -1.0], [2.0, 3.0]]]])  # 3 of 4 positions positive
    result = analyze(loaded(ConvBN()), dataset(x), samples=1)
    conv = result.layer("conv")
    # channel 0: +x * 0.5 > 0 where x > 0 -> 1 zero of 4; channel 1: -x * -2 > 0 where x > 0 -> 1 zero of 4
    assert conv.apoz == pytest.approx([0.25, 0.25])
    assert conv.bn == "bn" and conv.bn_scale == pytest.approx([0.5, 2.0])


@pytest.mark.parametrize("shape", [(6, 8), (6, 4, 3, 3), (4, 3, 5)])
def test_weight_norms_match_torch_at_every_granularity(shape):
    torch.manual_seed(0)
    w = torch.randn(shape)
    w[0, 0] = 0.0
    kind = {2: "Linear", 3: "Conv1d", 4: "Conv2d"}[len(shape)]
    stats = weight_stats("l", kind, w)
    dims = tuple(range(1, w.dim()))
    assert stats.channel_l1 == pytest.approx(torch.linalg.vector_norm(w, ord=1, dim=dims).tolist(), rel=1e-5)
    assert stats.channel_l2 == pytest.approx(torch.linalg.vector_norm(w, dim=dims).tolist(), rel=1e-5)
    kernel = w.reshape(shape[0], shape[1], -1)
    np.testing.assert_allclose(stats.kernel_l2, torch.linalg.vector_norm(kernel, dim=2).numpy(), rtol=1e-5)
    np.testing.assert_allclose(stats.kernel_l1, kernel.abs().sum(2).numpy(), rtol=1e-5)
    assert stats.sparsity == pytest.approx((w == 0).sum().item() / w.numel())
    assert sum(stats.hist_counts) == w.numel()


def test_nm_groups_are_m_consecutive_input_weights():
    w = torch.arange(2 * 8, dtype=torch.float32).reshape(2, 8) - 5
    stats = weight_stats("fc", "Linear", w)
    expected = w.abs().reshape(2, 2, 4).sum(-1)
    np.testing.assert_allclose(stats.nm_l1, expected.numpy())
    assert weight_stats("fc", "Linear", torch.ones(2, 6)).nm_l1 is None  # 6 inputs: no groups of 4


def test_residual_partners_read_the_relu_after_the_addition():
    torch.manual_seed(0)
    model = ResNet20().eval()
    result = analyze(loaded(model), dataset(torch.rand(8, 1, 28, 28)), samples=8)
    conv2, shortcut = result.layer("layer2.0.conv2"), result.layer("layer2.0.shortcut.0")
    assert conv2.activation == shortcut.activation == "layer2.0.relu2"
    assert conv2.apoz == shortcut.apoz
    assert conv2.bn == "layer2.0.bn2" and shortcut.bn == "layer2.0.shortcut.1"
    assert result.layer("layer2.0.conv1").activation == "layer2.0.relu1"


class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
            return torch.relu(self.fc(x))
        return self.fc(x)


def test_untraceable_model_gets_weights_only_and_says_why():
    result = analyze(loaded(Branchy()), dataset(torch.rand(4, 2)), samples=4)
    assert result.notes and "torch.fx" in result.notes[0]
    assert result.layer("fc").apoz is None and result.layer("fc").channel_l2


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_analysis_leaves_the_model_untouched(name, demo_data):
    torch.manual_seed(0)
    module = ARCHITECTURES[name].build().eval()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    result = analyze(loaded(module), demo_data, samples=16)
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())
    assert not module.training
    assert [la.name for la in result.layers][-1] in ("fc3", "fc2", "fc")
    assert result.layers[-1].apoz is None


def test_samples_must_be_positive(demo_data):
    with pytest.raises(ValueError, match="samples must be at least 1; got 0"):
        analyze(loaded(ARCHITECTURES["lenet300"].build()), demo_data, samples=0)


def test_torchscript_gets_weights_only_and_says_why(demo_data):
    torch.manual_seed(0)
    scripted = torch.jit.script(ARCHITECTURES["lenet300"].build().eval())
    result = analyze(loaded(scripted, eager=False), demo_data, samples=4)
    assert "torchscript program" in result.notes[0]
    assert all(la.apoz is None and la.activation.startswith("n/a") for la in result.layers)
    assert result.layer("fc1").channel_l2


def test_model_in_training_mode_keeps_its_batchnorm_statistics(demo_data):
    torch.manual_seed(0)
    module = ARCHITECTURES["mnist-cnn"].build().train()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    analyze(LoadedModel(module, "test", "factory", True), demo_data, samples=8)
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())
    assert module.training  # the mode is restored


def test_calibration_data_of_wrong_shape_names_both_shapes():
    from pruner_core.errors import CompatibilityError

    rgb = dataset(torch.rand(4, 3, 32, 32))
    model = LoadedModel(ARCHITECTURES["mnist-cnn"].build().eval(), "demo:mnist-cnn", "demo", True, "mnist-cnn", (1, 28, 28), 10)
    with pytest.raises(CompatibilityError, match=r"\(3, 32, 32\).*\(1, 28, 28\)"):
        analyze(model, rgb)


def test_resnet20_groups_in_the_analysis_are_the_residual_stages():
    torch.manual_seed(0)
    result = analyze(loaded(ResNet20().eval()), dataset(torch.rand(8, 1, 28, 28)), samples=8)
    groups = sorted(result.groups().values(), key=len)
    # each stage's block outputs (conv2 of every block) are added together, with the projection shortcut
    # of the stage's first block (and the stem for stage 1, which has no projection): three groups of four
    stages = [
        {"conv1", "layer1.0.conv2", "layer1.1.conv2", "layer1.2.conv2"},
        *[{f"layer{s}.0.shortcut.0"} | {f"layer{s}.{b}.conv2" for b in range(3)} for s in (2, 3)],
    ]
    assert sorted(map(set, groups), key=sorted) == sorted(stages, key=sorted)
    for la in result.layers:  # inner convs stand alone
        if la.name.endswith("conv1") and la.name != "conv1":
            assert la.group not in result.groups()


def test_layer_times_flops_and_params_are_measured(demo_data):
    from pruner_core.graph.flops import layer_flops

    torch.manual_seed(0)
    module = ARCHITECTURES["mnist-cnn"].build().eval()
    result = analyze(loaded(module), demo_data, samples=64)
    _, flops = layer_flops(module, torch.zeros(1, 1, 28, 28))
    assert {la.name: la.flops for la in result.layers} == {k: v for k, v in flops.items() if k in {la.name for la in result.layers}}
    assert result.layer("conv2").params == 64 * 32 * 9 + 64
    shares = [la.time_share for la in result.layers]
    assert all(0 < s < 1 for s in shares) and sum(shares) < 1
    assert result.forward_ms > sum(la.forward_ms for la in result.layers) > 0
    # which layer takes longer is a timing (conv2: 7 M FLOPs, fc2: 2,560): bench/run.py analysis_time_share


def test_a_given_description_is_used_instead_of_describing_again(demo_data, monkeypatch):
    import pruner_core.pruning.describe as describe

    torch.manual_seed(0)
    model = loaded(ResNet20().eval())
    layers = describe.describe_model(model, (1, 28, 28))
    fresh = analyze(model, demo_data, samples=8)
    monkeypatch.setattr(describe, "describe_model", lambda *a, **k: pytest.fail("described again"))
    given = analyze(model, demo_data, samples=8, layers=layers)
    assert [(la.group, la.flops, la.params) for la in given.layers] == [(la.group, la.flops, la.params) for la in fresh.layers]


class GroupNormNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.norm, self.fc = nn.Conv2d(1, 8, 3, padding=1), nn.GroupNorm(4, 8), nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.norm(self.conv(x))).mean((2, 3)))


def test_apoz_is_read_through_group_norm_against_the_zeros_counted_directly(demo_data):
    torch.manual_seed(0)
    net = GroupNormNet().eval()
    result = analyze(loaded(net), demo_data, samples=32)
    x = demo_data.x_train[:32]
    with torch.no_grad():
        zeros = (torch.relu(net.norm(net.conv(x))) == 0).float().mean((0, 2, 3))
    conv = result.layer("conv")
    assert conv.apoz == pytest.approx(zeros.tolist(), abs=1e-6)
    # the GroupNorm's |gamma| is shown as what it is, beside BatchNorm's (the bn_scale criterion still reads BN only)
    assert (conv.bn, conv.norm_type) == ("norm", "GroupNorm")
    assert conv.bn_scale == pytest.approx(net.norm.weight.detach().abs().tolist())


class SequenceMLP(nn.Module):
    """Linear layers on [N, T, C] sequences, each followed by another kind of activation, a LayerNorm after the first."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.norm = nn.Linear(6, 8), nn.LayerNorm(8)
        self.fc2, self.fc3 = nn.Linear(8, 8), nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        x = nn.functional.gelu(self.norm(self.fc1(x)))
        x = nn.functional.leaky_relu(self.fc2(x), 0.1)
        x = torch.relu(self.fc3(x))
        return self.head(x.mean(1))


def test_each_activation_gives_its_own_statistic_per_channel_of_a_sequence():
    from pruner_core.graph.fx import NEAR_ZERO

    net = SequenceMLP().eval()
    x = torch.randn(40, 5, 6)
    data = Dataset("seq", x, torch.arange(40) % 3, x, torch.arange(40) % 3, ["0", "1", "2"])
    result = analyze(loaded(net), data, samples=40)
    with torch.no_grad():
        a1 = nn.functional.gelu(net.norm(net.fc1(x)))
        a2 = nn.functional.leaky_relu(net.fc2(a1), 0.1)
        a3 = torch.relu(net.fc3(a2))
    fc1, fc2, fc3 = (result.layer(n) for n in ("fc1", "fc2", "fc3"))
    # GELU has no zeros: the near-zero share under its own name, never an APoZ of 0
    assert fc1.apoz is None and fc1.statistic == f"near-zero share (|a| < {NEAR_ZERO})"
    assert fc1.near_zero == pytest.approx((a1.abs() < NEAR_ZERO).float().mean((0, 1)).tolist(), abs=1e-6)
    assert fc1.mean_activation == pytest.approx(a1.abs().mean((0, 1)).tolist(), rel=1e-5)
    assert (fc1.bn, fc1.norm_type) == ("norm", "LayerNorm")  # its |gamma| beside BatchNorm's
    # LeakyReLU: APoZ counts the negative side; ReLU: exact zeros; both per channel (the last dimension)
    assert fc2.statistic == "APoZ (negative side, a <= 0)"
    assert fc2.apoz == pytest.approx((a2 <= 0).float().mean((0, 1)).tolist(), abs=1e-6)
    assert fc3.statistic == "APoZ (exact zeros)" and len(fc3.apoz) == 8
    assert fc3.apoz == pytest.approx((a3 == 0).float().mean((0, 1)).tolist(), abs=1e-6)


def test_the_apoz_criterion_refuses_a_layer_a_smooth_activation_follows():
    from pruner_core.errors import SpecError
    from pruner_core.pruning.select import scores
    from pruner_core.pruning.target import Target

    net = SequenceMLP().eval()
    x = torch.randn(40, 5, 6)
    data = Dataset("seq", x, torch.arange(40) % 3, x, torch.arange(40) % 3, ["0", "1", "2"])
    with pytest.raises(SpecError, match="layer 'fc1': a smooth activation .* gives no zeros"):
        scores(net, Target("channel", "apoz", ratios={"fc1": 0.5}), data)
    assert scores(net, Target("channel", "apoz", ratios={"fc3": 0.5}), data)["fc3"].shape == (8,)


# --- attention heads ----------------------------------------------------------------------------------------------

def _independent_head_norm(rows: list[torch.Tensor], out: torch.Tensor, h: int, hd: int) -> float:
    """L2 over head ``h``: rows h*hd..(h+1)*hd of each of q, k, v and the output projection's columns."""
    parts = [r[h * hd : (h + 1) * hd].reshape(-1) for r in rows] + [out[:, h * hd : (h + 1) * hd].reshape(-1)]
    return float(torch.cat(parts).pow(2).sum().sqrt())


@pytest.mark.parametrize("arch", ["vit_timm", "vit_mha"])
def test_per_head_magnitude_equals_the_norm_of_its_query_key_value_rows_and_output_columns(arch):
    from tests.zoo.architectures import ZOO

    torch.manual_seed(0)
    spec = ZOO[arch]
    module = spec.build().eval()
    x = torch.randn(40, *spec.input_shape)
    result = analyze(loaded(module), dataset(x), samples=40)
    assert [h.attention for h in result.heads] == ["blocks.0.attn", "blocks.1.attn"]
    for ha in result.heads:
        attn = module.get_submodule(ha.attention)
        fused = attn.in_proj_weight if arch == "vit_mha" else attn.qkv.weight
        out = (attn.out_proj if arch == "vit_mha" else attn.proj).weight
        dim = out.shape[1]
        q, k, v = fused[:dim], fused[dim : 2 * dim], fused[2 * dim :]
        hd = dim // 4
        assert ha.head_dim == hd and len(ha.l2) == 4
        assert ha.l2 == pytest.approx([_independent_head_norm([q, k, v], out, h, hd) for h in range(4)], rel=1e-5)
        l1 = [float(sum(t[h * hd : (h + 1) * hd].abs().sum() for t in (q, k, v)) + out[:, h * hd : (h + 1) * hd].abs().sum())
              for h in range(4)]
        assert ha.l1 == pytest.approx(l1, rel=1e-5)
    if arch == "vit_mha":  # its forward reads out_proj.weight directly: no per-head output to see, said so
        assert all(ha.mean_output is None for ha in result.heads)
    else:  # the mean |input| of proj, head by head, over every calibration sample
        seen = []
        hook = module.blocks[0].attn.proj.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach()))
        with torch.no_grad():
            module(x)
        hook.remove()
        heads_in = seen[0].abs().reshape(-1, 4, 8)
        assert result.heads[0].mean_output == pytest.approx(heads_in.mean((0, 2)).tolist(), rel=1e-4)


def test_hugging_face_heads_get_magnitudes_and_outputs_without_an_fx_trace():
    from tests.zoo.architectures import ZOO

    torch.manual_seed(0)
    spec = ZOO["hf_vit"]
    module = spec.build().eval()
    result = analyze(loaded(module), dataset(torch.randn(16, *spec.input_shape)), samples=16)
    assert len(result.heads) == 2
    for ha in result.heads:
        assert [n.rsplit(".", 1)[1] for n in ha.layers] == ["q_proj", "k_proj", "v_proj", "o_proj"]
        assert len(ha.l2) == len(ha.mean_output) > 1 and all(v > 0 for v in ha.mean_output)


def test_a_model_without_attention_has_no_heads():
    result = analyze(loaded(ARCHITECTURES["mnist-cnn"].build()), dataset(torch.rand(8, 1, 28, 28)), samples=8)
    assert result.heads == []
