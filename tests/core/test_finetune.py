"""Fine-tuning after pruning: masks hold, runs are reproducible, schedules, cancel and distillation work."""

from __future__ import annotations

import copy
import dataclasses
import threading

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pruner_core.io.models import load_model
from pruner_core.measure.metrics import accuracy
from pruner_core.pipeline.finetune import OPTIMIZERS, Cancelled, EpochRecord, Progress, finetune
from pruner_core.pruning.recipe import Finetune, RecipeError

from .helpers import tiny_dataset

# 32 samples in batches of 8: 4 steps per epoch.
DATA = tiny_dataset(n=32, shape=(1, 4, 4), classes=3)


def small_net(seed: int = 0) -> nn.Module:
    """Flatten -> Linear(16, 8) -> ReLU -> Linear(8, 3), seeded, eval mode."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3)).eval()


def half_mask(module: nn.Module, name: str) -> torch.Tensor:
    """Keep the larger-magnitude half of a layer's weights."""
    w = module.get_submodule(name).weight.detach().abs()
    return w >= w.median()


def states_equal(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_pruned_weights_stay_exactly_zero_and_the_rest_learn(optimizer):
    model = small_net()
    masks = {"1": half_mask(model, "1"), "3": half_mask(model, "3")}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # The pruned weights do get gradients: only the post-step mask keeps decay and momentum off them.
    probe = copy.deepcopy(model)
    with torch.no_grad():
        probe[1].weight.mul_(masks["1"])
    F.cross_entropy(probe(DATA.x_train), DATA.y_train).backward()
    assert probe[1].weight.grad[~masks["1"]].abs().max() > 0

    finetune(model, DATA, Finetune(epochs=3, lr=1e-2, optimizer=optimizer, batch_size=8), masks=masks)

    for name in ("1", "3"):
        w, keep = model.get_submodule(name).weight, masks[name]
        assert torch.all(w[~keep] == 0), f"{name}: a pruned weight came back"
        changed = (w[keep] != before[f"{name}.weight"][keep]).float().mean()
        assert changed > 0.5, f"{name}: only {changed:.0%} of the kept weights trained"
    assert not torch.equal(model[1].bias, before["1.bias"])
    assert not model.training


def test_weights_are_zeroed_at_the_start():
    model = small_net()
    masks = {"1": half_mask(model, "1")}
    seen = []
    finetune(model, DATA, Finetune(epochs=0.25, batch_size=8), masks=masks, callback=seen.append)
    assert torch.all(model[1].weight[~masks["1"]] == 0)
    assert seen[0].sparsity == pytest.approx(1 - masks["1"].float().mean().item())


def test_same_seed_same_weights_other_seed_other_weights():
    runs = {}
    for key, seed in (("a", 3), ("b", 3), ("c", 4)):
        model = small_net()
        finetune(model, DATA, Finetune(epochs=2, batch_size=8), masks={"1": half_mask(model, "1")}, seed=seed)
        runs[key] = model
    assert states_equal(runs["a"], runs["b"])
    assert not torch.equal(runs["a"][1].weight, runs["c"][1].weight)


def test_global_rng_is_left_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    finetune(small_net(), DATA, Finetune(epochs=1, batch_size=8), seed=9)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize(
    ("epochs", "steps", "history_steps"),
    [(0.5, 2, [2]), (0.01, 1, [1]), (1, 4, [4]), (2.5, 10, [4, 8, 10])],
)
def test_fractional_epochs_run_that_share_of_the_steps(epochs, steps, history_steps):
    seen: list[Progress] = []
    history = finetune(small_net(), DATA, Finetune(epochs=epochs, batch_size=8, checks_per_epoch=1), callback=seen.append)
    assert [p.step for p in seen] == list(range(1, steps + 1))
    assert {p.steps for p in seen} == {steps} and seen[-1].fraction == 1.0
    assert [row.step for row in history] == history_steps
    assert history[-1].epoch == pytest.approx(steps / 4)
    assert [p.step for p in seen if p.test_accuracy is not None] == history_steps
    for row in history:
        assert set(row.to_json()) == {"epoch", "step", "train_loss", "test_accuracy", "lr", "seconds", "sparsity"}
        assert EpochRecord.from_json(row.to_json()) == row
        assert 0 <= row.test_accuracy <= 1 and row.train_loss > 0 and row.sparsity is None
    assert [p.record for p in seen if p.record is not None] == history


def test_learning_rate_decays_along_a_cosine():
    history = finetune(small_net(), DATA, Finetune(epochs=4, lr=0.1, batch_size=8, checks_per_epoch=1))
    lrs = [row.lr for row in history]
    assert lrs == sorted(lrs, reverse=True)
    assert lrs[0] == pytest.approx(0.1 * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * 3 / 16)).item()))
    assert 0 < lrs[-1] < 0.01


