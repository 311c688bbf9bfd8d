"""A saved run's pruned model, rebuilt from plain data: base model -> channel plan -> pruned weights.

Also registers the run folder as a model format, so ``runs/ID`` is a model spec everywhere (the app, the CLI):
the model loader never needs to know the run format.
"""

from __future__ import annotations

import dataclasses
from contextvars import ContextVar
from pathlib import Path

import torch

from pruner_core.errors import PrunerError, SpecError
from pruner_core.graph.head_forms import HeadMultiheadAttention
from pruner_core.io.inputs import example_input
from pruner_core.io.models import (
    LoadedModel,
    ModelFormat,
    apply_state_dict,
    load_model,
    read_state_dict,
    register_model_format,
)
from pruner_core.pipeline.runs import Run, load_run
from pruner_core.pruning.channels import prune_channels

MAX_CHAIN = 20  # a run pruned from a run pruned from ...: deeper than this is a loop or a mistake
_loading: ContextVar[tuple[str, ...]] = ContextVar("runs_being_loaded", default=())


def load_run_model(run: Run | str | Path, *, trust: bool = False) -> LoadedModel:
    """Rebuild a finished run's pruned model: base model -> channel plan -> pruned weights.

    Args:
        run: a :class:`Run` or its folder.
        trust: allow unpickling the base model, if the run was made from a trusted pickled module (both this
            and the run's own trust flag are needed, so a run folder alone cannot make us run code).

    Returns:
        A fresh eval-mode :class:`LoadedModel` whose ``spec`` is the run folder and ``fmt`` is ``run``.

    Raises:
        PrunerError: the run is damaged or not done; its base model cannot be loaded; the weights do not fit.
    """
    if not isinstance(run, Run):
        run = load_run(run)
    if run.status != "done":
        why = f" ({run.error})" if run.error else ""
        raise PrunerError(f"run '{run.id}' is {run.status}{why}; only a finished run has a pruned model")
    base = run.base
    chain = _loading.get()
    here = str(run.path.resolve())
    if here in chain or len(chain) >= MAX_CHAIN:
        why = "names itself as its base model (through" if here in chain else f"sits on a chain of more than {MAX_CHAIN}"
        raise PrunerError(f"run '{run.id}': base.json {why} runs {' -> '.join(Path(c).name for c in chain)}); a run's "
                          "base must be a model or an earlier run")
    token = _loading.set((*chain, here))
    try:
        loaded = load_model(base["spec"], weights=base.get("weights"), trust=trust and bool(base.get("trust")))
    finally:
        _loading.reset(token)
    weights = run.path / "weights.safetensors"
    state = read_state_dict(weights)
    if run.structure or (run.recipe is not None and run.recipe.granularity == "channel"):
        shape = base.get("input_shape") or loaded.input_shape
        if not shape:
            raise PrunerError(f"run '{run.id}' removed channels but base.json has no input_shape to trace the model with")
        prune_channels(loaded.module, run.structure, example_input(loaded.module, shape))
        opened = {n for n, m in loaded.module.named_modules() if isinstance(m, HeadMultiheadAttention)}
        closed = [k for k in state if k.endswith(".in_proj_weight") and k.rsplit(".", 1)[0] in opened]
        if closed:  # saved before nn.MultiheadAttention was opened for head removal
            raise PrunerError(f"run '{run.id}' was saved before nn.MultiheadAttention could lose heads (its weights "
                              f"keep '{closed[0]}' as one parameter); run its recipe again to rebuild it")
    apply_state_dict(loaded.module, state, f"{run.id}/{weights.name}", loaded.arch or base["spec"])
    card = {"run": run.id, "recipe": run.recipe.summary() if run.recipe else None, "base": loaded.label}
    return dataclasses.replace(loaded, module=loaded.module.eval(), spec=str(run.path), fmt="run", weights=None, card=card)


def load_run_masks(run: Run | str | Path) -> dict[str, torch.Tensor] | None:
    """The bool keep-masks of a masked run (layer name -> mask shaped like its weight), else None."""
    path = (run.path if isinstance(run, Run) else Path(run)) / "masks.safetensors"
    if not path.is_file():
        return None
    return {k: v.bool() for k, v in read_state_dict(path).items()}


def _is_run_folder(spec: str) -> bool:
    path = Path(spec)
    return path.is_dir() and any((path / name).is_file() for name in ("status.json", "recipe.yaml", "base.json"))


def _load_run_spec(spec: str, weights: str | None, trust: bool) -> LoadedModel:
    if weights:
        raise SpecError(f"'{spec}' is a pruning run folder, which carries its own pruned weights; load it without weights")
    return load_run_model(spec, trust=trust)


register_model_format(
    ModelFormat("run", "a pruning run folder (runs/ID: its pruned model)", _is_run_folder, _load_run_spec), before="export"
)
