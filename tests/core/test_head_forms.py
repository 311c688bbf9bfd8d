"""Attention heads removed where the module's own forward stood in the way: ``nn.MultiheadAttention`` (torch's fused
in-projection) and timm's ``reshape(B, N, C)`` are opened into an equivalent :class:`HeadAttention`, which loses
whole heads; what cannot be opened says why before any work."""

from __future__ import annotations

import copy
import subprocess
import sys

import onnxruntime as ort
import pytest
import torch
from torch import nn

from pruner_core.graph.flops import layer_flops
from pruner_core.graph.head_forms import HeadAttention, HeadMultiheadAttention, open_heads
from pruner_core.io.data import Dataset
from pruner_core.io.models import LoadedModel
from pruner_core.pipeline.replay import load_run_model
from pruner_core.pipeline.run import prune, run_experiment
from pruner_core.pruning.describe import describe_model
from pruner_core.pruning.recipe import Recipe
from pruner_core.sensitivity.scan import scan
from tests.zoo.architectures import ZOO


def probe(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("batch_first", [True, False])
def test_an_opened_multihead_attention_answers_every_call_as_torch_does(batch_first):
    mha = nn.MultiheadAttention(16, 4, batch_first=batch_first, dropout=0.1).eval()
    x = probe(3, 7, 16) if batch_first else probe(7, 3, 16)
    opened = HeadMultiheadAttention(mha).eval()
    pad = torch.zeros(3, 7, dtype=torch.bool)
    pad[0, 5:] = True
    causal = nn.Transformer.generate_square_subsequent_mask(7)
    calls = [{}, {"need_weights": False}, {"key_padding_mask": pad}, {"attn_mask": causal},
             {"attn_mask": causal.isinf(), "key_padding_mask": pad}, {"average_attn_weights": False},
             {"attn_mask": torch.randn(12, 7, 7)}]
    with torch.no_grad():
        for call in calls:
            want, got = mha(x, x, x, **call), opened(x, x, x, **call)
            assert torch.allclose(want[0], got[0], atol=1e-5), call
            assert (want[1] is None) == (got[1] is None) and (want[1] is None or torch.allclose(want[1], got[1],
                                                                                                atol=1e-5)), call
        unbatched = x[:, 0] if batch_first else x[:, 0]
        assert torch.allclose(mha(unbatched, unbatched, unbatched)[0], opened(unbatched)[0], atol=1e-5)
    with pytest.raises(ValueError, match="its key must be its query"):
        opened(x, x.clone(), x)


def test_a_transformer_encoder_opened_gives_its_outputs_and_loses_heads():
    layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True)
    model = nn.Sequential(nn.Linear(6, 16), nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)).eval()
    x = probe(3, 7, 6)
    opened = copy.deepcopy(model)
    assert open_heads(opened, x[:1]) == {"1.layers.0.self_attn": None, "1.layers.1.self_attn": None}
    assert isinstance(opened[1].layers[0].self_attn, HeadMultiheadAttention)
    with torch.no_grad():  # eval + no grad: torch's fused fast path for the original, our layers for the copy
        assert torch.allclose(model(x), opened(x), atol=1e-5)
    assert layer_flops(model, x[:1])[0] == layer_flops(opened, x[:1])[0]  # attention counted alike


def test_attention_that_is_not_self_attention_keeps_its_module_and_says_why():
    class Cross(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed, self.memory = nn.Linear(6, 16), nn.Linear(6, 16)
            self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
            self.head = nn.Linear(16, 3)

        def forward(self, x):
            q = self.embed(x)
            return self.head(self.attn(q, self.memory(x), self.memory(x))[0].mean(1))

    module = Cross().eval()
    assert open_heads(copy.deepcopy(module), probe(1, 5, 6)) == {
        "attn": "it is cross-attention (its key or value is not its query)"}
    layers = {i.name: i for i in describe_model(LoadedModel(module, "c", "factory", True), (5, 6))}
    assert "nn.MultiheadAttention 'attn', whose heads are removed only in self-attention" in (
        layers["attn.out_proj"].granularities["channel"])


def zoo_data(arch: str, n: int = 64) -> Dataset:
    x = probe(n, *ZOO[arch].input_shape)
    y = torch.arange(n) % 10
    return Dataset("random", x, y, x[:32], y[:32], [str(i) for i in range(10)], "given")


@pytest.mark.parametrize("arch", ["vit_mha", "vit_timm"])
def test_a_vit_loses_whole_heads_and_runs_in_torch_and_onnx_runtime(arch, tmp_path):
    module = ZOO[arch].build()
    model, data = LoadedModel(module, arch, "factory", True), zoo_data(arch)
    unit = "blocks.0.attn.in_proj_weight" if arch == "vit_mha" else "blocks.0.attn.qkv"
    recipe = Recipe.from_dict({"granularity": "channel", "sparsity": 0.0, "layers": {unit: 0.5},
                               "finetune": {"epochs": 0}})
    pruned = prune(model, data, recipe)
    attn = pruned.module.blocks[0].attn
    assert isinstance(attn, HeadAttention) and attn.num_heads == 2  # 2 of 4 heads, 8 wide, went whole
    assert getattr(attn, attn.unit_name).out_features == 3 * 2 * 8 and getattr(attn, attn.output_name).in_features == 16
    assert pruned.module.blocks[1].attn.num_heads == 4  # the other block was not asked
    assert type(module.blocks[0].attn).__name__ in ("MultiheadAttention", "Attention")  # the original is untouched
    x = data.x_test[:4]
    before, after = layer_flops(module, x[:1])[0], layer_flops(pruned.module, x[:1])[0]
    assert after < before
    assert sum(p.numel() for p in pruned.module.parameters()) < sum(p.numel() for p in module.parameters())
    path = tmp_path / "m.onnx"
    torch.onnx.export(pruned.module, x, path, input_names=["x"], dynamo=False)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        assert abs(torch.from_numpy(got) - pruned.module(x)).max() < 1e-4


def test_a_channel_run_of_a_vit_with_multihead_attention_reloads_in_a_fresh_process(tmp_path):
    data = zoo_data("vit_mha")
    model = LoadedModel(ZOO["vit_mha"].build(), "tests.zoo.architectures:vit_mha", "factory", True)
    recipe = Recipe.from_dict({"granularity": "channel", "sparsity": 0.3, "finetune": {"epochs": 0}})
    run = run_experiment(model, data, recipe, data_spec="given", folder=tmp_path / "run", latency_runs=(2, 1))
    reloaded = load_run_model(run.path)
    assert reloaded.module.blocks[0].attn.num_heads < 4
    x = data.x_test[:4]
    torch.save(x, tmp_path / "x.pt")
    with torch.no_grad():
        expected = reloaded.module(x)
    code = ("import torch; from pruner_core.pipeline.replay import load_run_model; "
            f"m = load_run_model({str(run.path)!r}).module; x = torch.load({str(tmp_path / 'x.pt')!r}); "
            f"torch.save(m(x).detach(), {str(tmp_path / 'y.pt')!r})")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(__import__("pathlib").Path(__file__).parents[2]))
    assert torch.equal(torch.load(tmp_path / "y.pt"), expected)


