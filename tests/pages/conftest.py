"""Page tests: Streamlit's AppTest driving app.py, with files a user would pick."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from pruner_core.io.archs import ARCHITECTURES

APP = str(Path(__file__).resolve().parents[2] / "app.py")


@pytest.fixture
def app() -> AppTest:
    """The app, opened on its default page (Model, with the demo model and data active)."""
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception
    return at


@pytest.fixture(scope="session")
def user_files(tmp_path_factory) -> dict[str, Path]:
    """Files a user might pick: good and bad models and data."""
    d = tmp_path_factory.mktemp("user_files")
    torch.manual_seed(0)
    cnn = ARCHITECTURES["mnist-cnn"].build().eval()
    files = {
        "corrupt_model": d / "broken.pt",
        "state_dict": d / "cnn_weights.pt",
        "pickled": d / "whole_model.pt",
        "torchscript": d / "cnn_scripted.pt",
        "wrong_shape_data": d / "cifar_like.npz",
        "bad_labels_data": d / "labels12.npz",
        "empty_zip": d / "empty.zip",
    }
    files["corrupt_model"].write_bytes(b"\x00not a model" * 50)
    torch.save(cnn.state_dict(), files["state_dict"])
    torch.save(cnn, files["pickled"])
    torch.jit.script(cnn).save(str(files["torchscript"]))
    rng = np.random.default_rng(0)
    np.savez(files["wrong_shape_data"], x=rng.integers(0, 255, (10, 3, 32, 32), dtype=np.uint8), y=np.arange(10) % 10)
    np.savez(files["bad_labels_data"], x=rng.integers(0, 255, (20, 28, 28), dtype=np.uint8), y=np.arange(20) % 13)
    import zipfile

    with zipfile.ZipFile(files["empty_zip"], "w") as z:
        z.writestr("readme.txt", "no images here")
    return files


@pytest.fixture(autouse=True)
def runs_root(monkeypatch, tmp_path) -> Path:
    """Every page test saves its pruning runs to a fresh temporary folder (``$PRUNER_RUNS``), never ./runs."""
    root = tmp_path / "runs"
    monkeypatch.setenv("PRUNER_RUNS", str(root))
    return root
