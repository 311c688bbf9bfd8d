"""Run folders: create -> finish/fail -> list -> reload, and every way a folder on disk can be broken."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from pruner_core.errors import ModelLoadError, PrunerError, SpecError
from pruner_core.io.models import load_model
from pruner_core.pipeline import runs as experiments
from pruner_core.pipeline.finetune import EpochRecord
from pruner_core.pipeline.replay import load_run_masks, load_run_model
from pruner_core.pipeline.runs import base_info, create_run, fail_run, finish_run, list_runs, load_run, write_history
from pruner_core.pruning.channels import plan_channels, prune_channels
from pruner_core.pruning.describe import describe_model
from pruner_core.pruning.recipe import Recipe

from .helpers import noise

REPO = Path(__file__).resolve().parents[2]
X = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
CNN_BASE = {"spec": "demo:mnist-cnn", "weights": None, "trust": False, "data": "demo:mnist5k", "input_shape": [1, 28, 28]}


def magnitude_masks(module: torch.nn.Module, layers: list[str], ratio: float) -> dict[str, torch.Tensor]:
    """Keep-masks removing the ``ratio`` smallest |w| of each layer (independent of pruner_core.pruning.select)."""
    masks = {}
    for name in layers:
        w = module.get_submodule(name).weight.detach().abs()
        k = int(round(ratio * w.numel()))
        threshold = w.flatten().kthvalue(k).values
        masks[name] = w > threshold
    return masks


def masked_cnn() -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    module = load_model("demo:mnist-cnn").module
    masks = magnitude_masks(module, ["conv1", "conv2", "fc1"], 0.5)
    with torch.no_grad():
        for name, mask in masks.items():
            module.get_submodule(name).weight.mul_(mask)
    return module, masks


def set_status(run, **changes) -> None:
    """Edit status.json behind the library's back (what a crash or another process leaves)."""
    path = run.path / "status.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- creating ----------------------------------------------------------------------------------------


def test_create_run_writes_recipe_base_and_running_status(tmp_path):
    recipe = Recipe(granularity="kernel", sparsity=0.3)
    run = create_run(tmp_path, CNN_BASE, recipe)
    assert run.id.endswith("-kernel-l1-30") and len(run.id.split("-")[0]) == 8  # YYYYmmdd-HHMMSS-slug
    assert sorted(p.name for p in run.path.iterdir()) == ["base.json", "recipe.yaml", "status.json"]
    assert Recipe.load(run.path / "recipe.yaml") == recipe
    status = json.loads((run.path / "status.json").read_text())
    assert (status["status"], status["pid"], status["finished"], status["error"]) == ("running", os.getpid(), None, None)
    base = json.loads((run.path / "base.json").read_text())
    assert base["spec"] == "demo:mnist-cnn" and base["input_shape"] == [1, 28, 28] and base["created"]
    assert run.label == f"{run.id} · kernel l1 layerwise 30%, oneshot, 1 epoch fine-tune"


def test_run_ids_are_unique_and_named(tmp_path):
    ids = [create_run(tmp_path, CNN_BASE, Recipe(), name="My run!").id for _ in range(3)]
    assert len(set(ids)) == 3 and all("-my-run" in i for i in ids)


@pytest.mark.parametrize(("recipe", "slug"), [
    ({"granularity": "channel", "sparsity": 0.5}, "-channel-l1-50"),
    ({"granularity": "channel", "sparsity": 0.0, "layers": {"conv1": 0.22, "conv2": 0.5, "fc1": 0.81}},
     "-channel-l1-layers-22to81"),  # once "-channel-l1-0": the slider's value, which the layers override
    ({"sparsity": 0.3, "layers": {"conv1": 0.4}}, "-unstructured-l1-layers-40"),
    ({"granularity": "nm", "criterion": "l1"}, "-nm-l1-2of4"),
])
def test_a_run_is_named_by_what_it_prunes(tmp_path, recipe, slug):
    assert create_run(tmp_path, CNN_BASE, Recipe.from_dict(recipe)).id.endswith(slug)


def test_base_needs_a_model_spec(tmp_path):
    with pytest.raises(PrunerError, match=r"a run's base must name the model it prunes"):
        create_run(tmp_path, {"weights": "w.safetensors"}, Recipe())
    assert list(tmp_path.iterdir()) == []