def test_the_channel_scan_removes_whole_heads_of_multihead_attention_as_a_run_does():
    data = zoo_data("vit_mha")
    model = LoadedModel(ZOO["vit_mha"].build(), "vit_mha", "factory", True)
    unit = "blocks.0.attn.in_proj_weight"
    result = scan(model, data, granularity="channel", ratios=[0.25, 0.5], samples=32, latency=False, layers=[unit],
                  adaptive=False)
    (curve,) = result.units
    assert curve.layers == [unit] and curve.consumers == ["blocks.0.attn.out_proj"]
    for ratio, loss in zip(curve.ratios, curve.loss, strict=True):  # the heads a run removes, and no other channel
        pruned = prune(model, data, Recipe.from_dict({"granularity": "channel", "sparsity": 0.0, "layers": {unit: ratio},
                                                      "finetune": {"epochs": 0}}))
        with torch.no_grad():
            want = nn.functional.cross_entropy(pruned.module(data.x_test[:32]), data.y_test[:32]).item()
        assert loss == pytest.approx(want, abs=1e-4)


class NamedHeads(nn.Module):
    """timm's layout with the head count as Hugging Face names it, reshaped to the input's width."""

    def __init__(self, dim: int = 16, heads: int = 4, masked: bool = False) -> None:
        super().__init__()
        self.num_attention_heads, self.head_dim, self.masked = heads, dim // heads, masked
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x, attn_mask=None):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_attention_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        logits = (q @ k.transpose(-2, -1)) * self.head_dim ** -0.5
        if attn_mask is not None:
            logits = logits + attn_mask
        return self.proj((logits.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c))


class Wrapper(nn.Module):
    def __init__(self, masked: bool) -> None:
        super().__init__()
        self.embed, self.attn, self.head, self.masked = nn.Linear(6, 16), NamedHeads(), nn.Linear(16, 3), masked

    def forward(self, x):
        h = self.embed(x)
        h = h + (self.attn(h, attn_mask=torch.zeros(x.shape[1], x.shape[1])) if self.masked else self.attn(h))
        return self.head(h.mean(1))


def test_attention_that_counts_heads_as_num_attention_heads_opens_and_one_called_with_a_mask_is_left_traced():
    model = Wrapper(masked=False).eval()
    opened = copy.deepcopy(model)
    assert open_heads(opened, probe(1, 5, 6)) == {"attn": None}
    with torch.no_grad():
        assert torch.allclose(model(probe(3, 5, 6)), opened(probe(3, 5, 6)), atol=1e-5)
    masked = Wrapper(masked=True).eval()
    why = open_heads(copy.deepcopy(masked), probe(1, 5, 6))["attn"]
    assert why.startswith("its forward is called with more than its input")
    from pruner_core.graph.model_graph import graph_of

    graph = graph_of(masked, (5, 6))
    assert graph.traced  # the model is still traced: its other layers keep channel pruning
    assert graph.attention["attn.qkv"][0] == "fixed"


def test_an_opened_encoder_takes_a_padding_mask_in_eval_without_nested_tensors():
    layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True)
    encoder = nn.TransformerEncoder(layer, 2).eval()  # enable_nested_tensor defaults to True
    opened = copy.deepcopy(encoder)
    open_heads(opened, probe(1, 7, 16))
    assert opened.use_nested_tensor is False
    x, pad = probe(3, 7, 16), torch.zeros(3, 7, dtype=torch.bool)
    pad[0, 5:] = True
    with torch.no_grad():
        want, got = encoder(x, src_key_padding_mask=pad), opened(x, src_key_padding_mask=pad)
    keep = ~pad  # torch's nested path leaves padded positions at 0
    assert torch.allclose(want[keep], got[keep], atol=1e-5)
