"""What a run will cost, said before it starts: its fine-tuning steps, and their time from one step measured here.

One training step (forward, backward, optimizer update; the teacher's forward too when distilling) is timed on a
copy of the model with a batch of the recipe's size; the estimate is that times the steps the recipe asks for
(every round's, for iterative schedules). Pruning, the final evaluation and the latency measurements come on top:
the sentence says so rather than guessing them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from pruner_core.config.text import format_duration
from pruner_core.io.data import Dataset
from pruner_core.io.models import LoadedModel, copy_module
from pruner_core.pipeline.finetune import step_count
from pruner_core.pruning.recipe import Recipe


@dataclass(frozen=True)
class Estimate:
    """The fine-tuning a recipe asks for, and what it should take on this machine."""

    steps: int
    rounds: int  # pruning rounds (iterative schedules prune, then fine-tune, this many times)
    step_ms: float  # one training step, measured here (0 when there are no steps)
    batch_size: int

    @property
    def seconds(self) -> float:
        return self.steps * self.step_ms / 1000

    def sentence(self) -> str:
        rounds = f"{self.rounds} pruning rounds, " if self.rounds > 1 else ""
        if not self.steps:
            return f"Estimated cost: {rounds}no fine-tuning; pruning and measuring (accuracy, size, latency) only."
        return (f"Estimated cost: {rounds}{self.steps:,} fine-tuning steps of batch {self.batch_size} at "
                f"{self.step_ms:,.0f} ms each (one step timed here) ≈ {format_duration(self.seconds)}, plus pruning and "
                "measuring. It can be cancelled at any step.")


def estimate(model: LoadedModel, data: Dataset, recipe: Recipe, step_ms: float | None = None) -> Estimate:
    """The fine-tuning steps of ``recipe`` on ``data`` and one step timed on a copy of ``model`` (not modified);
    ``step_ms`` when already timed (:func:`time_step` with the recipe's batch size and distillation)."""
    config = recipe.finetune
    rounds = recipe.schedule.steps if recipe.schedule.kind == "iterative" else 1
    steps = rounds * step_count(config.epochs / rounds, len(data.y_train), config.batch_size)
    if not steps:
        return Estimate(0, rounds, 0.0, config.batch_size)
    if step_ms is None:
        step_ms = time_step(model, data, config.batch_size, config.distill)
    return Estimate(steps, rounds, step_ms, config.batch_size)


def time_step(model: LoadedModel, data: Dataset, batch_size: int, distill: bool) -> float:
    """Milliseconds of one training step, the faster of two (the first pays for warming up)."""
    work = copy_module(model.module).train()
    optimizer = torch.optim.SGD([p for p in work.parameters() if p.requires_grad], lr=0.0)  # lr 0: nothing learns
    x, y = data.x_train[:batch_size], data.y_train[:batch_size]
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        with torch.enable_grad():
            loss = torch.nn.functional.cross_entropy(work(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if distill:
            with torch.no_grad():
                model.module(x)
        best = min(best, time.perf_counter() - start)
    return best * 1000  # fine-tuning's batches are at most the data set: a smaller set steps on all of it, as here
