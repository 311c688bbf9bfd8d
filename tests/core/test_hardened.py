"""Bad input and bad luck, replayed: nothing lost, nothing mixed, a one-line error naming the bad value."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from pruner_core.errors import PrunerError
from pruner_core.frontends.cli import app
from pruner_core.io.models import load_model
from pruner_core.pipeline.export import export_run
from pruner_core.pipeline.replay import load_run_model
from pruner_core.pipeline.runs import create_run, finish_run, list_runs
from pruner_core.pruning.recipe import Recipe

REPO = Path(__file__).resolve().parents[2]
BASE = {"spec": "demo:lenet300", "data": "demo:mnist5k", "input_shape": [1, 28, 28]}


def done_run(root: Path, name: str):
    """A finished run of lenet300 (its own weights, unpruned) under ``root``."""
    module = load_model("demo:lenet300").module
    run = create_run(root, BASE, Recipe(), name)
    return finish_run(run, state_dict=module.state_dict(), metrics={"accuracy": 0.9})


def test_export_never_writes_into_a_run_folder_and_the_victim_still_loads(tmp_path):
    source, victim = done_run(tmp_path, "source"), done_run(tmp_path, "victim")
    before = {p.name: p.read_bytes() for p in victim.path.iterdir()}
    result = CliRunner().invoke(app, ["export", str(source.path), "--out", str(victim.path)])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [f"error: --out '{victim.path}' is a pruning run folder; export into a "
                                                  "folder of its own, never into a run"]
    assert {p.name: p.read_bytes() for p in victim.path.iterdir()} == before  # nothing lost
    assert [r.status for r in list_runs(tmp_path)] == ["done", "done"]
    load_run_model(victim.path)


def test_export_refuses_a_folder_it_did_not_make_but_may_redo_its_own(tmp_path):
    run = done_run(tmp_path / "runs", "r")
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(PrunerError, match=r"is not empty and was not made by pruner export; name a new or empty folder"):
        export_run(run.path, foreign, onnx_file=False)
    assert (foreign / "notes.txt").read_text() == "keep me" and [p.name for p in foreign.iterdir()] == ["notes.txt"]
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(PrunerError, match="is a file; name a new folder"):
        export_run(run.path, tmp_path / "a-file", onnx_file=False)
    out = tmp_path / "export"
    export_run(run.path, out, onnx_file=False)
    export_run(run.path, out, onnx_file=False)  # its own folder: exporting again is fine
    assert (out / "weights.safetensors").is_file()


RACE = textwrap.dedent("""
    import sys, time
    from pruner_core.errors import PrunerError
    from pruner_core.pipeline.runs import create_run
    from pruner_core.pruning.recipe import Recipe
    start = float(sys.argv[2])
    while time.time() < start:
        pass
    try:
        create_run(None, {"spec": "demo:lenet300"}, Recipe(seed=int(sys.argv[3])), folder=sys.argv[1])
        print("claimed")
    except PrunerError as e:
        print("refused:", e)