def test_base_info_describes_a_loaded_model():
    model = load_model("demo:mnist-cnn")
    info = base_info(model, data="demo:mnist5k")
    assert info == {**CNN_BASE, "fingerprint": model.fingerprint()}


def test_default_root_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNER_RUNS", str(tmp_path / "elsewhere"))
    run = create_run(None, CNN_BASE, Recipe())
    assert run.path.parent == tmp_path / "elsewhere"
    assert [r.id for r in list_runs()] == [run.id]


# --- a masked run, start to finish ---------------------------------------------------------------------


def test_masked_run_round_trips_weights_masks_and_outputs(tmp_path):
    pruned, masks = masked_cnn()
    run = create_run(tmp_path, CNN_BASE, Recipe())
    write_history(run, [EpochRecord(1, test_accuracy=torch.tensor(0.9))])
    finish_run(run, state_dict=pruned.state_dict(), masks=masks, structure=None, metrics={"accuracy": 0.97})

    [listed] = list_runs(tmp_path)
    assert (listed.id, listed.status, listed.error) == (run.id, "done", None)
    assert listed.recipe == Recipe() and listed.structure == []
    assert listed.history == [EpochRecord(1, test_accuracy=pytest.approx(0.9))]
    assert listed.metrics["accuracy"] == 0.97
    assert listed.metrics["sparsity"] == {name: pytest.approx(0.5, abs=1e-3) for name in masks}

    loaded = load_run_model(listed)
    assert (loaded.fmt, loaded.spec, loaded.arch, loaded.eager) == ("run", str(run.path), "mnist-cnn", True)
    assert loaded.card["run"] == run.id
    sd = loaded.module.state_dict()
    assert all(torch.equal(sd[k], v) for k, v in pruned.state_dict().items())
    with torch.no_grad():
        assert torch.equal(loaded.module(X), pruned(X))
    assert not any(m.training for m in loaded.module.modules())

    stored = load_run_masks(run)
    assert stored.keys() == masks.keys() and all(torch.equal(stored[k], masks[k]) for k in masks)
    assert load_file(str(run.path / "masks.safetensors"))["conv1"].dtype == torch.bool


def test_a_run_folder_is_a_model_spec(tmp_path):
    pruned, masks = masked_cnn()
    run = create_run(tmp_path, CNN_BASE, Recipe())
    finish_run(run, state_dict=pruned.state_dict(), masks=masks, metrics={})
    loaded = load_model(str(run.path))
    assert loaded.fmt == "run"
    with torch.no_grad():
        assert torch.equal(loaded.module(X), pruned(X))
    with pytest.raises(SpecError, match=r"pruning run folder, which carries its own pruned weights"):
        load_model(str(run.path), weights=run.path / "weights.safetensors")


def test_a_run_of_a_trusted_pickle_needs_trust_again(tmp_path):
    base = tmp_path / "whole.pt"
    torch.save(load_model("demo:mnist-cnn").module, base)
    pruned, masks = masked_cnn()
    run = create_run(tmp_path / "runs", {"spec": str(base), "trust": True}, Recipe())
    finish_run(run, state_dict=pruned.state_dict(), masks=masks, metrics={})
    with pytest.raises(PrunerError, match="trust"):  # a run folder alone never makes us unpickle
        load_run_model(run)
    with torch.no_grad():
        assert torch.equal(load_run_model(run, trust=True).module(X), pruned(X))


def test_history_is_rewritten_while_running(tmp_path):
    run = create_run(tmp_path, CNN_BASE, Recipe())
    for epoch in range(1, 4):
        write_history(run, [EpochRecord(e, train_loss=1 / e) for e in range(1, epoch + 1)])
        assert [row.epoch for row in load_run(run.path).history] == list(range(1, epoch + 1))
    assert load_run(run.path).status == "running"
    with pytest.raises(PrunerError, match=r"is running; only a finished run has a pruned model"):
        load_run_model(run)


def test_weights_that_do_not_fit_the_base_are_refused(tmp_path):
    run = create_run(tmp_path, {"spec": "demo:lenet300"}, Recipe())
    finish_run(run, state_dict=load_model("demo:mnist-cnn").module.state_dict(), metrics={})
    with pytest.raises(ModelLoadError, match=r"weights '.*/weights.safetensors' do not fit architecture 'lenet300'"):
        load_run_model(run.path)


