"""Seeded training of the demo models (``pruner train-demo``): real training on the real MNIST-5k split.

Each model is written as ``assets/models/NAME.safetensors`` with a JSON card beside it that
records the architecture, data, split, seed, epochs and the test accuracy measured after training.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from pruner_core.errors import SpecError
from pruner_core.io.archs import ARCHITECTURES
from pruner_core.io.data import ASSETS, Dataset, batches, load_data
from pruner_core.measure.metrics import accuracy

MODELS_DIR = ASSETS / "models"
# Epochs chosen so each model clears its accuracy bar on the 1,000 test images with margin.
DEFAULT_EPOCHS = {"lenet300": 40, "mnist-cnn": 20, "resnet20": 20}


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random small rotation (+-10 deg), scale (0.9-1.1) and shift (+-2 px): MNIST's usual augmentation."""
    n = x.shape[0]
    angle = (torch.rand(n, generator=generator) - 0.5) * (20 * torch.pi / 180)
    scale = 0.9 + 0.2 * torch.rand(n, generator=generator)
    shift = (torch.rand(n, 2, generator=generator) - 0.5) * (4 / x.shape[-1]) * 2
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


def train_model(
    name: str,
    data: Dataset,
    *,
    seed: int = 0,
    epochs: int | None = None,
    batch_size: int = 64,
    lr: float = 3e-3,
    progress: Callable[[int, float], None] | None = None,
) -> tuple[torch.nn.Module, dict]:
    """Train one demo architecture from scratch, seeded, with AdamW and a one-cycle schedule.

    Returns:
        The trained module (eval mode) and its card (plain data).
    Raises:
        SpecError: ``name`` is not a demo architecture.
    """
    if name not in ARCHITECTURES:
        raise SpecError(f"unknown demo architecture '{name}'; available: {', '.join(ARCHITECTURES)}")
    arch = ARCHITECTURES[name]
    epochs = epochs or DEFAULT_EPOCHS[name]
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = arch.build()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * ((len(data.y_train) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        total, count = 0.0, 0
        for xb, yb in batches(data.x_train, data.y_train, batch_size, shuffle=True, generator=gen):
            loss = F.cross_entropy(model(augment(xb, gen)), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total, count = total + loss.item() * len(yb), count + len(yb)
        if progress:
            progress(epoch + 1, total / count)
    model.eval()
    acc = accuracy(model, data.x_test, data.y_test)
    card = {
        "name": name,
        "architecture": name,
        "description": arch.description,
        "input_shape": list(arch.input_shape),
        "num_classes": arch.num_classes,
        "data": data.name,
        "split": data.split,
        "train_samples": len(data.y_train),
        "test_samples": len(data.y_test),
        "preprocessing": "pixels / 255 (no normalisation)",
        "seed": seed,
        "epochs": epochs,
        "batch_size": batch_size,
        "optimizer": f"AdamW(lr={lr}, weight_decay=1e-4), OneCycleLR",
        "augmentation": "random rotation +-10 deg, scale 0.9-1.1, shift +-2 px",
        "test_accuracy": acc,
        "train_seconds": round(time.perf_counter() - start, 1),
        "trained_on": f"{platform.machine()} {platform.processor() or platform.system()}, torch {torch.__version__}",
        "trained_at": datetime.now(UTC).strftime("%Y-%m-%d"),
    }
    return model, card


def train_demo(
    names: list[str], *, seed: int = 0, epochs: int | None = None, out_dir: Path = MODELS_DIR, progress=None
) -> list[dict]:
    """Train the named demo models on ``demo:mnist5k`` and write weights + card into ``out_dir``."""
    data = load_data("demo:mnist5k")
    out_dir.mkdir(parents=True, exist_ok=True)
    cards = []
    for name in names:
        model, card = train_model(
            name, data, seed=seed, epochs=epochs, progress=(lambda e, loss, n=name: progress(n, e, loss)) if progress else None
        )
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out_dir / f"{name}.safetensors")
        (out_dir / f"{name}.json").write_text(json.dumps(card, indent=2) + "\n")
        cards.append(card)
    return cards