""")


@pytest.mark.parametrize("attempt", range(3))
def test_two_processes_naming_the_same_out_folder_cannot_both_claim_it(tmp_path, attempt):
    import time

    folder = tmp_path / "same"
    if attempt == 1:
        folder.mkdir()  # an existing empty folder: mkdir alone is no lock
    start = str(time.time() + 3)  # both past their imports, then off at the same instant
    procs = [subprocess.Popen([sys.executable, "-c", RACE, str(folder), start, str(seed)], cwd=REPO, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for seed in (1, 2)]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert sorted(o.split(":")[0] for o in outs) == ["claimed", "refused"], outs
    assert "already exists" in next(o for o in outs if o.startswith("refused"))
    seeds = {Recipe.load(folder / "recipe.yaml").seed}
    assert len(seeds) == 1 and json.loads((folder / "status.json").read_text())["status"] == "running"
    assert torch.__version__  # the winner's files are its own: one recipe, one status


def test_an_empty_test_split_is_refused_when_the_data_loads(tmp_path):
    import numpy as np

    from pruner_core.io.data import load_data

    path = tmp_path / "no-test.npz"
    np.savez(path, x=np.zeros((8, 28, 28), np.uint8), y=np.arange(8) % 2, x_test=np.zeros((0, 28, 28), np.uint8),
             y_test=np.zeros(0, np.int64))
    with pytest.raises(PrunerError, match=r"no-test.npz: 'x_test' holds no samples, so nothing could be measured; give "
                                          r"at least one test sample, or leave x_test and y_test out"):
        load_data(str(path))
    result = CliRunner().invoke(app, ["info", "demo:mnist-cnn", "--data", str(path)])
    assert result.exit_code == 2 and "holds no samples" in result.stderr and "nan" not in result.output


def test_a_non_finite_pixel_is_named_before_anything_trains(tmp_path):
    import numpy as np

    from pruner_core.io.data import load_data

    x = np.random.default_rng(0).random((40, 1, 28, 28)).astype(np.float32)
    x[17, 0, 3, 4] = np.nan
    np.savez(tmp_path / "nan.npz", x=x, y=np.arange(40) % 10)
    with pytest.raises(PrunerError, match=r"nan.npz: 'x' holds 1 non-finite value\(s\) \(NaN or Inf\), the first in sample 17"):
        load_data(str(tmp_path / "nan.npz"))


def test_non_finite_weights_are_refused_at_load(tmp_path):
    from safetensors.torch import save_file

    sd = {k: v.clone() for k, v in load_model("demo:lenet300").module.state_dict().items()}
    sd["fc2.weight"][0, :3] = torch.tensor([float("nan"), float("inf"), 1.0])
    save_file(sd, str(tmp_path / "bad.safetensors"))
    with pytest.raises(PrunerError, match=r"fc2.weight holds 2 non-finite value\(s\) \(NaN or Inf\); its weights are damaged"):
        load_model("demo:lenet300", weights=tmp_path / "bad.safetensors")


def test_a_fine_tune_whose_loss_goes_non_finite_stops_and_the_run_fails_saying_why(tmp_path, demo_data):
    from pruner_core.pipeline.run import run_experiment

    recipe = Recipe(sparsity=0.5, finetune={"epochs": 0.1, "lr": 1e38, "optimizer": "sgd"})
    with pytest.raises(PrunerError, match="the loss became"):
        run_experiment(load_model("demo:lenet300"), demo_data, recipe, data_spec="demo:mnist5k", root=tmp_path)
    [run] = list_runs(tmp_path)
    assert run.status == "failed" and "fine-tuning stopped at step" in run.error and "lower finetune.lr" in run.error


BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


@pytest.mark.parametrize(("text", "message"), [
    (BILLION_LAUGHS, "uses more than 50 YAML aliases"),
    ("finetune: " + "[" * 1000 + "]" * 1000, "nests more than 10 levels deep"),
    ("x" * 1_000_001, "at most 1,000,000"),
])
def test_tiny_recipes_that_would_take_the_server_down_are_refused_at_once(text, message):
    from pruner_core.pruning.recipe import RecipeError

    with pytest.raises(RecipeError, match=message) as info:  # refused from the parse events: nothing was expanded
        Recipe.from_yaml(text, source="upload.yaml")
    assert len(str(info.value)) < 400


def test_an_error_about_a_huge_layers_map_stays_one_short_line():
    from pruner_core.io.archs import ARCHITECTURES
    from pruner_core.io.models import LoadedModel
    from pruner_core.pruning.describe import describe_model
    from pruner_core.pruning.recipe import RecipeError

    layers = describe_model(LoadedModel(ARCHITECTURES["lenet300"].build(), "m", "demo", True), (1, 28, 28))
    huge = Recipe(layers={f"layer_{i}_{'x' * 200}": 0.5 for i in range(5000)})
    with pytest.raises(RecipeError, match=r"no prunable layer named .*, and 4988 more; valid: fc1, fc2, fc3") as info:
        huge.target(layers)
    assert len(str(info.value)) < 1500
    bad = {"layers": {f"l{i}": 2.0 for i in range(5000)}}
    with pytest.raises(RecipeError, match=r"and 4995 more problems") as info:
        Recipe.from_dict(bad)
    assert len(str(info.value)) < 2000


@pytest.mark.parametrize(("text", "message"), [
    ("finetune: {epochs: 1.0e+308}", "finetune.epochs: input should be less than or equal to 1000"),
    ("schedule: {kind: iterative, steps: 100000}", "schedule.steps: input should be less than or equal to 1000"),
    ("finetune: {batch_size: 10000000}", "finetune.batch_size: input should be less than or equal to 65536"),
    ("granularity: channel\nround_to: 100000", "round_to: input should be less than or equal to 65536"),
    ("seed: -1", "seed: input should be greater than or equal to 0"),
])
def test_work_without_a_natural_bound_is_refused_naming_the_bound(text, message):
    from pruner_core.pruning.recipe import RecipeError

    with pytest.raises(RecipeError, match=message):
        Recipe.from_yaml(text)


def test_a_run_whose_base_is_itself_is_refused_not_a_recursion(tmp_path):
    run = done_run(tmp_path, "loop")
    base = json.loads((run.path / "base.json").read_text())
    (run.path / "base.json").write_text(json.dumps({**base, "spec": str(run.path)}))
    with pytest.raises(PrunerError, match=r"run '.*loop': base.json names itself as its base model"):
        load_run_model(run.path)
    result = CliRunner().invoke(app, ["info", str(run.path), "--runs", "1"])
    assert result.exit_code == 2 and "names itself" in result.stderr


def test_a_run_declaring_a_huge_input_is_listed_damaged_without_allocating_it(tmp_path):
    run = done_run(tmp_path, "huge")
    base = json.loads((run.path / "base.json").read_text())
    (run.path / "base.json").write_text(json.dumps({**base, "input_shape": [1, 100000, 100000]}))
    [listed] = list_runs(tmp_path)
    assert listed.status == "damaged"
    assert "input_shape [1, 100000, 100000] is 10,000,000,000 values per sample; at most 67,108,864" in listed.error


def test_zero_dimensional_data_is_named(tmp_path):
    import numpy as np

    from pruner_core.io.data import load_data

    np.savez(tmp_path / "scalar.npz", x=np.float32(3.0), y=np.int64(1))
    with pytest.raises(PrunerError, match=r"'x' holds no samples \(it is a single number, not an array of samples\)"):
        load_data(str(tmp_path / "scalar.npz"))


def test_an_output_path_that_is_a_folder_is_refused_before_measuring(tmp_path):
    result = CliRunner().invoke(app, ["info", "demo:lenet300", "--json", str(tmp_path)])
    assert result.exit_code == 2 and f"--json '{tmp_path}' is a folder; name a file to write" in result.stderr
    result = CliRunner().invoke(app, ["analyze", "demo:lenet300", "--json", str(tmp_path / "no" / "a.json")])
    assert result.exit_code == 2 and "does not exist" in result.stderr
    assert "latency" not in result.output  # refused up front, before anything was measured


def test_files_that_are_not_models_say_what_they_are(tmp_path):
    import os

    class Payload:
        def __reduce__(self):
            return (os.system, ("true",))

    torch.save({"x": Payload()}, tmp_path / "evil.pt")
    (tmp_path / "text.pt").write_text("hello, this is not a model")
    (tmp_path / "empty.pt").write_bytes(b"")
    cases = {
        "evil.pt": r"holds pickled Python objects, not only tensors \(it calls posix.system\); loading it runs code",
        "text.pt": r"is not a readable PyTorch weights file: it holds text \('hello, this is not a model'\.\.\.\)",
        "empty.pt": r"is empty \(0 bytes\): the copy or download did not finish",
    }
    for name, message in cases.items():
        with pytest.raises(PrunerError, match=message):
            load_model(str(tmp_path / name))


def test_exporting_a_run_without_an_input_shape_says_so(tmp_path):
    run = done_run(tmp_path / "runs", "noshape")
    base = json.loads((run.path / "base.json").read_text())
    (run.path / "base.json").write_text(json.dumps({k: v for k, v in base.items() if k != "input_shape"}))
    with pytest.raises(PrunerError, match="records no input_shape, so the model cannot be traced to ONNX"):
        export_run(run.path, tmp_path / "out")
    assert (tmp_path / "out" / "weights.safetensors").is_file()  # what could be written was


def test_a_round_to_that_keeps_every_channel_is_named_not_a_silent_no_op(demo_data, tmp_path):
    from pruner_core.pipeline.run import run_experiment

    recipe = Recipe(granularity="channel", sparsity=0.5, round_to=1000, finetune={"epochs": 0})
    with pytest.raises(PrunerError, match=r"round_to 1000 keeps every channel of every group \(the widest has 128\)"):
        run_experiment(load_model("demo:mnist-cnn"), demo_data, recipe, data_spec="demo:mnist5k", root=tmp_path)


def _png(width: int, height: int) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_data_that_would_exhaust_memory_is_refused_from_its_headers(tmp_path):
    import zipfile

    import numpy as np

    from pruner_core.io.data import load_data

    np.savez(tmp_path / "labels.npz", x=np.zeros((4, 1, 8, 8), np.float32), y=np.array([0, 1, 2, 2**62]))
    with pytest.raises(PrunerError, match=r"holds the label 4611686018427387904; labels must be below 100,000"):
        load_data(str(tmp_path / "labels.npz"))
    with zipfile.ZipFile(tmp_path / "big.zip", "w") as z:  # a few kB of PNG that decodes to 25 M pixels
        z.writestr("a/1.png", _png(5000, 5000))
        z.writestr("b/1.png", _png(5000, 5000))
    with pytest.raises(PrunerError, match=r"image 'a/1.png' is 5000x5000 pixels; at most 16,777,216 pixels per image"):
        load_data(str(tmp_path / "big.zip"))


def test_an_encrypted_zip_is_named(tmp_path):
    import zipfile

    from pruner_core.io.data import load_data

    with zipfile.ZipFile(tmp_path / "locked.zip", "w") as z:
        for member in ("a/1.png", "b/1.png"):
            z.writestr(member, _png(8, 8))
    raw = bytearray((tmp_path / "locked.zip").read_bytes())
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # set the "encrypted" flag in every header
        at = raw.find(signature)
        while at != -1:
            raw[at + offset] |= 0x1
            at = raw.find(signature, at + 4)
    (tmp_path / "locked.zip").write_bytes(bytes(raw))
    with pytest.raises(PrunerError, match=r"cannot read image 'a/1.png' in the zip: .*encrypted.*\(give an unencrypted zip\)"):
        load_data(str(tmp_path / "locked.zip"))


def test_a_factory_that_calls_sys_exit_is_named_not_a_silent_exit(probe, tmp_path, monkeypatch):
    name, _ = probe
    module_file = tmp_path / f"{name}_exit.py"
    module_file.write_text("import sys\n\ndef make():\n    sys.exit(3)\n")
    with pytest.raises(PrunerError, match=rf"calling '{name}_exit:make\(\)' called sys.exit\(3\); a factory must return"):
        load_model(f"{name}_exit:make")
    sys.modules.pop(f"{name}_exit", None)


def test_ctrl_c_during_a_run_leaves_it_cancelled_with_a_reason(tmp_path, demo_data):
    from pruner_core.pipeline.run import run_experiment

    def interrupt(update):
        if update.phase == "finetune":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_experiment(load_model("demo:lenet300"), demo_data, Recipe(finetune={"epochs": 0.05}), data_spec="demo:mnist5k",
                       root=tmp_path, callback=interrupt)
    [run] = list_runs(tmp_path)
    assert run.status == "cancelled" and run.error == "stopped by the user (Ctrl-C) before it finished; nothing of it was kept"


@pytest.mark.parametrize("kind", ["torchscript", "export", "state_dict"])
def test_an_archive_with_bytes_damaged_mid_file_is_refused_naming_the_member(tmp_path, kind):
    """4 kB of random bytes written into the middle of a model file: torch's reader does not check the archive's
    checksums, so the damaged model loaded and measured 10% accuracy. Now the member that fails is named."""
    import random
    import zipfile

    from pruner_core.errors import ModelLoadError

    path = tmp_path / {"torchscript": "m.ts", "export": "m.pt2", "state_dict": "w.pt"}[kind]
    module = load_model("demo:mnist-cnn").module
    if kind == "torchscript":
        torch.jit.script(module).save(str(path))
    elif kind == "export":
        batch = torch.export.Dim("batch", min=1)
        torch.export.save(torch.export.export(module, (torch.zeros(2, 1, 28, 28),), dynamic_shapes=({0: batch},)), path)
    else:
        torch.save(module.state_dict(), path)
    with zipfile.ZipFile(path) as z:  # damage the largest member's data (the weights), not the zip's directory
        big = max(z.infolist(), key=lambda i: i.compress_size)
        start = big.header_offset + 30 + len(big.filename.encode()) + len(big.extra) + big.compress_size // 3
    data = bytearray(path.read_bytes())
    data[start : start + 4096] = random.Random(0).randbytes(4096)
    path.write_bytes(bytes(data))
    spec, weights = (str(path), None) if kind != "state_dict" else ("demo:mnist-cnn", str(path))
    with pytest.raises(ModelLoadError, match=rf"'{path.name}' is damaged: its member '.*' does not match the checksum"):
        load_model(spec, weights=weights)
