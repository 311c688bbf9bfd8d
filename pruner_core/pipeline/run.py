"""Run a recipe: prune a copy of a model on a schedule, fine-tune it, measure it, save it as an experiment.

``SCHEDULES`` is the registry of schedules. Each gets the working copy and yields to fine-tuning:

- ``oneshot``: prune once to the target, then fine-tune.
- ``iterative`` (Han et al. 2015): ``steps`` rounds of prune -> fine-tune; after round i the kept fraction is
  ``(1 - ratio) ** (i / steps)``, so the last round reaches the target; the epochs are shared between rounds.
- ``gmp`` (Zhu & Gupta 2017): masks are recomputed ``steps`` times during fine-tuning, sparsity following
  ``s_j = s_f * (1 - (1 - j / steps) ** 3)``; the pruning updates span the first 3/4 of the steps and the
  last quarter fine-tunes at the final sparsity.

The original model is never modified: everything happens on a deep copy. The same model, data and recipe
give the same masks and weights (every random choice is seeded by the recipe), from the page or the CLI.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from pruner_core.config import options
from pruner_core.config.text import format_duration
from pruner_core.errors import PrunerError, SpecError
from pruner_core.graph.layers import unprunable_note, weight_sparsity
from pruner_core.graph.model_graph import ModelGraph, graph_of, live_graph
from pruner_core.io.data import Dataset
from pruner_core.io.fit import check_data_fits
from pruner_core.io.inputs import example_input
from pruner_core.io.models import LoadedModel, copy_module
from pruner_core.io.preprocess import Preprocess
from pruner_core.pipeline.distributed import same_masks, same_object, world
from pruner_core.pipeline.finetune import Cancelled, EpochRecord, Progress, finetune
from pruner_core.pruning.channels import plan_channels, prune_channels
from pruner_core.pruning.describe import describe_model
from pruner_core.pruning.recipe import NothingToPrune, Recipe
from pruner_core.pruning.select import apply_masks, compute_masks
from pruner_core.pruning.target import Target

GMP_PRUNING_SPAN = 0.75  # share of the fine-tuning steps during which GMP raises sparsity


@dataclass
class Update:
    """What the pipeline is doing, for a progress bar: ``phase`` is pruning, finetune, measuring or done."""

    phase: str
    fraction: float  # of the whole run, in [0, 1]
    message: str
    progress: Progress | None = None  # the fine-tuning step, while fine-tuning
    history: list[EpochRecord] = field(default_factory=list)  # fine-tuning history so far


@dataclass
class Pruned:
    """A pruned (and fine-tuned) copy: masks for mask granularities, the channel plan for ``channel``."""

    module: nn.Module
    masks: dict[str, torch.Tensor] | None
    structure: list[dict]
    history: list[EpochRecord]
    target: Target


@dataclass
class Working:
    """A working copy of a model that a run prunes, with its one graph (built once, bound to the copy)."""

    model: LoadedModel  # the copy, as a loaded model (same spec and format as the original)
    graph: ModelGraph
    input_shape: tuple[int, ...]

    @classmethod
    def of(cls, model: LoadedModel, input_shape: tuple[int, ...], *, channels: bool = False) -> Working:
        """Copy ``model`` (never modified) and build the copy's graph: the run's only torch-pruning trace. With
        ``channels`` the graph is bound to the copy, which is opened for head removal
        (:func:`~pruner_core.graph.head_forms.open_heads`); a mask run's copy stays the user's module."""
        work = copy_module(model.module).eval()
        live = model.eager and channels
        graph = live_graph(work, input_shape) if live else graph_of(work, input_shape, eager=model.eager)
        return cls(replace(model, module=work), graph, tuple(input_shape))

    def describe(self) -> list:
        """The copy's layers (:func:`~pruner_core.pruning.describe.describe_model`), from its graph."""
        return describe_model(self.model, self.input_shape, graph=self.graph)

    def target(self, recipe: Recipe, layers: list | None = None) -> Target:
        """``recipe`` resolved against the copy; a recipe that prunes nothing is refused naming each layer and any
        weights no granularity reaches (an LSTM, an attention in-projection)."""
        try:
            return recipe.target(layers if layers is not None else self.describe(), require=True)
        except NothingToPrune as e:
            raise NothingToPrune(f"{e}{unprunable_note(self.model.module)}") from None