@pytest.mark.parametrize("training", [False, True])
def test_zero_epochs_leave_the_module_untouched(training):
    model = small_net().train(training)
    before = copy.deepcopy(model)
    assert finetune(model, DATA, Finetune(epochs=0), masks={"1": half_mask(model, "1")}) == []
    assert states_equal(model, before)
    assert model.training is training


def test_on_step_masks_take_effect_from_that_step_on():
    model = small_net()
    first = half_mask(model, "1")
    w = model[1].weight.detach().abs()
    second = w >= w.quantile(0.75)  # grows sparsity from 50% to 75%
    newly_pruned = first & ~second
    calls, pruned_values, sparsities = [], [], []

    def schedule(step, steps):
        calls.append((step, steps))
        return {"1": second} if step == 2 else None

    def record(p: Progress):
        pruned_values.append(model[1].weight.detach()[newly_pruned].abs().max().item())
        sparsities.append(p.sparsity)

    finetune(model, DATA, Finetune(epochs=1, batch_size=8), masks={"1": first}, on_step=schedule, callback=record)
    assert calls == [(0, 4), (1, 4), (2, 4), (3, 4)]
    assert pruned_values[0] > 0 and pruned_values[1] > 0  # steps 1 and 2 ran under the first mask
    assert pruned_values[2:] == [0, 0]
    assert torch.all(model[1].weight[~second] == 0)
    assert sparsities[:2] == [pytest.approx(1 - first.float().mean().item())] * 2
    assert sparsities[2:] == [pytest.approx(1 - second.float().mean().item())] * 2
    assert sparsities[-1] > 0.7


def test_cancel_stops_before_the_next_step():
    cancel = threading.Event()
    seen = []

    def record(p: Progress):
        seen.append(p.step)
        if p.step == 3:
            cancel.set()

    model = small_net()
    with pytest.raises(Cancelled, match="before step 4 of 8"):
        finetune(model, DATA, Finetune(epochs=2, batch_size=8), callback=record, cancel=cancel)
    assert seen == [1, 2, 3]
    assert not model.training


def test_callback_errors_propagate():
    def boom(p: Progress):
        raise RuntimeError("callback failed")

    with pytest.raises(RuntimeError, match="callback failed"):
        finetune(small_net(), DATA, Finetune(epochs=1, batch_size=8), callback=boom)


def test_distillation_from_a_copy_of_the_student_trains():
    model = small_net()
    teacher = copy.deepcopy(model)
    teacher_before = copy.deepcopy(teacher)
    losses = []
    history = finetune(model, DATA, Finetune(epochs=1, batch_size=8, temperature=4.0, alpha=0.5), teacher=teacher, callback=lambda p: losses.append(p.loss))
    assert all(torch.isfinite(torch.tensor(losses)))
    assert history[-1].train_loss > 0
    assert not torch.equal(model[1].weight, teacher[1].weight)
    assert states_equal(teacher, teacher_before) and not teacher.training


def test_the_student_cannot_be_its_own_teacher():
    model = small_net()
    with pytest.raises(ValueError, match="teacher"):
        finetune(model, DATA, Finetune(epochs=1), teacher=model)


@pytest.mark.parametrize(
    ("masks", "message"),
    [
        ({"nope": torch.ones(8, 16, dtype=torch.bool)}, "layer 'nope'"),
        ({"2": torch.ones(1, dtype=torch.bool)}, "layer '2', which has no weight"),
        ({"1": torch.ones(16, 8, dtype=torch.bool)}, r"layer '1' has shape \(16, 8\) .* shape \(8, 16\)"),
    ],
)
def test_bad_masks_are_rejected_naming_layer_and_shapes(masks, message):
    with pytest.raises(ValueError, match=message):
        finetune(small_net(), DATA, Finetune(epochs=1), masks=masks)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"epochs": -1}, r"finetune.epochs: input should be greater than or equal to 0; got -1"),
     ({"epochs": 1, "optimizer": "lbfgs"}, "unknown optimizer; valid: adamw, adam, sgd; got 'lbfgs'")],
)
def test_bad_arguments_are_rejected(kwargs, message):
    with pytest.raises(RecipeError, match=message):
        finetune(small_net(), DATA, Finetune(**kwargs))


