"""Describe a model: its prunable layers (Conv1d/2d, Linear), their FLOPs and coupled groups.

Coupled groups come from torch-pruning's dependency graph: layers whose output channels
must be removed together (a residual addition ties them) share a group id.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from pruner_core.io.models import LoadedModel
from pruner_core.pruning.granularities import LayerFacts, prunability

PRUNABLE_TYPES = {"Linear", "Conv1d", "Conv2d"}
_WEIGHT_NDIM_TYPE = {2: "Linear", 3: "Conv1d", 4: "Conv2d"}


@dataclass
class LayerInfo:
    """One prunable layer. ``group`` ids are shared by layers whose output channels are coupled."""

    name: str
    type: str
    shape: list[int]
    params: int
    flops: int | None
    group: int
    is_output: bool
    granularities: dict[str, str | None] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _layer_type(module: nn.Module) -> str | None:
    for cls in (nn.Linear, nn.Conv1d, nn.Conv2d):
        if isinstance(module, cls):
            return cls.__name__
    kind = getattr(module, "original_name", type(module).__name__)  # TorchScript keeps the class name here
    if kind in PRUNABLE_TYPES:
        return kind
    weight = getattr(module, "weight", None)  # torch.export modules are plain containers
    if type(module).__name__ == "Module" and isinstance(weight, torch.Tensor):
        return _WEIGHT_NDIM_TYPE.get(weight.dim())
    return None


def prunable_layers(module: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """(name, module, type) for every Conv1d/Conv2d/Linear with a weight, in definition order."""
    out = []
    for name, mod in module.named_modules():
        kind = _layer_type(mod)
        if kind and name and isinstance(getattr(mod, "weight", None), torch.Tensor):
            out.append((name, mod, kind))
    return out


def layer_flops(module: nn.Module, example: torch.Tensor) -> tuple[int, dict[str, int]]:
    """Measured FLOPs (multiply-add = 2) of one forward on ``example``: total and per module name."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(example)
    per: dict[str, int] = {}
    for key, ops in counter.get_flop_counts().items():
        if "." in key:
            per[key.split(".", 1)[1]] = int(sum(ops.values()))
    return int(counter.get_total_flops()), per


def coupled_groups(module: nn.Module, example: torch.Tensor, names: list[str]) -> tuple[dict[str, int], set[str]]:
    """Group ids of output-channel-coupled layers, and the layers whose outputs are the model's outputs.

    Builds torch-pruning's dependency graph on a copy (the graph build runs hooks on the model).
    """
    import torch_pruning as tp

    model = copy.deepcopy(module)
    by_name = dict(model.named_modules())
    name_of = {id(m): n for n, m in by_name.items()}
    with torch.enable_grad():
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    group_of: dict[str, int] = {}
    outputs: set[str] = set()
    for name in names:
        layer = by_name[name]
        if graph.module2node.get(layer) is None:  # forward() never calls it: nothing is coupled to it
            group_of.setdefault(name, len(set(group_of.values())))
            continue
        fn = tp.prune_linear_out_channels if isinstance(layer, nn.Linear) else tp.prune_conv_out_channels
        members, consumed = [name], False
        for dep, _ in graph.get_pruning_group(layer, fn, idxs=[0]):
            member = name_of.get(id(dep.target.module))
            handler = getattr(dep.handler, "__name__", "")
            if member in names and handler == "prune_out_channels":
                members.append(member)
            elif member in names and handler == "prune_in_channels":
                consumed = True
        if not consumed:  # no layer reads these channels: they reach the model's output
            outputs.add(name)
        if name not in group_of:
            gid = len(set(group_of.values()))
            for member in members:
                group_of.setdefault(member, gid)
    return group_of, outputs


def describe_model(
    model: LoadedModel, input_shape: tuple[int, ...], per_layer_flops: dict[str, int] | None = None
) -> list[LayerInfo]:
    """List the prunable layers of ``model`` with params, measured FLOPs, coupled group and prunability.

    Args:
        model: the loaded model (not modified).
        input_shape: one sample's shape, e.g. ``(1, 28, 28)``.
        per_layer_flops: FLOPs already counted by :func:`layer_flops` (counted here when not given).
    """
    example = torch.zeros(1, *input_shape)
    layers = prunable_layers(model.module)
    names = [n for n, _, _ in layers]
    flops = per_layer_flops if per_layer_flops is not None else layer_flops(model.module, example)[1]
    groups: dict[str, int] | None = None
    traced = model.eager
    if model.eager and names:
        try:
            groups, outputs = coupled_groups(model.module, example, names)
        except Exception:  # torch-pruning cannot trace every model: then channel coupling is unknown
            groups, traced = None, False
    if groups is None:
        groups = {n: i for i, n in enumerate(names)}
        outputs = {names[-1]} if names else set()
    infos = []
    for name, mod, kind in layers:
        shape = [int(s) for s in mod.weight.shape]
        bias = getattr(mod, "bias", None)
        params = mod.weight.numel() + (bias.numel() if isinstance(bias, torch.Tensor) else 0)
        facts = LayerFacts(kind, tuple(shape), model.eager, name in outputs, traced)
        infos.append(
            LayerInfo(name, kind, shape, int(params), flops.get(name), groups[name], name in outputs, prunability(facts))
        )
    return infos
