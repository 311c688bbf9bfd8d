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
import torch
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


def test_a_device_is_checked_before_any_work_and_cpu_is_the_default(tmp_path):
    from typer.testing import CliRunner

    from pruner_core.errors import SpecError
    from pruner_core.frontends.cli import app
    from pruner_core.pipeline.distributed import training_device

    assert training_device() == torch.device("cpu")
    with pytest.raises(SpecError, match=r"device 'tpu' is not one of cpu, cuda, cuda:N"):
        training_device("tpu")
    (tmp_path / "r.yaml").write_text("granularity: unstructured\nsparsity: 0.5\nfinetune: {epochs: 0.05}\n")
    if not torch.cuda.is_available():
        result = CliRunner().invoke(app, ["prune", "demo:lenet300", "--recipe", str(tmp_path / "r.yaml"), "--out",
                                          str(tmp_path / "run"), "--device", "cuda"])
        assert result.exit_code == 2 and "sees 0 CUDA GPU(s); use cpu" in result.output
        assert not (tmp_path / "run").exists()
    result = CliRunner().invoke(app, ["prune", "demo:lenet300", "--recipe", str(tmp_path / "r.yaml"), "--out",
                                      str(tmp_path / "cpu"), "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "cpu" / "base.json").read_text())["finetune_device"] == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fine_tuning_on_a_gpu_gives_a_run_measured_on_the_cpu(tmp_path):
    from typer.testing import CliRunner

    from pruner_core.frontends.cli import app

    (tmp_path / "r.yaml").write_text("granularity: channel\nsparsity: 0.3\nfinetune: {epochs: 0.2}\n")
    result = CliRunner().invoke(app, ["prune", "demo:resnet20", "--recipe", str(tmp_path / "r.yaml"), "--out",
                                      str(tmp_path / "gpu"), "--device", "cuda", "--quiet"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "gpu" / "base.json").read_text())["finetune_device"] == "cuda:0"
    assert json.loads((tmp_path / "gpu" / "metrics.json").read_text())["accuracy"] > 0.5