@dataclass
class _Context:
    work: nn.Module
    graph: ModelGraph
    data: Dataset
    recipe: Recipe
    target: Target
    example: torch.Tensor
    teacher: nn.Module | None
    report: Callable[[Update], None]
    cancel: threading.Event | None
    masks: dict[str, torch.Tensor] | None = None
    structure: list[dict] = field(default_factory=list)
    history: list[EpochRecord] = field(default_factory=list)
    epochs_done: float = 0.0  # fine-tuning epochs of earlier rounds (iterative), so history epochs keep counting
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # where fine-tuning steps run


def _scaled(target: Target, scale: float) -> Target:
    """The target with every ratio multiplied by ``scale`` (a fraction of the way to the final sparsity)."""
    return replace(target, ratios={k: r * scale for k, r in target.ratios.items()})


def _prune_to(ctx: _Context, target: Target) -> None:
    """Prune ``ctx.work`` to ``target``: masks ANDed with earlier ones (pruned weights stay pruned), or channels."""
    if ctx.cancel is not None and ctx.cancel.is_set():
        raise Cancelled("cancelled before pruning")
    if target.granularity == "channel":
        plan = same_object(plan_channels(ctx.work, target, ctx.example, ctx.data, graph=ctx.graph))  # rank 0's
        prune_channels(ctx.work, plan, ctx.example, graph=ctx.graph)
        ctx.structure.extend(plan)
        return
    masks = same_masks(compute_masks(ctx.work, target, ctx.data))  # under torchrun: rank 0's, on every rank
    if ctx.masks is not None:
        masks = {k: m & ctx.masks[k] if k in ctx.masks else m for k, m in masks.items()}
    apply_masks(ctx.work, masks)
    ctx.masks = masks


def _finetune(ctx: _Context, epochs: float, start: float, span: float, on_step=None) -> None:
    """Fine-tune ``ctx.work`` for ``epochs``, reporting progress as ``start + span * fraction`` of the run."""

    def callback(p: Progress) -> None:
        if p.record is not None:  # history epochs count on across the rounds of an iterative schedule
            ctx.history.append(replace(p.record, epoch=ctx.epochs_done + p.record.epoch))
        left = p.seconds / p.step * (p.steps - p.step)  # from the steps so far
        ctx.report(Update("finetune", start + span * p.fraction, f"fine-tuning: step {p.step}/{p.steps}, about "
                          f"{format_duration(left)} left", p, ctx.history))

    config = ctx.recipe.finetune.model_copy(update={"epochs": epochs})
    finetune(ctx.work, ctx.data, config, masks=ctx.masks, teacher=ctx.teacher, seed=ctx.recipe.seed, on_step=on_step,
             callback=callback, cancel=ctx.cancel, device=ctx.device)
    ctx.epochs_done += epochs


def _oneshot(ctx: _Context) -> None:
    ctx.report(Update("pruning", 0.0, "pruning"))
    _prune_to(ctx, ctx.target)
    _finetune(ctx, ctx.recipe.finetune.epochs, 0.05, 0.9)


def _iterative(ctx: _Context) -> None:
    rounds = ctx.recipe.schedule.steps
    for i in range(1, rounds + 1):
        ctx.report(Update("pruning", 0.9 * (i - 1) / rounds, f"round {i}/{rounds}: pruning", history=ctx.history))
        if ctx.target.granularity == "channel":
            # channel plans index the current (already shrunk) model: remove the share of what is left
            ratios = {}
            for name, r in ctx.target.ratios.items():
                before, after = 1 - (1 - r) ** ((i - 1) / rounds), 1 - (1 - r) ** (i / rounds)
                ratios[name] = 1 - (1 - after) / (1 - before)
            _prune_to(ctx, replace(ctx.target, ratios=ratios))
        else:
            _prune_to(ctx, replace(ctx.target, ratios={k: 1 - (1 - r) ** (i / rounds) for k, r in ctx.target.ratios.items()}))
        _finetune(ctx, ctx.recipe.finetune.epochs / rounds, 0.9 * (i - 1) / rounds + 0.02, 0.9 / rounds - 0.02)


