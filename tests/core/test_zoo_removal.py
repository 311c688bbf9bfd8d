"""Channel removal is exact: on every zoo architecture with channel pruning, the pruned model gives the outputs of the
dense model with the removed channels' inputs zeroed in every layer that reads them (residual partners, concatenated
branches and depthwise layers included). Random weights suffice: equality does not need a trained model.

Not here: models that normalise across channels after a pruned layer (vgg_groupnorm's GroupNorm keeps its group
count, so each group has fewer channels; mlp_tabular's LayerNorm over the hidden units): there the statistics are
taken over the channels left, by definition, and no zeroing reproduces them."""

from __future__ import annotations

import copy

import pytest
import torch

from pruner_core.graph.model_graph import live_graph
from pruner_core.io.data import Dataset
from pruner_core.io.models import LoadedModel
from pruner_core.pipeline.run import prune
from pruner_core.pruning.recipe import Recipe
from tests.zoo.architectures import ZOO
from tests.zoo.cells import single_thread

ARCHS = ["resnet18", "resnet50", "mobilenet_v2", "efficientnet", "googlenet", "densenet", "dwsep_concat",
         "conv1d_seq", "text_cnn", "vit_timm", "vit_mha"]


def inputs(arch: str, n: int = 8) -> torch.Tensor:
    spec, g = ZOO[arch], torch.Generator().manual_seed(0)
    if spec.dtype == torch.long:
        return torch.randint(0, 50, (n, *spec.input_shape), generator=g)
    return torch.randn(n, *spec.input_shape, generator=g)


@pytest.mark.parametrize("arch", ARCHS)
def test_a_pruned_model_equals_the_dense_one_with_the_removed_channels_unread(arch):
    with single_thread():
        torch.manual_seed(0)
        module = ZOO[arch].build().eval()
        x = inputs(arch, 48)
        data = Dataset("random", x, torch.zeros(48, dtype=torch.long), x, torch.zeros(48, dtype=torch.long),
                       [str(i) for i in range(10)], "given")
        pruned = prune(LoadedModel(module, arch, "factory", True), data,
                       Recipe.from_dict({"granularity": "channel", "sparsity": 0.3, "finetune": {"epochs": 0}}))
        assert pruned.structure, f"{arch}: nothing was removed"
        masked = copy.deepcopy(module).eval()
        graph = live_graph(masked, ZOO[arch].input_shape)
        readers: dict[str, set[int]] = {}
        for entry in pruned.structure:
            for reader, channels in graph.consumers(entry["layer"], entry["channels"]).items():
                readers.setdefault(reader, set()).update(channels)
        modules = dict(masked.named_modules())
        with torch.no_grad():
            for reader, channels in readers.items():
                modules[reader].weight[:, sorted(channels)] = 0
            got, expected = pruned.module.eval()(x), masked(x)
    assert torch.allclose(got, expected, atol=1e-5), f"{arch}: max difference {(got - expected).abs().max():.2e}"
