"""The recipe under torchrun (real processes, gloo on CPU): two ranks prune identically, fine-tune with
DistributedDataParallel, and rank 0 alone writes one run folder that records the world size and opens like any other;
the masks are a one-process run's, and so (within half a point) is the accuracy."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from pruner_core.frontends.serving import free_port
from pruner_core.pipeline.replay import load_run_model
from pruner_core.pipeline.runs import load_run

BIN = Path(sys.executable).parent
TAYLOR = "granularity: unstructured\ncriterion: taylor\nsparsity: 0.5\nfinetune: {epochs: 1}\nseed: 3\n"
L1 = "granularity: unstructured\ncriterion: l1\nsparsity: 0.5\nfinetune: {epochs: 0}\nseed: 3\n"


def prune(tmp: Path, recipe: str, out: str, ranks: int) -> str:
    (tmp / f"{out}.yaml").write_text(recipe)
    pruner = ["prune", "demo:mnist-cnn", "--recipe", f"{out}.yaml", "--out", out]
    command = ([str(BIN / "torchrun"), f"--nproc_per_node={ranks}", f"--master_port={free_port()}", "--no-python",
                str(BIN / "pruner"), *pruner] if ranks > 1 else [str(BIN / "pruner"), *pruner])
    done = subprocess.run(command, cwd=tmp, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.skipif(shutil.which("torchrun", path=str(BIN)) is None, reason="torchrun is installed with torch")
def test_two_ranks_prune_alike_and_rank_zero_writes_one_run(tmp_path):
    out = prune(tmp_path, TAYLOR, "ddp", 2)
    digests = dict(re.findall(r"rank (\d) of 2: pruned ([0-9a-f]{16})", out))
    assert set(digests) == {"0", "1"} and digests["0"] == digests["1"]  # identical masks on both ranks
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["ddp"]  # one run folder, rank 0's
    assert json.loads((tmp_path / "ddp" / "base.json").read_text())["world_size"] == 2
    run = load_run(tmp_path / "ddp")
    assert run.status == "done" and load_run_model(run).module is not None  # opens like any other run

    prune(tmp_path, TAYLOR, "one", 1)
    one = load_run(tmp_path / "one")
    assert json.loads((tmp_path / "one" / "base.json").read_text())["world_size"] == 1
    assert abs(run.metrics["accuracy"] - one.metrics["accuracy"]) <= 0.005

    prune(tmp_path, L1, "ddp_l1", 2)
    prune(tmp_path, L1, "one_l1", 1)
    a, b = load_file(tmp_path / "ddp_l1" / "masks.safetensors"), load_file(tmp_path / "one_l1" / "masks.safetensors")
    assert a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)  # l1: a one-process run's masks