def _gmp(ctx: _Context) -> None:
    if ctx.target.granularity in ("channel", "nm"):
        raise SpecError(
            f"schedule 'gmp' raises sparsity gradually through masks; granularity '{ctx.target.granularity}' "
            "cannot be ramped that way (use schedule 'iterative' or 'oneshot')"
        )
    updates = ctx.recipe.schedule.steps
    reached = [0]  # the last update applied

    def on_step(step: int, steps: int) -> dict[str, torch.Tensor] | None:
        every = max(1, int(steps * GMP_PRUNING_SPAN) // updates)
        j = step // every
        if step == 0 or step % every or j > updates:
            return None
        _prune_to(ctx, _scaled(ctx.target, 1 - (1 - j / updates) ** 3))
        reached[0] = j
        return ctx.masks

    ctx.report(Update("finetune", 0.0, "gradual magnitude pruning"))
    _finetune(ctx, ctx.recipe.finetune.epochs, 0.0, 0.95, on_step)
    if reached[0] < updates:  # fewer fine-tuning steps than updates: end at the target all the same
        _prune_to(ctx, ctx.target)


SCHEDULES: dict[str, Callable[[_Context], None]] = {"oneshot": _oneshot, "iterative": _iterative, "gmp": _gmp}
assert set(SCHEDULES) == set(options.SCHEDULES), "every schedule name the recipe accepts needs exactly one implementation"


def prune(
    model: LoadedModel,
    data: Dataset,
    recipe: Recipe,
    *,
    callback: Callable[[Update], None] | None = None,
    cancel: threading.Event | None = None,
    layers: list | None = None,
    working: Working | None = None,
    device: torch.device | str = "cpu",
) -> Pruned:
    """Apply ``recipe`` to a copy of ``model``: prune on its schedule and fine-tune.

    Args:
        model: the model to prune (never modified).
        data: training split for fine-tuning and calibration; test split for accuracy.
        recipe: what to do.
        callback: called with an :class:`Update` after each step.
        cancel: when set, the run stops between two steps with :class:`~pruner_core.pipeline.finetune.Cancelled`.
        layers: the model's description (:func:`~pruner_core.pruning.describe.describe_model`) when already at hand.
        working: the copy to prune (:meth:`Working.of`) when already made; made here otherwise.
        device: where fine-tuning runs (:func:`~pruner_core.pipeline.distributed.training_device`); pruning and
            every measurement stay on the CPU.

    Raises:
        SpecError / RecipeError: the recipe does not fit the model (names the layer, value and what is valid).
        CompatibilityError: the data does not fit the model.
        Cancelled: the cancel event was set.
    """
    shape = working.input_shape if working is not None else check_data_fits(model, data)
    if recipe.granularity == "channel" and not model.eager:
        raise SpecError(f"channel pruning needs an ordinary nn.Module; '{model.label}' is a {model.fmt} program (mask only)")
    if torch.device(device).type != "cpu" and recipe.schedule.kind == "gmp":
        raise SpecError(f"schedule 'gmp' prunes between fine-tuning steps, on the CPU; on device '{device}' use "
                        "schedule oneshot or iterative (they prune on the CPU and fine-tune on the device)")
    working = working or Working.of(model, shape, channels=recipe.granularity == "channel")
    target = working.target(recipe, layers)
    teacher = copy_module(model.module).eval() if recipe.finetune.distill and recipe.finetune.epochs > 0 else None
    work = working.model.module
    ctx = _Context(work, working.graph, data, recipe, target, example_input(work, shape), teacher,
                   callback or (lambda u: None), cancel, device=torch.device(device))
    SCHEDULES[recipe.schedule.kind](ctx)
    if ctx.masks is not None:
        apply_masks(ctx.work, ctx.masks)
    ctx.work.eval()
    return Pruned(ctx.work, ctx.masks, ctx.structure, ctx.history, target)


def run_experiment(
    model: LoadedModel,
    data: Dataset,
    recipe: Recipe,
    *,
    data_spec: str,
    root=None,
    folder=None,
    callback: Callable[[Update], None] | None = None,
    cancel: threading.Event | None = None,
    latency_runs: tuple[int, int] = (30, 10),
    device: torch.device | str = "cpu",
):
    """Prune and fine-tune as :func:`prune` (fine-tuning on ``device``), saved as an experiment folder (see :mod:`pruner_core.pipeline.runs`).

    The run is created (status "running") before any work, its history is written at each epoch end, and it
    ends "done" with weights, masks, structure and vital signs, or "cancelled" / "failed" with the reason.

    Args:
        data_spec: how ``data`` was loaded (stored so the run can be re-measured later).
        root: the runs folder (default: :func:`~pruner_core.pipeline.runs.default_root`).
        folder: the exact run folder instead of a new one under ``root`` (the CLI's ``--out``).

    Returns:
        The finished run.

    Raises:
        Everything :func:`prune` raises, after marking the run failed or cancelled.
    """
    from pruner_core.measure.metrics import vital_signs
    from pruner_core.pipeline.runs import base_info, create_run, fail_run, finish_run, write_history

    shape = check_data_fits(model, data)
    if recipe.granularity == "channel" and not model.eager:
        raise SpecError(f"channel pruning needs an ordinary nn.Module; '{model.label}' is a {model.fmt} program (mask only)")
    working = Working.of(model, shape, channels=recipe.granularity == "channel")
    layers = working.describe()
    working.target(recipe, layers)  # refuse a recipe that does not fit, or prunes nothing, before making a folder
    unknown = [n for n in recipe.quantize.exclude if n not in {info.name for info in layers}]
    if recipe.quantize.kind != "none" and unknown:  # said now, not after fine-tuning
        raise SpecError(f"recipe: quantize.exclude: no layer named {', '.join(repr(n) for n in unknown)}; layers: "
                        f"{', '.join(info.name for info in layers[:20])}")
    if world()[0] != 0:
        raise PrunerError("under torchrun only rank 0 writes the run folder: the other ranks call prune()")
    base = base_info(model, data=data_spec, input_shape=shape) | {
        "world_size": world()[1], "preprocess": Preprocess.from_token(data.preprocess).to_dict(),  # as applied
        "finetune_device": str(device)}
    run = create_run(root, base, recipe, folder=folder)
    written = [0]

    def report(update: Update) -> None:
        if len(update.history) != written[0]:
            write_history(run, update.history)
            written[0] = len(update.history)
        if callback is not None:
            callback(update)

    try:
        pruned = prune(model, data, recipe, callback=report, cancel=cancel, layers=layers, working=working,
                       device=device)
        report(Update("measuring", 0.96, "measuring accuracy, size and latency", history=pruned.history))
        signs = vital_signs(working.model, data, latency_runs=latency_runs, input_shape=shape).to_json()
        signs["sparsity_per_layer"] = weight_sparsity(pruned.module)
        signs["recipe"] = recipe.summary()
        write_history(run, pruned.history)
        run = finish_run(run, state_dict=pruned.module.state_dict(), masks=pruned.masks, structure=pruned.structure,
                         metrics=signs)
    except Cancelled as e:
        fail_run(run, str(e), cancelled=True)
        raise
    except KeyboardInterrupt:
        fail_run(run, "stopped by the user (Ctrl-C) before it finished; nothing of it was kept", cancelled=True)
        raise
    except BaseException as e:
        fail_run(run, str(e) if isinstance(e, PrunerError) else f"{type(e).__name__}: {e or 'no message'}")
        raise
    if recipe.quantize.kind != "none":  # the INT8 stage: the run is done and kept whatever happens here
        from pruner_core.pipeline.quantize import quantize_run

        report(Update("quantizing", 0.98, f"INT8: {recipe.quantize.summary()}", history=pruned.history))
        try:
            quantize_run(run, data, recipe.quantize, latency_runs=latency_runs)
        except PrunerError as e:
            raise PrunerError(f"run '{run.id}' is saved, but its INT8 stage failed: {e}") from e
    report(Update("done", 1.0, f"saved {run.path}", history=pruned.history))
    return run