# --- failures: marked, and nothing outside the run folder touched --------------------------------------


@pytest.mark.parametrize("cancelled, status", [(False, "failed"), (True, "cancelled")])
def test_failed_run_is_marked_and_the_base_file_untouched(tmp_path, cancelled, status):
    weights = tmp_path / "base.safetensors"
    save_file({k: v.contiguous() for k, v in load_model("demo:mnist-cnn").module.state_dict().items()}, weights)
    before = sha256(weights)
    other = create_run(tmp_path / "runs", {"spec": "demo:mnist-cnn", "weights": str(weights)}, Recipe())
    run = create_run(tmp_path / "runs", {"spec": "demo:mnist-cnn", "weights": str(weights)}, Recipe())
    fail_run(run, "RuntimeError: out of memory", cancelled=cancelled)

    listed = {r.id: r for r in list_runs(tmp_path / "runs")}
    assert (listed[run.id].status, listed[run.id].error) == (status, "RuntimeError: out of memory")
    assert listed[other.id].status == "running"
    assert json.loads((run.path / "status.json").read_text())["finished"]
    assert sha256(weights) == before and sorted(p.name for p in tmp_path.iterdir()) == ["base.safetensors", "runs"]
    with pytest.raises(PrunerError, match=rf"is {status} \(RuntimeError: out of memory\)"):
        load_run_model(run)
    with pytest.raises(PrunerError, match=rf"is {status}, not running; its results are left as they are"):
        finish_run(run, state_dict={}, metrics={})


def test_a_done_run_is_never_downgraded(tmp_path):
    pruned, masks = masked_cnn()
    run = create_run(tmp_path, CNN_BASE, Recipe())
    finish_run(run, state_dict=pruned.state_dict(), masks=masks, metrics={})
    fail_run(run, "late error")
    assert load_run(run.path).status == "done"


def test_fail_run_marks_a_run_whose_status_file_was_damaged(tmp_path):
    run = create_run(tmp_path, CNN_BASE, Recipe())
    (run.path / "status.json").write_bytes(noise(1, 32))
    fail_run(run, "ValueError: boom")  # called from an error handler: must not raise a second error
    assert (load_run(run.path).status, load_run(run.path).error) == ("failed", "ValueError: boom")


def test_writes_are_atomic_and_leave_no_temp_files(tmp_path, monkeypatch):
    pruned, masks = masked_cnn()
    run = create_run(tmp_path, CNN_BASE, Recipe())
    write_history(run, [EpochRecord(1)])
    finish_run(run, state_dict=pruned.state_dict(), masks=masks, metrics={})
    assert temp_files(tmp_path) == []

    real_write_bytes = Path.write_bytes

    def crash_half_way(self: Path, data: bytes) -> int:
        if not self.name.startswith(".history.json"):
            return real_write_bytes(self, data)
        real_write_bytes(self, data[:5])  # the process dies in the middle of writing
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_bytes", crash_half_way)
    with pytest.raises(KeyboardInterrupt):
        write_history(run, [EpochRecord(1), EpochRecord(2)])
    assert temp_files(tmp_path) == []
    assert json.loads((run.path / "history.json").read_text()) == [EpochRecord(1).to_json()]  # the old file, whole


def test_only_run_artifacts_can_be_written(tmp_path):
    run = create_run(tmp_path, CNN_BASE, Recipe())
    with pytest.raises(ValueError, match="not a run artifact"):
        experiments.write_artifact(run, "../escape.json", b"{}")
    assert not (tmp_path / "escape.json").exists()


# --- listing: damaged and interrupted runs -----------------------------------------------------------


