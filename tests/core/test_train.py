"""Seeded training of the demo architectures (tiny data: the real runs live in `pruner train-demo`)."""

from __future__ import annotations

import pytest
import torch

from pruner_core.errors import SpecError
from pruner_core.io.archs import ARCHITECTURES
from pruner_core.pipeline.train import augment, train_model

from .helpers import tiny_dataset


def test_unknown_architecture_names_it_and_the_choices():
    with pytest.raises(SpecError, match="'nope'; available: " + ", ".join(ARCHITECTURES)):
        train_model("nope", tiny_dataset())


def test_training_is_reproducible_from_its_seed():
    data = tiny_dataset(n=32)
    a, card_a = train_model("lenet300", data, seed=3, epochs=1, batch_size=16)
    b, card_b = train_model("lenet300", data, seed=3, epochs=1, batch_size=16)
    c, _ = train_model("lenet300", data, seed=4, epochs=1, batch_size=16)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert not torch.equal(a.state_dict()["fc1.weight"], c.state_dict()["fc1.weight"])
    assert card_a["test_accuracy"] == card_b["test_accuracy"]
    assert not a.training


def test_card_records_how_the_model_was_made():
    epochs_seen = []
    _, card = train_model(
        "lenet300", tiny_dataset(n=32), seed=1, epochs=2, batch_size=16, progress=lambda e, loss: epochs_seen.append(e)
    )
    assert epochs_seen == [1, 2]
    assert (card["architecture"], card["seed"], card["epochs"], card["batch_size"]) == ("lenet300", 1, 2, 16)
    assert (card["data"], card["train_samples"], card["test_samples"]) == ("tiny", 32, 32)
    assert card["input_shape"] == [1, 28, 28] and card["num_classes"] == 10
    assert 0 <= card["test_accuracy"] <= 1


def test_augment_keeps_shape_and_is_seeded():
    x = tiny_dataset(n=8).x_train
    a = augment(x, torch.Generator().manual_seed(0))
    b = augment(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape
    assert torch.equal(a, b)
    assert not torch.equal(a, x)
