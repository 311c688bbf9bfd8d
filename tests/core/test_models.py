"""Loading models from every supported spec, and every way a user's model file can be wrong."""

from __future__ import annotations

import sys
import uuid

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from pruner_core.errors import CompatibilityError, ModelLoadError, PrunerError, SpecError, TrustError
from pruner_core.io.archs import ARCHITECTURES, LeNet300
from pruner_core.io.fit import check_data_fits
from pruner_core.io.models import MODEL_FORMATS, LoadedModel, load_model

from .helpers import noise, tiny_dataset, tiny_mlp

# TorchScript still loads but warns that it is deprecated; the explorer must keep reading old archives.
JIT_DEPRECATED = pytest.mark.filterwarnings("ignore:.*torch\\.jit.*is deprecated:DeprecationWarning")
X4 = torch.arange(24, dtype=torch.float32).reshape(6, 4) / 10  # inputs for tiny_mlp
MNIST_BATCH = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))

FACTORY_SOURCE = """
import torch
from torch import nn


def make():
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def boom():
    raise RuntimeError("needs a GPU")


def not_a_module():
    return {"weights": 1}


NOT_CALLABLE = 3
"""


def save_state_dict(module: nn.Module, path):
    """Write ``module``'s state_dict as .safetensors or with torch.save, by suffix."""
    sd = {k: v.contiguous() for k, v in module.state_dict().items()}
    if path.suffix == ".safetensors":
        save_file(sd, path)
    else:
        torch.save(sd, path)
    return path


def all_eval(module: nn.Module) -> bool:
    return not any(m.training for m in module.modules())


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """The name of an importable module (a file in tmp_path on sys.path) holding FACTORY_SOURCE."""
    name = f"user_models_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(FACTORY_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


# --- demo models and state_dicts ----------------------------------------------------------------


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_each_demo_loads_in_eval_mode_with_its_card(name):
    arch = ARCHITECTURES[name]
    m = load_model(f"demo:{name}")
    assert (m.arch, m.fmt, m.eager) == (name, "demo", True)
    assert m.input_shape == arch.input_shape == (1, 28, 28)
    assert m.num_classes == arch.num_classes == 10
    assert all_eval(m.module)
    assert m.card["architecture"] == name and 0.9 < m.card["test_accuracy"] <= 1
    with torch.inference_mode():
        assert m.module(MNIST_BATCH).shape == (3, 10)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".pth"])
@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_state_dict_with_demo_architecture_gives_identical_outputs(tmp_path, name, suffix):
    torch.manual_seed(1)
    original = ARCHITECTURES[name].build().eval()
    path = save_state_dict(original, tmp_path / f"mine{suffix}")
    m = load_model(f"demo:{name}", weights=path)
    assert (m.fmt, m.arch, m.eager, m.weights) == ("state_dict", name, True, str(path))
    assert m.label == f"demo:{name} + mine{suffix}"
    assert all_eval(m.module)
    with torch.inference_mode():
        assert torch.equal(m.module(MNIST_BATCH), original(MNIST_BATCH))
    again = load_model(f"demo:{name}", weights=path)
    assert again.fingerprint() == m.fingerprint()


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {f"module.{k}": v for k, v in sd.items()},
        lambda sd: {"state_dict": sd},
        lambda sd: {"model_state_dict": sd, "epoch": 7, "lr": 0.1},
        lambda sd: {"model": {f"module.{k}": v for k, v in sd.items()}},
    ],
    ids=["DDP prefix", "state_dict wrapper", "checkpoint with extras", "model wrapper + DDP prefix"],
)
def test_checkpoint_wrappers_are_unwrapped(tmp_path, wrap):
    torch.manual_seed(2)
    original = LeNet300().eval()
    torch.save(wrap(original.state_dict()), tmp_path / "ckpt.pt")
    m = load_model("demo:lenet300", weights=tmp_path / "ckpt.pt")
    with torch.inference_mode():
        assert torch.equal(m.module(MNIST_BATCH), original(MNIST_BATCH))