def test_list_runs_is_newest_first_and_empty_for_a_missing_root(tmp_path):
    first = create_run(tmp_path, CNN_BASE, Recipe())
    second = create_run(tmp_path, CNN_BASE, Recipe(sparsity=0.7))
    assert [r.id for r in list_runs(tmp_path)] == [second.id, first.id]
    assert list_runs(tmp_path / "nope") == []


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda p: (p / "status.json").write_bytes(noise(0, 64)), r"status.json is not readable JSON"),
        (lambda p: (p / "status.json").write_text("[1, 2]"), r"status.json holds a list, expected a JSON object"),
        (lambda p: (p / "status.json").write_text('{"status": "paused"}'), r"status.json has status 'paused'"),
        (lambda p: (p / "status.json").unlink(), r"status.json is missing"),
        (lambda p: (p / "recipe.yaml").unlink(), r"recipe.yaml is missing"),
        (lambda p: (p / "recipe.yaml").write_text("sparsity: 2"), r"recipe.yaml: sparsity: input should be less than 1"),
        (lambda p: (p / "base.json").write_text("{}"), r"base.json does not name the base model"),
        (lambda p: (p / "history.json").write_text("[{"), r"history.json is not readable JSON"),
        (lambda p: (p / "weights.safetensors").unlink(), r"it is marked done but weights.safetensors is missing"),
    ],
)
def test_a_damaged_folder_is_listed_as_damaged_without_raising(tmp_path, damage, reason):
    pruned, masks = masked_cnn()
    good = create_run(tmp_path, CNN_BASE, Recipe())
    bad = create_run(tmp_path, CNN_BASE, Recipe())
    finish_run(bad, state_dict=pruned.state_dict(), masks=masks, metrics={})
    damage(bad.path)
    (tmp_path / "stray-empty-folder").mkdir()

    runs = {r.id: r for r in list_runs(tmp_path)}
    assert runs[good.id].status == "running"
    assert runs[bad.id].status == "damaged" and runs[bad.id].recipe is None
    assert re.search(reason, runs[bad.id].error)
    assert runs["stray-empty-folder"].status == "damaged"
    assert runs[bad.id].label.startswith(f"{bad.id} · damaged: ")
    with pytest.raises(PrunerError, match=reason):
        load_run(bad.path)
    with pytest.raises(PrunerError, match=reason):
        load_run_model(bad.path)


def test_a_run_whose_process_died_is_interrupted(tmp_path):
    run = create_run(tmp_path, CNN_BASE, Recipe())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    set_status(run, pid=dead.pid)
    [listed] = list_runs(tmp_path)
    assert listed.status == "interrupted"
    assert listed.error == f"the process that ran it (pid {dead.pid}) has ended"


def test_a_run_older_than_the_process_holding_its_pid_is_interrupted(tmp_path):
    run = create_run(tmp_path, CNN_BASE, Recipe())
    assert load_run(run.path).status == "running"  # this process, alive since before the run started
    set_status(run, started="2001-01-01T00:00:00+00:00")  # the pid was reused by us since then
    listed = load_run(run.path)
    assert listed.status == "interrupted" and "started after the run" in listed.error


# --- a channel-pruned run rebuilt in a new process -----------------------------------------------------


def test_channel_run_rebuilds_in_a_new_process_with_identical_outputs(tmp_path):
    base = load_model("demo:resnet20")
    example = torch.zeros(1, 1, 28, 28)
    target = Recipe(granularity="channel", sparsity=0.5).target(describe_model(base, (1, 28, 28)))
    pruned = copy.deepcopy(base.module)
    plan = plan_channels(pruned, target, example)
    prune_channels(pruned, plan, example)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in base.module.parameters())
    run = create_run(tmp_path / "runs", base_info(base), Recipe(granularity="channel", sparsity=0.5))
    finish_run(run, state_dict=pruned.state_dict(), structure=plan, metrics={})
    assert json.loads((run.path / "structure.json").read_text()) == plan
    with torch.no_grad():
        save_file({"x": X, "expected": pruned(X)}, tmp_path / "io.safetensors")

    script = textwrap.dedent(f"""
        import torch
        from safetensors.torch import load_file, save_file
        from pruner_core.pipeline.replay import load_run_model
        io = load_file({str(tmp_path / "io.safetensors")!r})
        model = load_run_model({str(run.path)!r})
        with torch.no_grad():
            save_file({{"got": model.module(io["x"])}}, {str(tmp_path / "got.safetensors")!r})
    """)
    subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True, timeout=120)
    got = load_file(str(tmp_path / "got.safetensors"))["got"]
    assert torch.equal(got, load_file(str(tmp_path / "io.safetensors"))["expected"])
