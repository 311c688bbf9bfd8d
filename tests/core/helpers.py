"""Tiny models, data sets and files built in the tests (no fixtures: plain functions)."""

from __future__ import annotations

import io
import random
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pruner_core.io.data import Dataset


def tiny_dataset(n: int = 12, shape: tuple[int, ...] = (1, 28, 28), classes: int = 10, seed: int = 0) -> Dataset:
    """A random labelled data set small enough to run anything on in milliseconds."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *shape, generator=g)
    y = torch.arange(n) % classes
    return Dataset("tiny", x, y, x.clone(), y.clone(), [str(i) for i in range(classes)], "test")


def tiny_mlp(seed: int = 0) -> nn.Module:
    """Flatten -> Linear(4, 3) -> ReLU -> Linear(3, 2), seeded, eval mode."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).eval()


def write_npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def png_bytes(pixels: np.ndarray) -> bytes:
    """A PNG of ``pixels`` ([H, W] uint8 gray or [H, W, 3] uint8 RGB)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, payload in members.items():
            zf.writestr(name, payload)
    return path


def noise(seed: int = 0, size: int = 1024) -> bytes:
    """Seeded random bytes: a corrupt file that is the same on every run (what breaks depends on the bytes)."""
    return random.Random(seed).randbytes(size)
