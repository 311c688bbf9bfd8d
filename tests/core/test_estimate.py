"""The cost of a run, said before it starts: the steps the recipe asks for, one step timed, cancellable."""

from __future__ import annotations

import math

import pytest
from typer.testing import CliRunner

from pruner_core.frontends.cli import app
from pruner_core.io.models import load_model
from pruner_core.pipeline.estimate import Estimate, estimate
from pruner_core.pruning.recipe import Recipe


@pytest.mark.parametrize(("finetune", "schedule", "steps", "rounds"), [
    ({"epochs": 1}, {"kind": "oneshot"}, 63, 1),  # 4,000 training images in batches of 64
    ({"epochs": 0}, {"kind": "oneshot"}, 0, 1),
    ({"epochs": 0.5, "batch_size": 128}, {"kind": "oneshot"}, 16, 1),
    ({"epochs": 3}, {"kind": "iterative", "steps": 3}, 3 * 63, 3),
    ({"epochs": 1000}, {"kind": "gmp", "steps": 10}, 63_000, 1),
])
def test_the_steps_are_those_fine_tuning_will_take(demo_data, finetune, schedule, steps, rounds):
    model = load_model("demo:lenet300")
    before = model.fingerprint()
    cost = estimate(model, demo_data, Recipe.from_dict({"finetune": finetune, "schedule": schedule}))
    assert (cost.steps, cost.rounds) == (steps, rounds)
    assert (cost.step_ms > 0) == (steps > 0)
    assert math.isclose(cost.seconds, steps * cost.step_ms / 1000)
    assert model.fingerprint() == before  # timed on a copy


def test_the_sentence_says_steps_time_and_that_it_can_be_cancelled():
    text = Estimate(63_000, 1, 321.0, 64).sentence()
    assert text == ("Estimated cost: 63,000 fine-tuning steps of batch 64 at 321 ms each (one step timed here) ≈ "
                    "5.6 h, plus pruning and measuring. It can be cancelled at any step.")
    assert "≈ 6 s" in Estimate(20, 3, 300.0, 64).sentence() and "3 pruning rounds" in Estimate(20, 3, 300.0, 64).sentence()
    assert Estimate(0, 1, 0.0, 64).sentence() == ("Estimated cost: no fine-tuning; pruning and measuring (accuracy, "
                                                  "size, latency) only.")


def test_pruner_prune_says_the_cost_before_it_starts(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("granularity: unstructured\nsparsity: 0.5\nfinetune: {epochs: 0.05}\n")
    result = CliRunner().invoke(app, ["prune", "demo:lenet300", "--recipe", str(recipe), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0]
    assert first.startswith("Estimated cost: 3 fine-tuning steps of batch 64 at ") and "stopped with Ctrl-C" in first
