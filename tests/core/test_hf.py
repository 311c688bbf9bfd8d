"""Hugging Face folders: a save_pretrained ViT loads by its path, loses 25% of its heads, and goes back as a folder
from_pretrained loads with identical logits; bad folders get a sentence."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import ViTForImageClassification
from typer.testing import CliRunner

from pruner_core.errors import ModelLoadError, SpecError
from pruner_core.frontends.cli import app
from pruner_core.io.models import load_model
from pruner_core.pipeline.export import export_run
from pruner_core.pipeline.run import run_experiment
from pruner_core.pruning.recipe import Recipe
from tests.zoo.architectures import IMAGE, hf_vit

from .helpers import write_npz


@pytest.fixture(scope="module")
def vit_folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("hf") / "vit"
    hf_vit().model.save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def vit_data(vit_folder, tmp_path_factory):
    """Images labelled by the model itself, so its dense accuracy is 100%."""
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((160, *IMAGE)).astype(np.float32))
    with torch.no_grad():
        y = load_model(str(vit_folder)).module(x).argmax(1)
    return write_npz(tmp_path_factory.mktemp("hfdata") / "images.npz", x=x.numpy(), y=y.numpy())


def test_a_save_pretrained_folder_is_a_model_spec(vit_folder):
    model = load_model(str(vit_folder))
    assert (model.fmt, model.input_shape, model.num_classes) == ("huggingface", IMAGE, 10)
    assert model.card["architecture"] == "ViTForImageClassification"
    assert model.module(torch.zeros(2, *IMAGE)).shape == (2, 10)  # one tensor in, class scores out


def test_a_quarter_of_the_heads_go_and_the_exported_folder_reloads_with_identical_logits(vit_folder, vit_data, tmp_path):
    from pruner_core.io.data import load_data
    from pruner_core.io.fit import fit_data

    model = load_model(str(vit_folder))
    data = fit_data(model, load_data(vit_data))
    recipe = Recipe.from_dict({"granularity": "channel", "sparsity": 0.25, "finetune": {"epochs": 0}})
    run = run_experiment(model, data, recipe, data_spec=str(vit_data), root=tmp_path / "runs")
    written = export_run(run.path, tmp_path / "out", test_data=data)
    folder = tmp_path / "out" / "huggingface"
    config = json.loads((folder / "config.json").read_text())
    assert (config["num_attention_heads"], config["head_dim"], config["intermediate_size"]) == (3, 8, 48)
    reloaded = ViTForImageClassification.from_pretrained(str(folder), local_files_only=True,
                                                         attn_implementation="eager").eval()
    for layer in reloaded.vit.layers:
        assert layer.attention.q_proj.out_features == layer.attention.v_proj.out_features == 24  # 3 heads of 8
    pruned = load_model(str(run.path)).module
    with torch.no_grad():
        assert torch.equal(reloaded(pixel_values=data.x_test).logits, pruned(data.x_test))
    assert written["huggingface_max_diff"] == 0.0


def test_layers_pruned_unlike_each_other_keep_the_run_and_say_why_no_folder(vit_folder, vit_data, tmp_path):
    model = load_model(str(vit_folder))
    from pruner_core.io.data import load_data

    recipe = Recipe.from_dict({"granularity": "channel", "sparsity": 0.0, "finetune": {"epochs": 0},
                               "layers": {"model.vit.layers.0.mlp.fc1": 0.5}})
    run = run_experiment(model, load_data(vit_data), recipe, data_spec=str(vit_data), root=tmp_path / "runs")
    written = export_run(run.path, tmp_path / "out", onnx_file=False)
    assert "huggingface" not in written and (tmp_path / "out" / "weights.safetensors").is_file()
    assert "prune every layer alike" in written["huggingface_refused"]
    assert "'vit.layers.0.mlp.fc1.weight' is [32, 32]" in written["huggingface_refused"]


def test_pruner_info_and_export_by_the_folders_path(vit_folder, vit_data):
    result = CliRunner().invoke(app, ["info", str(vit_folder), "--data", str(vit_data), "--runs", "2"])
    assert result.exit_code == 0, result.output
    assert "100.00%" in result.output


@pytest.mark.parametrize(("change", "message"), [
    (lambda p: (p / "model.safetensors").unlink(), "has no model.safetensors"),
    (lambda p: (p / "config.json").write_text("{not json"), "config.json' is not readable JSON"),
    (lambda p: (p / "config.json").write_text(json.dumps({"architectures": ["ViTModel"]})),
     "expected an image or sequence classifier"),
])
def test_a_bad_folder_is_named_with_what_would_be_valid(vit_folder, tmp_path, change, message):
    import shutil

    folder = tmp_path / "vit"
    shutil.copytree(vit_folder, folder)
    change(folder)
    with pytest.raises(ModelLoadError, match=message):
        load_model(str(folder))


def test_a_folder_carries_its_own_weights(vit_folder, tmp_path):
    with pytest.raises(SpecError, match="carries its own weights"):
        load_model(str(vit_folder), weights=str(tmp_path / "w.safetensors"))


def test_pruner_analyze_reports_each_attention_heads(vit_folder, vit_data, tmp_path):
    out = tmp_path / "a.json"
    result = CliRunner().invoke(app, ["analyze", str(vit_folder), "--data", str(vit_data), "--samples", "32",
                                      "--json", str(out)])
    assert result.exit_code == 0, result.output
    heads = json.loads(out.read_text())["heads"]
    assert [h["attention"].rsplit(".", 1)[-1] for h in heads] == ["attention", "attention"]
    assert all(len(h["l2"]) == len(h["mean_output"]) == 4 and h["head_dim"] == 8 for h in heads)
    assert "4 heads, L2" in result.output