def test_fingerprint_tells_different_weights_apart(tmp_path):
    a = load_model("demo:lenet300", weights=save_state_dict(LeNet300(), tmp_path / "a.safetensors"))
    b = load_model("demo:lenet300", weights=save_state_dict(LeNet300(), tmp_path / "b.safetensors"))
    assert a.fingerprint() != b.fingerprint()


# --- TorchScript, torch.export, factories, pickled modules -------------------------------------


@JIT_DEPRECATED
@pytest.mark.parametrize("suffix", [".pt", ".pth", ".ts"])
def test_torchscript_archive_loads_as_not_eager(tmp_path, suffix):
    torch.manual_seed(3)
    original = LeNet300().eval()
    torch.jit.script(original).save(str(tmp_path / f"scripted{suffix}"))
    m = load_model(str(tmp_path / f"scripted{suffix}"))
    assert (m.fmt, m.eager) == ("torchscript", False)
    assert all_eval(m.module)
    with torch.inference_mode():
        assert torch.allclose(m.module(MNIST_BATCH), original(MNIST_BATCH))


def export_lenet(path, batch: int | None):
    """Export LeNet300 with a dynamic batch dimension (batch=None) or a fixed one."""
    torch.manual_seed(4)
    original = LeNet300().eval()
    if batch is None:
        program = torch.export.export(
            original, (torch.zeros(2, 1, 28, 28),), dynamic_shapes={"x": {0: torch.export.Dim("batch")}}
        )
    else:
        program = torch.export.export(original, (torch.zeros(batch, 1, 28, 28),))
    torch.export.save(program, str(path))
    return original


def test_export_program_loads_with_inferred_input_shape(tmp_path):
    original = export_lenet(tmp_path / "prog.pt2", batch=None)
    m = load_model(str(tmp_path / "prog.pt2"))
    assert (m.fmt, m.eager, m.input_shape) == ("export", False, (1, 28, 28))
    with torch.inference_mode():
        assert torch.allclose(m.module(MNIST_BATCH), original(MNIST_BATCH))
    assert check_data_fits(m, tiny_dataset()) == (1, 28, 28)


def test_export_program_with_fixed_batch_is_refused_with_the_fix(tmp_path):
    export_lenet(tmp_path / "fixed.pt2", batch=1)
    with pytest.raises(ModelLoadError, match=r"'fixed\.pt2' was exported with a fixed batch size of 1.*dynamic_shapes"):
        load_model(str(tmp_path / "fixed.pt2"))


