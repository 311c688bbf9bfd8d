"""Fine-tuning after pruning: a seeded training loop that keeps pruned weights exactly zero.

Masks are ``{layer name: bool keep-mask shaped like layer.weight}``. They are enforced by one
multiply after every optimizer step, so neither weight decay nor momentum can bring a pruned
weight back. A schedule (gradual magnitude pruning, ...) can hand in new masks before any step
through ``on_step``; a teacher turns the loss into Hinton distillation. Progress is reported
after every step, test accuracy at every epoch end, and a cancel event stops the loop between
steps.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from pruner_core.config import options
from pruner_core.errors import PrunerError
from pruner_core.graph.layers import layer_lookup
from pruner_core.io.data import Dataset, batches
from pruner_core.measure.metrics import accuracy
from pruner_core.pipeline.distributed import local_batch, local_samples, shard_batches, training_on, world
from pruner_core.pipeline.train import augment as augment_batch
from pruner_core.pruning.recipe import Finetune

WEIGHT_DECAY = 1e-4  # the demo models were trained with this; fine-tuning keeps it

OPTIMIZERS: dict[str, Callable[[Iterable[nn.Parameter], float], torch.optim.Optimizer]] = {
    "adamw": lambda params, lr: torch.optim.AdamW(params, lr=lr, weight_decay=WEIGHT_DECAY),
    "adam": lambda params, lr: torch.optim.Adam(params, lr=lr),
    "sgd": lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=WEIGHT_DECAY),
}
assert set(OPTIMIZERS) == set(options.OPTIMIZERS), "every optimizer name the recipe accepts needs exactly one constructor"


@dataclass(frozen=True)
class EpochRecord:
    """One row of a fine-tuning history, written ``checks_per_epoch`` times an epoch, at every epoch end and at the
    end of a final partial epoch.

    Attributes:
        epoch: epochs done (fractional for a partial one; counts on across the rounds of an iterative schedule).
        step: optimizer steps done.
        train_loss: mean training loss over the samples since the previous row (``None`` in rows saved before it was
            recorded).
        test_accuracy: top-1 on the test split at that step.
        lr: learning rate of the row's last step.
        seconds: since fine-tuning started.
        sparsity: measured zeros over the masked weights (``None`` without masks).
    """

    epoch: float
    step: int | None = None
    train_loss: float | None = None
    test_accuracy: float | None = None
    lr: float | None = None
    seconds: float | None = None
    sparsity: float | None = None

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, row) -> EpochRecord:
        """Read a saved row; keys it does not know are ignored (older rows' ``loss`` was one step's, not the mean).

        Raises:
            PrunerError: a row that is not an object with a numeric ``epoch``, or a field of the wrong type.
        """
        if not isinstance(row, dict) or isinstance(row.get("epoch"), bool) or not isinstance(row.get("epoch"), int | float):
            raise PrunerError(f"a fine-tuning history row must be an object with a numeric 'epoch'; got {str(row)[:80]}")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in row.items() if k in known}
        for key, value in values.items():
            if value is not None and key != "epoch" and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise PrunerError(f"a fine-tuning history row has {key}={str(value)[:40]!r}; expected a number or null")
        return cls(**values)


@dataclass(frozen=True)
class Progress:
    """Where a fine-tuning run stands, passed to the callback after every step.

    ``test_accuracy`` is set only on the steps that end an epoch (and on the last step);
    ``sparsity`` (fraction of masked-out weights over the masked layers) only when masks are set.
    """

    step: int
    steps: int
    epoch: float
    loss: float
    seconds: float
    test_accuracy: float | None = None
    sparsity: float | None = None
    record: EpochRecord | None = None  # the history row, on the steps that end an epoch

    @property
    def fraction(self) -> float:
        """Share of the run done, in [0, 1]."""
        return self.step / self.steps if self.steps else 1.0


class NonFinite(PrunerError):
    """The training loss became NaN or Inf: the weights would be ruined, so fine-tuning stops (the run fails)."""


class Cancelled(PrunerError):
    """The cancel event was set: fine-tuning stopped between two steps (the module is partially trained)."""


def step_count(epochs: float, samples: int, batch_size: int) -> int:
    """The optimizer steps of ``epochs`` over ``samples`` (0 for 0 epochs; at least 1 otherwise)."""
    return max(1, round(epochs * math.ceil(samples / batch_size))) if epochs > 0 and samples > 0 else 0


def _masked_weights(module: nn.Module, masks: dict[str, torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Validate ``masks`` against ``module``; return (weights, float masks) in matching order."""
    weights, floats = [], []
    modules = layer_lookup(module)  # not get_submodule: TorchScript programs do not support it
    for name, mask in masks.items():
        layer = modules.get(name)
        if layer is None:
            raise ValueError(f"mask given for layer '{name}', which the model does not have")
        weight = getattr(layer, "weight", None)
        if not isinstance(weight, torch.Tensor):
            raise ValueError(f"mask given for layer '{name}', which has no weight tensor")
        if tuple(mask.shape) != tuple(weight.shape):
            raise ValueError(
                f"mask for layer '{name}' has shape {tuple(mask.shape)} but the layer's weight has shape"
                f" {tuple(weight.shape)}; they must match"
            )
        weights.append(weight)
        floats.append(mask.detach().to(device=weight.device, dtype=weight.dtype))
    return weights, floats


