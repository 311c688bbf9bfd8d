"""Every weight a user would count: LSTM/GRU matrices, attention in-projections and embeddings are masked like a
Linear's weight; the granularities that need kernels or channels say why they do not apply."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pruner_core.graph.layers import parameter_coverage, prunable_layers, unprunable_weights
from pruner_core.io.data import Dataset
from pruner_core.io.models import LoadedModel
from pruner_core.pipeline.run import prune
from pruner_core.pruning.describe import describe_model
from pruner_core.pruning.recipe import Recipe


class Tagger(nn.Module):
    """Token ids -> embedding -> LSTM -> self-attention -> classes: nearly every parameter outside Conv/Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(40, 16)
        self.lstm = nn.LSTM(16, 16, batch_first=True)
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        h = self.lstm(self.embedding(x))[0]
        return self.fc(self.attn(h, h, h, need_weights=False)[0].mean(1))


def tagger() -> LoadedModel:
    torch.manual_seed(0)
    return LoadedModel(Tagger().eval(), "tagger", "factory", True)


def data() -> Dataset:
    x = torch.randint(0, 40, (64, 10))
    y = torch.arange(64) % 3
    return Dataset("ids", x, y, x[:16], y[:16], ["0", "1", "2"], "given")


def test_recurrent_and_attention_matrices_are_layers_of_their_own():
    found = {name: kind for name, _, kind in prunable_layers(Tagger())}
    assert found == {
        "embedding": "Embedding", "lstm.weight_ih_l0": "Recurrent", "lstm.weight_hh_l0": "Recurrent",
        "attn.in_proj_weight": "Attention", "attn.out_proj": "Linear", "fc": "Linear",
    }
    assert unprunable_weights(Tagger()) == {}  # nothing a user would count is left out
    prunable, total, unreached = parameter_coverage(Tagger())
    biases = sum(p.numel() for n, p in Tagger().named_parameters() if "bias" in n)
    assert (prunable, unreached) == (total - biases, {})


def test_fifty_percent_unstructured_zeroes_half_of_every_matrix_in_the_model_itself():
    model = tagger()
    pruned = prune(model, data(), Recipe.from_dict({"granularity": "unstructured", "sparsity": 0.5,
                                                    "finetune": {"epochs": 0}}))
    module = pruned.module
    for weight in (module.lstm.weight_ih_l0, module.lstm.weight_hh_l0, module.attn.in_proj_weight,
                   module.embedding.weight):
        assert float((weight == 0).float().mean()) == pytest.approx(0.5, abs=0.01)
    assert module.lstm.weight_ih_l0 is module.lstm._flat_weights[0]  # the LSTM still runs on the masked tensor
    assert torch.equal(module.lstm.bias_ih_l0, model.module.lstm.bias_ih_l0)  # biases are left alone
    assert module(data().x_test).shape == (16, 3)


def test_the_granularities_that_do_not_apply_to_a_matrix_say_why():
    layers = {info.name: info for info in describe_model(tagger(), (10,))}
    lstm = layers["lstm.weight_ih_l0"].granularities
    assert lstm["unstructured"] is None and lstm["nm"] is None
    assert lstm["kernel"] == "Recurrent weights have no kernels (use unstructured, nm)"
    assert lstm["channel"].startswith("a recurrent weight matrix is masked only")
    # self-attention: its heads go whole (graph.head_forms); its output projection, read only by fc, is a layer
    assert layers["attn.in_proj_weight"].granularities["channel"] is None
    assert layers["attn.in_proj_weight"].constraints["channel"].startswith("heads removed whole: 2 heads of 8")
    assert layers["attn.out_proj"].granularities["channel"] is None
    assert layers["embedding"].granularities["channel"].startswith("an embedding's rows are its vocabulary")


def test_wanda_names_the_matrix_it_cannot_weigh():
    from pruner_core.errors import SpecError

    recipe = Recipe.from_dict({"granularity": "unstructured", "criterion": "wanda", "sparsity": 0.0,
                               "layers": {"lstm.weight_ih_l0": 0.5}, "finetune": {"epochs": 0}})
    with pytest.raises(SpecError, match="'lstm.weight_ih_l0' is a recurrent weight matrix, whose inputs wanda"):
        prune(tagger(), data(), recipe)
