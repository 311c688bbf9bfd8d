"""Where a model meets its data: one file, arranged as each model takes it; token ids for embedding models."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from pruner_core.errors import CompatibilityError
from pruner_core.frontends.cli import app
from pruner_core.io.data import load_data
from pruner_core.io.fit import fit_data
from pruner_core.io.inputs import example_input, random_input, takes_ids
from pruner_core.io.models import load_model

from .helpers import write_npz

# 40 samples of shape [12, 6]: sequences of 12 steps of 6 features to an LSTM, 12x6 grey images to a CNN
RNG = np.random.default_rng(0)
X3 = RNG.random((40, 12, 6)).astype(np.float32)
Y = np.arange(40) % 3


class Recurrent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(6, 8, batch_first=True)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.lstm(x)[0][:, -1])


class TokenNet(nn.Module):
    def __init__(self, vocab: int = 50) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, 8)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.embedding(x).mean(1))


def recurrent() -> nn.Module:
    return Recurrent()


def cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 10 * 4, 3))


def tokens() -> nn.Module:
    return TokenNet()


def mlp16() -> nn.Module:
    return nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))


@pytest.fixture
def seq_npz(tmp_path):
    return write_npz(tmp_path / "seq.npz", x=X3, y=Y)


def test_a_three_dimensional_file_is_sequences_to_an_lstm_and_images_to_a_cnn(seq_npz):
    data = load_data(seq_npz)
    assert data.sample_shape == (1, 12, 6) and data.held_shape == (12, 6)
    as_sequences = fit_data(load_model(f"{__name__}:recurrent"), data)
    assert as_sequences.sample_shape == (12, 6)
    assert torch.equal(as_sequences.x_train, data.x_train[:, 0])  # the values as the file holds them
    assert fit_data(load_model(f"{__name__}:cnn"), data) is data  # images, as loaded


def test_channels_last_images_stay_so_for_a_model_that_takes_them(tmp_path):
    x = RNG.random((20, 5, 6, 3)).astype(np.float32)
    data = load_data(write_npz(tmp_path / "nhwc.npz", x=x, y=np.arange(20) % 3))
    assert data.sample_shape == (3, 5, 6) and data.held_shape == (5, 6, 3)
    acts_on_colour = nn.Sequential(nn.Linear(3, 3), nn.Flatten(), nn.Linear(90, 3))  # on the last axis
    fitted = fit_data(replace(load_model(f"{__name__}:cnn"), module=acts_on_colour), data)
    assert fitted.sample_shape == (5, 6, 3)
    assert torch.equal(fitted.x_test.movedim(-1, 1), data.x_test)


def test_integer_ids_reach_an_embedding_model_as_integers_and_an_mlp_as_floats(tmp_path):
    ids = RNG.integers(0, 50, size=(30, 16))
    data = load_data(write_npz(tmp_path / "ids.npz", x=ids, y=np.arange(30) % 3))
    assert data.x_train.dtype == torch.float32 and data.integer
    for_tokens = fit_data(load_model(f"{__name__}:tokens"), data)
    assert for_tokens.x_train.dtype == torch.long
    assert torch.equal(for_tokens.x_train, data.x_train.long())
    assert fit_data(load_model(f"{__name__}:mlp16"), data).x_train.dtype == torch.float32


def test_a_model_that_takes_no_arrangement_names_the_files_shape_and_each_tried(seq_npz):
    model = load_model(f"{__name__}:mlp16")
    with pytest.raises(CompatibilityError) as e:
        fit_data(model, load_data(seq_npz))
    message = str(e.value)
    assert "holds samples of shape (12, 6)" in message
    assert "(1, 12, 6), (12, 6)" in message
    assert "mat1 and mat2" in message  # what the model said


def test_example_and_random_inputs_are_ids_below_the_vocabulary_for_an_embedding_model():
    module = TokenNet(vocab=7)
    assert takes_ids(module, (16,))
    assert example_input(module, (16,)).dtype == torch.long
    x = random_input(module, (16,), batch=64)
    assert x.dtype == torch.long and int(x.max()) < 7 and int(x.min()) >= 0
    assert random_input(module, (16,), batch=4).equal(random_input(module, (16,), batch=4))  # seeded
    assert not takes_ids(mlp16(), (16,)) and example_input(mlp16(), (16,)).dtype == torch.float32


def test_pruner_info_measures_an_lstm_on_a_sequence_file(seq_npz):
    result = CliRunner().invoke(app, ["info", f"{__name__}:recurrent", "--data", str(seq_npz), "--runs", "2"])
    assert result.exit_code == 0, result.output
    assert "(12, 6)" in result.output or "12, 6" in result.output


def test_a_model_that_declares_its_input_shape_gets_that_arrangement(tmp_path):
    x = RNG.integers(0, 255, (20, 28, 28), dtype=np.uint8)  # an MLP would take [28, 28] too
    data = load_data(write_npz(tmp_path / "digits.npz", x=x, y=np.arange(20) % 10))
    assert fit_data(load_model("demo:lenet300"), data).sample_shape == (1, 28, 28)


class WithAux(nn.Module):
    """Returns (logits, features), as GoogLeNet-style nets with auxiliary outputs do; or a dict."""

    def __init__(self, as_dict: bool = False) -> None:
        super().__init__()
        self.as_dict = as_dict
        self.body, self.fc = nn.Linear(16, 8), nn.Linear(8, 3)

    def forward(self, x):
        features = torch.relu(self.body(x))
        logits = self.fc(features)
        return {"features": features, "logits": logits} if self.as_dict else (logits, features)


def with_aux() -> nn.Module:
    return WithAux()


def with_dict() -> nn.Module:
    return WithAux(as_dict=True)


@pytest.fixture
def flat_npz(tmp_path):
    return write_npz(tmp_path / "flat.npz", x=RNG.random((30, 16)).astype(np.float32), y=np.arange(30) % 3)


@pytest.mark.parametrize(("factory", "key", "returns"), [
    ("with_aux", "0", "a tuple of 2 0: [2, 3], 1: [2, 8]"),
    ("with_dict", "logits", "a dict with keys 'features': [2, 8], 'logits': [2, 3]"),
])
def test_a_model_returning_several_outputs_is_named_with_the_spec_that_picks_its_scores(flat_npz, factory, key, returns):
    spec = f"{__name__}:{factory}"
    with pytest.raises(CompatibilityError) as e:
        fit_data(load_model(spec), load_data(flat_npz))
    assert str(e.value) == (f"model '{spec}' returns {returns}: name the class scores by adding '#{key}' to its spec "
                            f"('{spec}#{key}')")
    model = load_model(f"{spec}#{key}")
    assert model.spec == f"{spec}#{key}"
    data = fit_data(model, load_data(flat_npz))
    assert model.module(data.x_test).shape == (len(data.x_test), 3)


def test_a_model_with_an_auxiliary_output_prunes_exports_and_reloads_by_its_spec(flat_npz, tmp_path):
    from pruner_core.pipeline.run import run_experiment
    from pruner_core.pruning.recipe import Recipe

    spec = f"{__name__}:with_aux#0"
    model = load_model(spec)
    data = fit_data(model, load_data(flat_npz))
    recipe = Recipe.from_dict({"granularity": "channel", "sparsity": 0.5, "finetune": {"epochs": 0}})
    run = run_experiment(model, data, recipe, data_spec=str(flat_npz), root=tmp_path)
    reloaded = load_model(str(run.path))
    assert reloaded.module.model.body.out_features == 4  # the tuple's first output still the scores
    from pruner_core.measure.metrics import accuracy

    assert accuracy(reloaded.module, data.x_test, data.y_test) == pytest.approx(run.metrics["accuracy"])
    result = CliRunner().invoke(app, ["info", spec, "--data", str(flat_npz), "--runs", "2"])
    assert result.exit_code == 0, result.output
