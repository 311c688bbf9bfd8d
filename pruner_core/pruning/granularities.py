"""The registry of pruning granularities: what a group of weights is, and where it applies.

For now each granularity knows which layers it applies to (the "prunability" summary the
Model page and ``pruner info`` show). Mask computation joins this registry in the prune issue.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

NM_DEFAULT = (2, 4)


@dataclass(frozen=True)
class LayerFacts:
    """What a granularity needs to know about a layer to say whether it applies."""

    type: str  # Linear, Conv1d, Conv2d
    shape: tuple[int, ...]  # weight shape [out, in, *kernel]
    eager: bool  # an ordinary nn.Module whose layers can be physically removed
    is_output: bool  # its outputs are the model's outputs
    traced: bool = True  # torch-pruning's dependency graph could be built, so coupled channels are known


@dataclass(frozen=True)
class Granularity:
    """One granularity: ``why_not`` returns None where it applies, else the reason it does not."""

    name: str
    label: str
    why_not: Callable[[LayerFacts], str | None]


def _nm(layer: LayerFacts) -> str | None:
    m = NM_DEFAULT[1]
    n_in = layer.shape[1]
    if n_in % m:
        return f"{n_in} input {'features' if layer.type == 'Linear' else 'channels'} is not a multiple of M={m}"
    return None


def _vector(layer: LayerFacts) -> str | None:
    if layer.type == "Linear":
        return "Linear weights have no kernel rows (use unstructured, nm or channel)"
    if layer.shape[-1] < 2:
        return f"kernel rows of width {layer.shape[-1]} are single weights (use unstructured)"
    return None


def _kernel(layer: LayerFacts) -> str | None:
    if layer.type == "Linear":
        return "Linear weights have no kernels (use unstructured, nm or channel)"
    size = 1
    for k in layer.shape[2:]:
        size *= k
    return "a 1x1 kernel is a single weight (use unstructured)" if size < 2 else None


def _channel(layer: LayerFacts) -> str | None:
    if not layer.eager:
        return "TorchScript / torch.export programs cannot have channels physically removed (mask only)"
    if not layer.traced:
        return "torch-pruning could not trace the model, so which channels are coupled is unknown"
    if layer.is_output:
        return "its outputs are the model's outputs (the classes)"
    if layer.shape[0] < 2:
        return "a single output channel cannot be removed"
    return None


GRANULARITIES: dict[str, Granularity] = {
    g.name: g
    for g in (
        Granularity("unstructured", "single weights", lambda layer: None),
        Granularity("nm", f"N:M ({NM_DEFAULT[0]}:{NM_DEFAULT[1]}) along the input dimension", _nm),
        Granularity("vector", "kernel rows W[o, i, r, :]", _vector),
        Granularity("kernel", "whole k x k kernels W[o, i, :, :]", _kernel),
        Granularity("channel", "output channels, physically removed", _channel),
    )
}


def prunability(layer: LayerFacts) -> dict[str, str | None]:
    """Map each granularity to None (applies) or the reason it does not apply to ``layer``."""
    return {name: g.why_not(layer) for name, g in GRANULARITIES.items()}
