"""The layers pruning can act on: Conv1d, Conv2d, Linear and Embedding modules that own a weight, in definition order.

An Embedding's weight ``[vocabulary, dimensions]`` is masked like a Linear's (single weights, N:M along the
dimensions); the granularities that need kernels or removable output channels say why they do not apply.

>>> from torch import nn
>>> [name for name, _, _ in prunable_layers(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2)))]
['0', '3']
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

PRUNABLE_TYPES = ("Linear", "Conv1d", "Conv2d", "Embedding")
_WEIGHT_NDIM_TYPE = {2: "Linear", 3: "Conv1d", 4: "Conv2d"}
Layer = tuple[str, nn.Module, str]  # (name, module, type)


def layer_type(module: nn.Module) -> str | None:
    """``Linear``, ``Conv1d``, ``Conv2d`` or ``Embedding`` for a prunable module (also inside TorchScript and
    torch.export), else None."""
    for cls in (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Embedding):
        if isinstance(module, cls):
            return cls.__name__
    kind = getattr(module, "original_name", type(module).__name__)  # TorchScript keeps the class name here
    if kind in PRUNABLE_TYPES:
        return kind
    weight = getattr(module, "weight", None)  # torch.export modules are plain containers
    if type(module).__name__ == "Module" and isinstance(weight, torch.Tensor):
        return _WEIGHT_NDIM_TYPE.get(weight.dim())
    return None


class WeightMatrix:
    """A weight matrix that is not a module's ``weight``: an LSTM/GRU/RNN's ``weight_ih_l0``, ``weight_hh_l0``, ...,
    an ``nn.MultiheadAttention``'s ``in_proj_weight``. It stands in the layer list as a layer named
    ``owner.parameter`` whose ``weight`` is that parameter (the same tensor: masking it masks the model)."""

    def __init__(self, owner: nn.Module, parameter: str) -> None:
        self.owner, self.parameter = owner, parameter

    @property
    def weight(self) -> torch.Tensor:
        return getattr(self.owner, self.parameter)

    def __repr__(self) -> str:
        return f"{type(self.owner).__name__}.{self.parameter} {list(self.weight.shape)}"


MATRIX_TYPES = {nn.LSTM: "Recurrent", nn.GRU: "Recurrent", nn.RNN: "Recurrent", nn.MultiheadAttention: "Attention"}


def _matrices(name: str, mod: nn.Module) -> list[Layer]:
    """The :class:`WeightMatrix` layers of an eager recurrent or attention module (none for other modules)."""
    kind = next((k for cls, k in MATRIX_TYPES.items() if isinstance(mod, cls)), None)
    if kind is None or not name:
        return []
    params = [p for p, t in mod.named_parameters(recurse=False) if t.dim() == 2 and (
        p.startswith("weight_") if kind == "Recurrent" else p == "in_proj_weight")]
    return [(f"{name}.{p}", WeightMatrix(mod, p), kind) for p in params]


def prunable_layers(module: nn.Module) -> list[Layer]:
    """(name, module, type) for every Conv1d/Conv2d/Linear/Embedding with a weight, in definition order, and every
    recurrent or attention weight matrix (type ``Recurrent`` or ``Attention``, module a :class:`WeightMatrix`)."""
    out = []
    for name, mod in module.named_modules():
        kind = layer_type(mod)
        if kind and name and isinstance(getattr(mod, "weight", None), torch.Tensor):
            out.append((name, mod, kind))
        out.extend(_matrices(name, mod))
    return out


def layer_lookup(module: nn.Module) -> dict[str, object]:
    """``named_modules()`` with every prunable layer's name too (a :class:`WeightMatrix` is no module): what each
    name of a mask or a plan refers to, by its ``weight``."""
    return {**dict(module.named_modules()), **{name: mod for name, mod, _ in prunable_layers(module)}}


def weight_sparsity(module: nn.Module) -> dict[str, float]:
    """Fraction of exactly-zero weights of every prunable layer, by name."""
    return {name: float((mod.weight == 0).float().mean()) for name, mod, _ in prunable_layers(module)}


@contextmanager
def evaluating(module: nn.Module) -> Iterator[None]:
    """Eval mode for the duration (BatchNorm statistics untouched), every submodule's own mode restored after."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def unprunable_weights(module: nn.Module) -> dict[str, tuple[str, int]]:
    """Weight matrices (parameters of 2 or more dimensions) outside the prunable layers, by owner:
    ``{module name: (type, parameters)}``, largest first (LSTM/GRU matrices, attention in-projections, embeddings).
    """
    layers = prunable_layers(module)
    prunable = {id(mod) for _, mod, _ in layers}
    covered = {id(mod.weight) for _, mod, _ in layers}
    found: dict[str, tuple[str, int]] = {}
    for name, mod in module.named_modules():
        if id(mod) in prunable:
            continue
        count = sum(p.numel() for p in mod.parameters(recurse=False) if p.dim() >= 2 and id(p) not in covered)
        if count:
            found[name or "(the model itself)"] = (type(mod).__name__, count)
    return dict(sorted(found.items(), key=lambda item: -item[1][1]))


def unprunable_note(module: nn.Module, limit: int = 3) -> str:
    """A sentence naming the largest weights no granularity reaches, with their share of all parameters ('' if none)."""
    found = unprunable_weights(module)
    total = sum(p.numel() for p in module.parameters()) or 1
    if not found:
        return ""
    shown = ", ".join(f"'{name}' ({kind}, {count / total:.0%} of the parameters)" for name, (kind, count) in
                      list(found.items())[:limit])
    more = f" and {len(found) - limit} more" if len(found) > limit else ""
    return (f"; weights outside Conv1d/Conv2d/Linear/Embedding layers and recurrent/attention matrices are not pruned "
            f"(not supported yet): {shown}{more}")


def parameter_coverage(module: nn.Module) -> tuple[int, int, dict[str, tuple[str, int]]]:
    """``(prunable, total, unreached)``: the parameters the prunable layers' weights hold, all parameters, and the
    weight matrices no granularity reaches (:func:`unprunable_weights`). The rest are biases and norm parameters."""
    layers = prunable_layers(module)
    seen: set[int] = set()
    prunable = 0
    for _, mod, _ in layers:
        if id(mod.weight) not in seen:  # a weight shared by two layers (tied embeddings) counts once
            seen.add(id(mod.weight))
            prunable += mod.weight.numel()
    return prunable, sum(p.numel() for p in module.parameters()), unprunable_weights(module)