class TwoInputs(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


def test_export_program_with_two_inputs_is_refused(tmp_path):
    batch = torch.export.Dim("batch")
    program = torch.export.export(
        TwoInputs(), (torch.zeros(2, 3), torch.zeros(2, 3)), dynamic_shapes={"a": {0: batch}, "b": {0: batch}}
    )
    torch.export.save(program, str(tmp_path / "two.pt2"))
    with pytest.raises(ModelLoadError, match=r"'two\.pt2' takes 2 tensor inputs"):
        load_model(str(tmp_path / "two.pt2"))


def test_factory_loads_in_eval_mode(user_module):
    m = load_model(f"{user_module}:make")
    assert (m.fmt, m.eager, m.arch, m.input_shape) == ("factory", True, None, None)
    assert all_eval(m.module)
    assert m.module(X4).shape == (6, 2)


def test_factory_with_weights_gives_identical_outputs(tmp_path, user_module):
    original = tiny_mlp(seed=5)
    path = save_state_dict(original, tmp_path / "w.safetensors")
    m = load_model(f"{user_module}:make", weights=path)
    assert m.weights == str(path)
    assert torch.equal(m.module(X4), original(X4))


def test_builtin_architecture_class_works_as_a_factory():
    m = load_model("pruner_core.io.archs:ResNet20")
    assert (m.fmt, m.eager) == ("factory", True)
    assert m.module(MNIST_BATCH).shape == (3, 10)


def test_pickled_module_needs_trust(tmp_path):
    original = tiny_mlp(seed=6)
    torch.save(original, tmp_path / "whole.pt")
    with pytest.raises(TrustError, match=r"'whole\.pt' holds pickled Python objects.*trust"):
        load_model(str(tmp_path / "whole.pt"))
    m = load_model(str(tmp_path / "whole.pt"), trust=True)
    assert (m.fmt, m.eager) == ("pickle", True)
    assert all_eval(m.module)
    assert torch.equal(m.module(X4), original(X4))


def test_pickled_module_as_weights_needs_trust_too(tmp_path):
    torch.save(LeNet300(), tmp_path / "whole.pt")
    with pytest.raises(TrustError, match="trust"):
        load_model("demo:lenet300", weights=tmp_path / "whole.pt")


def finished_run(root) -> str:
    """A finished pruning run folder of demo:lenet300 (its weights unchanged)."""
    from pruner_core.pipeline.runs import create_run, finish_run
    from pruner_core.pruning.recipe import Recipe

    run = create_run(root, {"spec": "demo:lenet300"}, Recipe())
    finish_run(run, state_dict=load_model("demo:lenet300").module.state_dict(), metrics={})
    return str(run.path)


@JIT_DEPRECATED
def hf_folder(path) -> str:
    from tests.zoo.architectures import hf_vit

    hf_vit().model.save_pretrained(str(path))
    return str(path)


def test_every_model_format_has_a_working_example(tmp_path, user_module):
    """Each registered format loads something (a new format must be added here with an example)."""
    torch.jit.script(tiny_mlp()).save(str(tmp_path / "s.pt"))
    export_lenet(tmp_path / "p.pt2", batch=None)
    examples = {
        "demo": ("demo:lenet300", "demo"),
        "export": (str(tmp_path / "p.pt2"), "export"),
        "file": (str(tmp_path / "s.pt"), "torchscript"),
        "factory": (f"{user_module}:make", "factory"),
        "run": (finished_run(tmp_path / "runs"), "run"),
        "huggingface": (hf_folder(tmp_path / "vit"), "huggingface"),
    }
    assert set(examples) == {f.name for f in MODEL_FORMATS}
    for fmt in MODEL_FORMATS:
        spec, loaded_fmt = examples[fmt.name]
        assert fmt.matches(spec)
        assert load_model(spec).fmt == loaded_fmt


# --- what can be wrong with a user's model ------------------------------------------------------


@pytest.mark.parametrize("spec", ["model.onnx", "resnet", "demo", "C:/models/x.h5"])
def test_unknown_spec_lists_every_format(spec):
    with pytest.raises(SpecError, match=rf"cannot load a model from '{spec}'") as info:
        load_model(spec)
    for fmt in MODEL_FORMATS:
        assert fmt.label in str(info.value)


def test_unknown_demo_names_it_and_the_demos():
    with pytest.raises(SpecError, match="'nope'; available: " + ", ".join(f"demo:{n}" for n in ARCHITECTURES)):
        load_model("demo:nope")


@pytest.mark.parametrize("name", ["missing.pt", "missing.pth", "missing.ts", "missing.pt2", "missing.safetensors"])
def test_missing_model_file_names_it(tmp_path, name):
    with pytest.raises(ModelLoadError, match=rf"{name}' does not exist"):
        load_model(str(tmp_path / name))


def test_missing_weights_file_names_it(tmp_path):
    with pytest.raises(ModelLoadError, match=r"w\.safetensors' does not exist"):
        load_model("demo:lenet300", weights=tmp_path / "w.safetensors")


# Which error torch's unpickler hits depends on the bytes; each seed below once escaped as another error.
@pytest.mark.parametrize(
    ("name", "seed", "as_weights"),
    [
        ("noise.safetensors", 0, False),
        ("noise.safetensors", 1, True),
        ("noise.pt2", 0, False),
        ("noise.pt", 0, False),
        ("noise.pt", 0, True),
        ("noise.pth", 1, True),
        ("noise.pt", 2, True),
        ("noise.pt", 61, False),
        ("noise.pt", 20, True),
    ],
)
def test_corrupt_file_is_a_load_error_naming_it(tmp_path, name, seed, as_weights):
    path = tmp_path / name
    path.write_bytes(noise(seed))
    with pytest.raises(ModelLoadError, match=rf"'{name}' is not a readable"):
        if as_weights:
            load_model("demo:lenet300", weights=path)
        else:
            load_model(str(path))


def test_corrupt_pt_with_trust_is_a_load_error(tmp_path):
    (tmp_path / "noise.pt").write_bytes(noise(0))
    with pytest.raises(ModelLoadError, match=r"'noise\.pt' is not a readable"):
        load_model(str(tmp_path / "noise.pt"), trust=True)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (torch.zeros(3), "does not hold a state_dict"),
        ({}, "does not hold a state_dict"),
        ({"fc1.weight": torch.zeros(3), "note": "hello"}, "does not hold a state_dict"),
    ],
    ids=["a tensor", "empty dict", "non-tensor value"],
)
def test_weights_that_are_not_a_state_dict(tmp_path, payload, message):
    torch.save(payload, tmp_path / "w.pt")
    with pytest.raises(ModelLoadError, match=rf"'w\.pt' {message}"):
        load_model("demo:lenet300", weights=tmp_path / "w.pt")


