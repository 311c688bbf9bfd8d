"""The model's one graph: built once per model and run, read by handler identity, reasons instead of crashes."""

from __future__ import annotations

import copy
import gc

import pytest
import torch
import torch_pruning as tp
from torch import nn

from pruner_core.errors import SpecError
from pruner_core.graph import model_graph
from pruner_core.graph.model_graph import graph_of, live_graph
from pruner_core.io.models import LoadedModel, load_model
from pruner_core.pipeline.run import run_experiment
from pruner_core.pruning.channels import plan_channels, prune_channels
from pruner_core.pruning.describe import describe_model
from pruner_core.pruning.recipe import Recipe
from pruner_core.pruning.target import Target

SHAPE = (1, 28, 28)


@pytest.fixture
def builds(monkeypatch) -> list[int]:
    """Counts torch-pruning dependency-graph builds (a wrapper around torch-pruning's own method)."""
    calls: list[int] = []
    original = tp.DependencyGraph.build_dependency

    def counted(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(tp.DependencyGraph, "build_dependency", counted)
    return calls


@pytest.mark.parametrize("schedule", [{"kind": "oneshot"}, {"kind": "iterative", "steps": 2}])
def test_one_channel_run_builds_the_dependency_graph_once(builds, demo_data, tmp_path, schedule):
    model = load_model("demo:resnet20")  # fresh: nothing cached for it
    recipe = Recipe(granularity="channel", sparsity=0.3, schedule=schedule, finetune={"epochs": 0.02 if schedule["kind"] != "oneshot" else 0})
    run = run_experiment(model, demo_data, recipe, data_spec="demo:mnist5k", root=tmp_path, latency_runs=(2, 1))
    assert run.status == "done" and run.structure
    assert len(builds) == 1  # describe, plan, removal (every round) and the vital signs share it
    assert run.metrics["params"] < sum(p.numel() for p in model.module.parameters())


def test_a_models_graph_is_built_once_and_dropped_with_the_model(builds):
    module = load_model("demo:resnet20").module
    first = graph_of(module, SHAPE)
    assert graph_of(module, SHAPE) is first and len(builds) == 1
    assert describe_model(LoadedModel(module, "m", "demo", True), SHAPE)[0].group == first.group_of["conv1"]
    assert len(builds) == 1
    other = copy.deepcopy(module)
    assert graph_of(other, SHAPE) is not first and len(builds) == 2
    assert graph_of(other, SHAPE).group_of == first.group_of
    count = len(model_graph._cache)
    del module, first, other
    gc.collect()
    assert len(model_graph._cache) <= count - 2  # the cache keeps no module alive


def test_resnet20_groups_are_its_residual_stages_and_outputs_its_classifier():
    graph = graph_of(load_model("demo:resnet20").module, SHAPE)
    assert graph.traced and graph.coupling is None
    stage1 = graph.members("conv1")
    assert set(stage1) == {"conv1", "layer1.0.conv2", "layer1.1.conv2", "layer1.2.conv2"}
    assert graph.outputs == {"fc"}
    assert len(graph.groups()) == 13  # 12 channel groups (as the sensitivity scan counts) and the classifier


def test_consumers_are_the_layers_that_read_the_channels_by_handler_identity():
    module = load_model("demo:mnist-cnn").module
    graph = live_graph(copy.deepcopy(module), SHAPE)
    assert graph.consumers("conv1", [0, 5]) == {"conv2": [0, 5]}
    reads = graph.consumers("conv2", [1])  # conv2 -> pool -> flatten -> fc1: one channel is 7 x 7 features
    assert list(reads) == ["fc1"] and len(reads["fc1"]) == 49
    with pytest.raises(SpecError, match="not bound to a working copy"):
        graph_of(module, SHAPE).consumers("conv1", [0])


def test_removal_through_a_live_graph_keeps_it_usable_for_the_next_round():
    work = copy.deepcopy(load_model("demo:resnet20").module)
    graph = live_graph(work, SHAPE)
    example = torch.zeros(1, *SHAPE)
    target = Target("channel", "l1", ratios={"layer2.0.conv1": 0.5})
    for _ in range(2):
        before = work.get_submodule("layer2.0.conv1").weight.shape[0]
        prune_channels(work, plan_channels(work, target, example, graph=graph), example, graph=graph)
        assert work.get_submodule("layer2.0.conv1").weight.shape[0] == before - before // 2
    assert work(example).shape == (1, 10)


class Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(8, 2)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def test_a_model_torch_pruning_cannot_trace_gets_a_reason_not_a_crash(monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("unsupported op")

    monkeypatch.setattr(tp.DependencyGraph, "build_dependency", fail)
    module = Untraceable()
    graph = graph_of(module, (4,))
    assert not graph.traced
    assert graph.coupling == "torch-pruning could not trace the model (RuntimeError: unsupported op)"
    with pytest.raises(SpecError, match=r"could not trace the model \(RuntimeError: unsupported op\), so coupled"):
        plan_channels(module, Target("channel", "l1", ratios={"fc1": 0.5}), torch.zeros(1, 4))
    with pytest.raises(SpecError, match="could not trace"):
        prune_channels(module, [{"layer": "fc1", "channels": [0]}], torch.zeros(1, 4))


def test_a_torchscript_program_is_not_traced_and_says_why(builds):
    scripted = torch.jit.script(load_model("demo:mnist-cnn").module)
    graph = graph_of(scripted, SHAPE, eager=False)
    assert not builds and graph.coupling.startswith("TorchScript / torch.export programs")


class HardCodedWidth(nn.Module):
    """A forward that hard-codes conv2's width (as user code sometimes does): removing its channels breaks it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2, self.fc = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1), nn.Linear(8, 3)

    def forward(self, x):
        x = self.conv2(torch.relu(self.conv1(x)))
        return self.fc(x.view(x.shape[0], 8, 64).mean(-1))


def test_a_removal_that_breaks_the_forward_is_named_at_once():
    module = HardCodedWidth().eval()
    example = torch.zeros(1, 1, 8, 8)
    prune_channels(module, [{"layer": "conv1", "channels": [0, 1]}], example)  # conv2 reads fewer: still runs
    assert module(example).shape == (1, 3)
    with pytest.raises(SpecError, match=r"pruning layer 'conv2' broke the model's forward: RuntimeError: shape .* is invalid"):
        prune_channels(module, [{"layer": "conv2", "channels": [0, 1]}], example)


class GroupNormBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.gn1 = nn.Conv2d(3, 16, 3, padding=1), nn.GroupNorm(4, 16)
        self.conv2, self.gn2 = nn.Conv2d(16, 12, 3, padding=1), nn.GroupNorm(3, 12)
        self.fc = nn.Linear(12, 5)

    def forward(self, x):
        x = torch.relu(self.gn1(self.conv1(x)))
        return self.fc(torch.relu(self.gn2(self.conv2(x))).mean((2, 3)))


@pytest.mark.parametrize("ratio", [0.1, 0.3, 0.55, 0.9])
def test_group_norm_keeps_whole_groups_when_channels_go(ratio):
    module = GroupNormBlock().eval()
    graph = graph_of(module, (3, 8, 8))
    assert graph.multiple_of == {"conv1": 4, "conv2": 3}
    example = torch.zeros(1, 3, 8, 8)
    plan = plan_channels(module, Target("channel", "l1", ratios={"conv1": ratio, "conv2": ratio}), example)
    prune_channels(module, plan, example)
    assert module.conv1.out_channels % 4 == 0 and module.conv2.out_channels % 3 == 0
    assert module.conv1.out_channels < 16 or ratio < 0.25  # it did remove channels where a whole group could go
    assert module(torch.rand(2, 3, 8, 8)).shape == (2, 5)


def test_the_group_norm_constraint_is_said_before_any_work():
    from pruner_core.present.tables import prunability_legend, prunability_table

    layers = describe_model(LoadedModel(GroupNormBlock().eval(), "gn", "factory", True), (3, 8, 8))
    table = prunability_table(layers).set_index("layer")
    assert table.loc["conv1", "channel"] == "yes: multiples of 4"
    assert table.loc["conv2", "channel"] == "yes: multiples of 3"
    assert "**yes: multiples of 4** (channel): channels kept in multiples of 4 (a GroupNorm's groups) — `conv1`" in (
        prunability_legend(layers))
    assert table.loc["fc", "channel"].startswith("no: ")


class ConcatDepthwise(nn.Module):
    """Two branches concatenated (32 + 16 channels), then a depthwise convolution over the concatenation."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.pw = nn.Conv2d(16, 32, 1)
        self.side = nn.Conv2d(16, 16, 1)
        self.dw = nn.Conv2d(48, 48, 3, padding=1, groups=48)
        self.head = nn.Conv2d(48, 8, 1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.cat([torch.relu(self.pw(x)), torch.relu(self.side(x))], dim=1)
        return self.fc(torch.relu(self.head(torch.relu(self.dw(x)))).mean((2, 3)))


def test_a_depthwise_layer_over_a_concatenation_follows_its_branches():
    module = ConcatDepthwise().eval()
    graph = graph_of(module, (3, 8, 8))
    assert graph.follows == {"dw": ("pw", "side")}
    assert len({graph.group_of[n] for n in ("pw", "side", "dw")}) == 3  # each branch a unit of its own
    layers = {info.name: info for info in describe_model(LoadedModel(module, "cd", "factory", True), (3, 8, 8))}
    assert layers["dw"].granularities["channel"] == (
        "its channels are those of 'pw', 'side' (a depthwise layer over their concatenation): they go when those "
        "layers' channels go")
    with pytest.raises(SpecError, match="layer 'dw' cannot be pruned at granularity 'channel': its channels are those"):
        plan_channels(module, Target("channel", "l1", ratios={"dw": 0.5}), torch.zeros(1, 3, 8, 8))


def test_pruning_the_branches_of_a_concatenation_shrinks_the_depthwise_layer_with_them():
    module = ConcatDepthwise().eval()
    example = torch.zeros(1, 3, 8, 8)
    plan = plan_channels(module, Target("channel", "l1", ratios={"pw": 0.5, "side": 0.25}), example)
    assert {entry["layer"]: len(entry["channels"]) for entry in plan} == {"pw": 16, "side": 4}
    prune_channels(module, plan, example)
    assert (module.pw.out_channels, module.side.out_channels) == (16, 12)
    assert module.dw.in_channels == module.dw.out_channels == module.dw.groups == 28
    assert module(torch.rand(2, 3, 8, 8)).shape == (2, 5)


class HeadAttention(nn.Module):
    """timm's attention with a forward that reshapes by what the heads give (``-1``), so heads can go."""

    def __init__(self, dim: int = 16, num_heads: int = 4) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        attn = ((q @ k.transpose(-2, -1)) * self.head_dim ** -0.5).softmax(-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, -1))


class TinyTransformer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(6, 16)
        self.attn = HeadAttention()
        self.fc1, self.fc2 = nn.Linear(16, 32), nn.Linear(32, 16)
        self.head = nn.Linear(16, 3)

    def forward(self, x):  # x: [N, T, 6]
        x = self.embed(x)
        x = x + self.attn(x)
        x = x + self.fc2(torch.relu(self.fc1(x)))
        return self.head(x.mean(1))


def test_attention_heads_go_whole_and_num_heads_follows():
    module = TinyTransformer().eval()
    with torch.no_grad():  # head 1 (its query, key and value rows) is the weakest by far
        for part in range(3):
            module.attn.qkv.weight[part * 16 + 4: part * 16 + 8] *= 1e-3
    graph = graph_of(module, (5, 6))
    heads = graph.heads["attn.qkv"]
    assert list(graph.heads) == ["attn.qkv"] and (heads.attention, heads.num_heads, heads.head_dim) == ("attn", 4, 4)
    assert {n for n, (role, _) in graph.attention.items() if role == "stream"} == {"embed", "attn.proj", "fc2"}
    layers = {info.name: info for info in describe_model(LoadedModel(module, "t", "factory", True), (5, 6))}
    assert layers["attn.qkv"].constraints["channel"].startswith("heads removed whole: 4 heads of 4")
    assert "embedding dimension that attention 'attn' reads" in layers["embed"].granularities["channel"]
    example = torch.zeros(1, 5, 6)
    plan = plan_channels(module, Target("channel", "l1", ratios={"attn.qkv": 0.25, "fc1": 0.5}), example)
    assert {e["layer"]: sorted(e["channels"]) for e in plan}["attn.qkv"] == [c + p * 16 for p in range(3) for c in range(4, 8)]
    rebuilt = copy.deepcopy(module)
    prune_channels(module, plan, example)
    assert (module.attn.num_heads, module.attn.qkv.out_features, module.attn.proj.in_features) == (3, 36, 12)
    assert module.fc1.out_features == 16
    assert module(torch.rand(2, 5, 6)).shape == (2, 3)
    prune_channels(rebuilt, plan, example)  # the same plan on the base model rebuilds the same architecture
    assert rebuilt.attn.num_heads == 3 and torch.equal(rebuilt.attn.qkv.weight, module.attn.qkv.weight)


class BiasedAttention(nn.Module):
    """Swin-style: timm's attention plus a learned per-head bias on the logits, reshaped to the input's width."""

    def __init__(self, dim: int = 16, num_heads: int = 4, tokens: int = 5) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.bias = nn.Parameter(torch.randn(num_heads, tokens, tokens))

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        attn = ((q @ k.transpose(-2, -1)) * self.head_dim ** -0.5 + self.bias[:, :n, :n]).softmax(-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


def test_timm_attention_has_its_heads_removed_and_one_that_cannot_lose_a_head_says_so_before_any_work():
    from tests.zoo.architectures import ZOO, build

    layers = {info.name: info for info in describe_model(LoadedModel(build("vit_timm"), "v", "factory", True),
                                                         ZOO["vit_timm"].input_shape)}
    assert layers["blocks.0.attn.qkv"].constraints["channel"].startswith("heads removed whole: 4 heads of 8")
    assert layers["blocks.0.mlp.fc1"].granularities["channel"] is None  # MLP hidden units still go
    module = TinyTransformer().eval()
    module.attn = BiasedAttention()
    layers = {info.name: info for info in describe_model(LoadedModel(module, "t", "factory", True), (5, 6))}
    assert "'attn' cannot lose a head" in layers["attn.qkv"].granularities["channel"]
    assert "a per-head bias" in layers["attn.qkv"].granularities["channel"]