def test_half_pruned_mnist_cnn_recovers_its_accuracy(demo_data):
    model = load_model("demo:mnist-cnn").module
    dense_accuracy = accuracy(model, demo_data.x_test, demo_data.y_test)
    assert dense_accuracy >= 0.985
    masks = {name: half_mask(model, name) for name in ("conv1", "conv2", "fc1")}  # not the classifier fc2
    with torch.no_grad():
        for name, keep in masks.items():
            model.get_submodule(name).weight.mul_(keep)
    pruned_accuracy = accuracy(model, demo_data.x_test, demo_data.y_test)  # 0.78 when measured
    history = finetune(model, demo_data, Finetune(epochs=0.5), masks=masks)
    # Measured over seeds 0-2: 0.980-0.987 after half an epoch (dense 0.989); fine-tuning the dense model itself
    # for an epoch at this lr lands at 0.985, so a 1-point margin is what the procedure reliably holds.
    assert history[-1].test_accuracy >= dense_accuracy - 0.01
    assert history[-1].test_accuracy >= pruned_accuracy + 0.1
    assert history[-1].sparsity >= 0.5 - 1e-4
    assert accuracy(model, demo_data.x_test, demo_data.y_test) == history[-1].test_accuracy


def test_finetuning_works_inside_no_grad():
    from .helpers import tiny_dataset, tiny_mlp

    module, data = tiny_mlp(), tiny_dataset(shape=(4,), classes=2)
    before = [p.clone() for p in module.parameters()]
    with torch.no_grad():
        finetune(module, data, Finetune(epochs=1), augment=False)
    assert any(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))


@pytest.mark.parametrize(("checks", "span"), [(1, 4), (2, 2)])
def test_the_recorded_train_loss_is_the_mean_since_the_previous_row(checks, span):
    seen: list[Progress] = []
    history = finetune(small_net(), DATA, Finetune(epochs=2, batch_size=8, checks_per_epoch=checks), callback=seen.append)
    for record in history:  # 32 samples in batches of 8: every step weighs the same
        steps = [p.loss for p in seen if record.step - span < p.step <= record.step]
        assert record.train_loss == pytest.approx(sum(steps) / len(steps))
        assert record.train_loss != pytest.approx(steps[-1])  # not the epoch's last step


def test_a_history_row_of_the_wrong_kind_is_refused_by_name():
    from pruner_core.errors import PrunerError

    assert EpochRecord.from_json({"epoch": 1, "loss": 0.3}) == EpochRecord(1)  # an older row: its step loss is dropped
    for row, message in (([1, 2], "numeric 'epoch'"), ({"epoch": "one"}, "numeric 'epoch'"),
                         ({"epoch": 1, "test_accuracy": "high"}, "test_accuracy='high'")):
        with pytest.raises(PrunerError, match=message):
            EpochRecord.from_json(row)


def test_augmentation_is_a_recipe_choice_off_by_default_on_user_data():
    plain = small_net()
    finetune(plain, DATA, Finetune(epochs=1, batch_size=8), augment=False)
    auto = small_net()
    finetune(auto, DATA, Finetune(epochs=1, batch_size=8))  # DATA is the user's (not the shipped demo): none
    assert states_equal(auto, plain)
    mnist = small_net()
    finetune(mnist, DATA, Finetune(epochs=1, batch_size=8, augment="mnist"))
    assert not states_equal(mnist, plain)
    demo = small_net()
    finetune(demo, dataclasses.replace(DATA, name="demo:mnist5k"), Finetune(epochs=1, batch_size=8))  # auto: the preset
    assert states_equal(demo, mnist)
    with pytest.raises(RecipeError, match="finetune.augment: unknown augmentation; valid: auto, none, mnist"):
        Finetune(augment="flip")


@pytest.mark.parametrize(("checks", "history_steps"), [(2, [2, 4, 6, 8, 10]), (4, list(range(1, 11))), (3, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])])
def test_test_accuracy_is_checked_several_times_an_epoch_so_one_epoch_draws_a_curve(checks, history_steps):
    history = finetune(small_net(), DATA, Finetune(epochs=2.5, batch_size=8, checks_per_epoch=checks))
    assert [row.step for row in history] == history_steps  # 4 steps an epoch: a check every 4 // checks steps
    assert all(row.train_loss > 0 for row in history)  # each over the steps since the previous row


def test_the_demo_one_epoch_fine_tune_gives_at_least_five_accuracy_points():
    from pruner_core.io.data import load_data
    from pruner_core.io.models import load_model

    history = finetune(load_model("demo:lenet300").module, load_data("demo:mnist5k"), Finetune(epochs=1))
    assert len(history) >= 5 and history[-1].epoch == pytest.approx(1.0)