def lenet_sd(**changes) -> dict[str, torch.Tensor]:
    sd = LeNet300().state_dict()
    for key, value in changes.items():
        if value is None:
            del sd[key]
        else:
            sd[key] = value
    return sd


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
@pytest.mark.parametrize(
    ("sd", "message"),
    [
        (
            LeNet300(num_classes=5).state_dict(),
            r"'w{suffix}' do not fit architecture 'lenet300': key 'fc3\.weight' has shape \(5, 100\) in the file"
            r" but \(10, 100\) in the model",
        ),
        (lenet_sd(**{"fc2.bias": None}), r"key 'fc2\.bias' \(shape \(100,\)\) is missing from the file"),
        (lenet_sd(**{"fc4.weight": torch.zeros(2, 2)}), r"the file has key 'fc4\.weight' which the model does not"),
        (ARCHITECTURES["resnet20"].build().state_dict(), r"key 'fc1\.weight' \(shape \(300, 784\)\) is missing"),
    ],
    ids=["shape mismatch", "missing key", "unexpected key", "other architecture"],
)
def test_state_dict_that_does_not_fit_names_the_key(tmp_path, suffix, sd, message):
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in sd.items()}, path)
    else:
        torch.save(sd, path)
    with pytest.raises(ModelLoadError, match=message.format(suffix=suffix.replace(".", r"\."))):
        load_model("demo:lenet300", weights=path)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".pth", ".bin"])
def test_bare_state_dict_explains_how_to_give_its_architecture(tmp_path, suffix):
    path = save_state_dict(LeNet300(), tmp_path / f"weights{suffix}")
    name = f"weights{suffix}".replace(".", r"\.")
    with pytest.raises(SpecError, match=rf"'{name}' holds a state_dict.*demo:NAME with --weights {name}") as info:
        load_model(str(path))
    assert all(n in str(info.value) for n in ARCHITECTURES)
    assert "package.module:factory" in str(info.value)


@pytest.mark.parametrize(
    ("attr", "error", "message"),
    [
        ("boom", ModelLoadError, r"calling '{mod}:boom\(\)' failed: RuntimeError: needs a GPU"),
        ("not_a_module", ModelLoadError, r"'{mod}:not_a_module' returned dict, not a torch\.nn\.Module"),
        ("NOT_CALLABLE", SpecError, r"'{mod}' has no callable 'NOT_CALLABLE'"),
        ("missing", SpecError, r"'{mod}' has no callable 'missing'"),
    ],
)
def test_bad_factory_says_what_went_wrong(user_module, attr, error, message):
    with pytest.raises(error, match=message.format(mod=user_module)):
        load_model(f"{user_module}:{attr}")