def _mask_sparsity(masks: list[torch.Tensor]) -> float | None:
    total = sum(m.numel() for m in masks)
    return 1 - sum(float(m.sum()) for m in masks) / total if total else None


@torch.no_grad()
def _weight_sparsity(weights: list[torch.Tensor]) -> float | None:
    total = sum(w.numel() for w in weights)
    return 1 - sum(int(torch.count_nonzero(w)) for w in weights) / total if total else None


def _distillation_loss(
    logits: torch.Tensor, teacher_logits: torch.Tensor, y: torch.Tensor, temperature: float, alpha: float
) -> torch.Tensor:
    # Hinton et al. 2015: KL(teacher || student) on softened outputs, times T^2 so its gradients keep their scale.
    soft = F.kl_div(
        F.log_softmax(logits / temperature, 1),
        F.log_softmax(teacher_logits / temperature, 1),
        reduction="batchmean",
        log_target=True,
    )
    return alpha * soft * temperature**2 + (1 - alpha) * F.cross_entropy(logits, y)


def finetune(
    module: nn.Module,
    data: Dataset,
    config: Finetune | None = None,
    *,
    masks: dict[str, torch.Tensor] | None = None,
    teacher: nn.Module | None = None,
    seed: int = 0,
    augment: bool | None = None,
    on_step: Callable[[int, int], dict[str, torch.Tensor] | None] | None = None,
    callback: Callable[[Progress], None] | None = None,
    cancel: threading.Event | None = None,
    eval_batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> list[EpochRecord]:
    """Fine-tune ``module`` in place on ``data``'s training split, keeping masked-out weights at exactly zero.

    The learning rate decays from ``config.lr`` to 0 along a cosine over the steps. Shuffling and augmentation
    use a generator seeded with ``seed`` and the global RNG is seeded inside a fork of it, so the same
    inputs give bit-identical weights and the caller's RNG state is left as it was. BatchNorm running
    statistics are updated (the module trains in train mode); the module is left in eval mode.

    Args:
        module: the (pruned) model; modified in place.
        data: trained on ``x_train``/``y_train``; test accuracy measured on ``x_test``/``y_test``.
        config: the recipe's fine-tuning section (validated there: epochs, lr, optimizer, batch size,
            checks per epoch, temperature, alpha); default ``Finetune()``. ``epochs`` may be fractional (0.5 = half an epoch's
            steps, rounded, at least 1 step); 0 returns ``[]`` without touching the module.
        masks: layer name -> bool keep-mask shaped like that layer's ``weight``. The weights are zeroed at the
            start and after every optimizer step.
        teacher: a frozen model to distil from (run in eval mode without gradients; its mode is restored).
            The loss becomes ``alpha * KL(teacher || student at temperature T) * T^2 + (1 - alpha) * CE``.
        seed: seeds shuffling, augmentation and any randomness in the module (dropout).
        augment: apply :func:`pruner_core.pipeline.train.augment` (small rotation, scale, shift) to image batches;
            ``None`` lets ``config.augment`` decide (``auto``: only on the shipped demo data, whose digits it suits).
        on_step: called as ``on_step(step, steps)`` before each step (``step`` = steps done so far). A dict it
            returns replaces the masks from that step on (the new masks are applied at once); ``None`` keeps them.
        callback: called with a :class:`Progress` after every step; the epoch-end steps carry the history row.
            An exception it raises propagates.
        cancel: checked before each step; once set, the run stops with :class:`Cancelled`.
        eval_batch_size: batch size of the test-accuracy measurement.
        device: where the steps run (the module, the teacher and each batch are moved there, and back to the CPU
            after); see :func:`~pruner_core.pipeline.distributed.training_device`.

    Returns:
        An :class:`EpochRecord` every ``per_epoch // checks_per_epoch`` steps, at every epoch end and at the last step.

    Raises:
        ValueError: no training samples, a teacher that is the student, or a mask for a layer the module lacks or
            of the wrong shape (the message names the layer and both shapes).
        Cancelled: the cancel event was set. The module is then partially trained and its masks may not
            be the final ones: discard it (reload or restore a copy).

    >>> from pruner_core.io.data import load_data
    >>> from pruner_core.io.models import load_model
    >>> model = load_model("demo:lenet300").module
    >>> keep = {"fc1": model.fc1.weight.abs() >= model.fc1.weight.abs().median()}
    >>> history = finetune(model, load_data("demo:mnist5k"), Finetune(epochs=0.1), masks=keep)
    >>> round(history[-1].sparsity, 2), bool((model.fc1.weight[~keep["fc1"]] == 0).all())
    (0.5, True)
    """
    config = config or Finetune()
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:  # "cuda": the current GPU, named (DDP needs its index)
        device = torch.device("cuda", torch.cuda.current_device())
    epochs, lr, optimizer, batch_size = config.epochs, config.lr, config.optimizer, config.batch_size
    if augment is None:
        augment = config.augment == "mnist" or (config.augment == "auto" and data.name.startswith("demo:"))
    temperature, alpha = config.temperature, config.alpha
    if eval_batch_size < 1:
        raise ValueError(f"eval_batch_size must be >= 1; got {eval_batch_size}")
    if teacher is not None and teacher is module:
        raise ValueError("the teacher must be a separate model (e.g. a copy of the dense model), not the student")
    weights, float_masks = _masked_weights(module, masks or {})
    if epochs == 0:
        return []
    n = len(data.y_train)
    if n == 0:
        raise ValueError(f"{data.name} has no training samples to fine-tune on")
    sharded = world()[1] > 1  # under torchrun: this rank's share of each step (pipeline.distributed)
    local = local_batch(batch_size) if sharded else batch_size
    per_epoch = math.ceil((local_samples(n) if sharded else n) / local)
    steps = step_count(epochs, local_samples(n) if sharded else n, local)
    every = max(1, per_epoch // config.checks_per_epoch)  # steps between test-accuracy checks

    teacher_was_training = teacher.training if teacher is not None else False
    history: list[EpochRecord] = []
    start = time.perf_counter()
    try:
        with (torch.random.fork_rng(devices=[]), torch.enable_grad(),  # callers may hold no_grad
              training_on(module, device) as forward):  # the module, or DDP around it
            torch.manual_seed(seed)
            gen = torch.Generator().manual_seed(seed)
            weights, float_masks = _masked_weights(module, masks or {})  # on the device now
            opt = OPTIMIZERS[optimizer]([p for p in module.parameters() if p.requires_grad], lr)
            if teacher is not None:
                teacher.to(device).eval()
            module.train()
            with torch.no_grad():
                if weights:
                    torch._foreach_mul_(weights, float_masks)
            mask_sparsity = _mask_sparsity(float_masks)
            step, epoch = 0, 0
            while step < steps:
                epoch_loss, epoch_count = 0.0, 0
                stream = (shard_batches(data.x_train, data.y_train, batch_size, seed, epoch) if sharded else
                          batches(data.x_train, data.y_train, batch_size, shuffle=True, generator=gen))
                epoch += 1
                for xb, yb in stream:
                    if step == steps:
                        break
                    if cancel is not None and cancel.is_set():
                        raise Cancelled(f"fine-tuning cancelled before step {step + 1} of {steps} ({step} steps done)")
                    if on_step is not None and (new := on_step(step, steps)) is not None:
                        weights, float_masks = _masked_weights(module, new)
                        with torch.no_grad():
                            if weights:
                                torch._foreach_mul_(weights, float_masks)
                        mask_sparsity = _mask_sparsity(float_masks)
                    step_lr = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
                    for group in opt.param_groups:
                        group["lr"] = step_lr
                    if augment and xb.dim() == 4:
                        xb = augment_batch(xb, gen)
                    xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
                    logits = forward(xb)
                    if teacher is None:
                        loss = F.cross_entropy(logits, yb)
                    else:
                        with torch.no_grad():
                            teacher_logits = teacher(xb)
                        loss = _distillation_loss(logits, teacher_logits, yb, temperature, alpha)
                    if not bool(torch.isfinite(loss)):
                        raise NonFinite(f"fine-tuning stopped at step {step + 1} of {steps}: the loss became "
                                        f"{loss.item()} (lr {step_lr:.3g}); lower finetune.lr, or check the data")
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    if weights:
                        with torch.no_grad():
                            torch._foreach_mul_(weights, float_masks)
                    step += 1
                    loss_value = loss.item()
                    epoch_loss, epoch_count = epoch_loss + loss_value * len(yb), epoch_count + len(yb)
                    record = None
                    if step % per_epoch == 0 or step % every == 0 or step == steps:
                        module.eval()
                        test_accuracy = accuracy(module, data.x_test, data.y_test, eval_batch_size)
                        module.train()
                        record = EpochRecord(step / per_epoch, step, epoch_loss / epoch_count, test_accuracy, step_lr,
                                             time.perf_counter() - start, _weight_sparsity(weights))
                        history.append(record)
                        epoch_loss, epoch_count = 0.0, 0  # each row's loss is over the steps since the previous one
                    if callback is not None:
                        seconds = time.perf_counter() - start
                        sparsity = mask_sparsity if record is None else record.sparsity
                        callback(Progress(step, steps, step / per_epoch, loss_value, seconds,
                                          record and record.test_accuracy, sparsity, record))
    finally:
        module.eval()
        if teacher is not None:
            teacher.to("cpu").train(teacher_was_training)
    return history
