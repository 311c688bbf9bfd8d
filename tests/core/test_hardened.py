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