def test_unimportable_factory_module_names_it():
    with pytest.raises(SpecError, match=r"cannot import module 'no_such_pkg\.models' of 'no_such_pkg\.models:make'"):
        load_model("no_such_pkg.models:make")


def test_factory_module_with_syntax_error_is_a_user_error(tmp_path, monkeypatch):
    name = f"broken_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("def make(:\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PrunerError, match=name):
        load_model(f"{name}:make")


# --- does the data fit the model ----------------------------------------------------------------


def lenet_loaded() -> LoadedModel:
    return LoadedModel(LeNet300().eval(), "demo:lenet300", "demo", True, "lenet300", (1, 28, 28), 10)


def test_data_that_fits_returns_its_sample_shape():
    assert check_data_fits(lenet_loaded(), tiny_dataset()) == (1, 28, 28)


def test_wrong_sample_shape_names_both_shapes():
    with pytest.raises(CompatibilityError, match=r"shape \(3, 32, 32\) but model 'demo:lenet300' expects \(1, 28, 28\)"):
        check_data_fits(lenet_loaded(), tiny_dataset(shape=(3, 32, 32)))


def test_wrong_sample_shape_without_known_input_shape_names_the_shape(user_module):
    with pytest.raises(CompatibilityError, match=rf"shape \(1, 28, 28\) that model '{user_module}:make' cannot take"):
        check_data_fits(load_model(f"{user_module}:make"), tiny_dataset())


def test_label_beyond_the_models_classes_names_label_and_class_count():
    with pytest.raises(CompatibilityError, match=r"has label 11 but model 'demo:lenet300' outputs 10 classes \(labels 0\.\.9\)"):
        check_data_fits(lenet_loaded(), tiny_dataset(classes=12))


def test_model_that_does_not_return_class_scores_is_refused():
    model = LoadedModel(nn.Identity(), "ident", "factory", True)
    with pytest.raises(CompatibilityError, match=r"returns \(2, 1, 28, 28\); expected class scores of shape \[batch, classes\]"):
        check_data_fits(model, tiny_dataset())


# --- --weights on top of every kind of model ----------------------------------------------------


def lenet_as(kind: str, module: nn.Module, tmp_path) -> tuple[str, dict]:
    """Save ``module`` (a LeNet300) as ``kind``; return the spec and load_model keywords that load it."""
    if kind == "torchscript":
        torch.jit.script(module).save(str(tmp_path / "m.pt"))
        return str(tmp_path / "m.pt"), {}
    if kind == "export":
        program = torch.export.export(
            module, (torch.zeros(2, 1, 28, 28),), dynamic_shapes={"x": {0: torch.export.Dim("batch")}}
        )
        torch.export.save(program, str(tmp_path / "m.pt2"))
        return str(tmp_path / "m.pt2"), {}
    if kind == "pickle":
        torch.save(module, tmp_path / "m.pt")
        return str(tmp_path / "m.pt"), {"trust": True}
    return {"demo": "demo:lenet300", "factory": "pruner_core.io.archs:LeNet300"}[kind], {}


@JIT_DEPRECATED
@pytest.mark.parametrize(
    "kind",
    [
        "demo",
        "factory",
        "torchscript",
        "export",
        "pickle",
    ],
)
def test_weights_replace_the_models_own_for_every_format(tmp_path, kind):
    torch.manual_seed(7)
    own, wanted = LeNet300().eval(), LeNet300().eval()
    spec, kwargs = lenet_as(kind, own, tmp_path)
    weights = save_state_dict(wanted, tmp_path / "w.safetensors")
    m = load_model(spec, weights=weights, **kwargs)
    assert m.label.endswith(" + w.safetensors")
    with torch.inference_mode():
        assert torch.allclose(m.module(MNIST_BATCH), wanted(MNIST_BATCH))
