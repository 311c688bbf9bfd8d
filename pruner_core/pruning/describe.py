"""Describe a model: its prunable layers (Conv1d/2d, Linear), their FLOPs, coupled groups and prunability.

Coupled groups come from the model's one :class:`~pruner_core.graph.model_graph.ModelGraph`: layers whose output
channels must be removed together (a residual addition ties them) share a group id.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from pruner_core.graph.flops import layer_flops
from pruner_core.graph.layers import prunable_layers
from pruner_core.graph.model_graph import ModelGraph, graph_of
from pruner_core.io.inputs import example_input
from pruner_core.io.models import LoadedModel
from pruner_core.pruning.granularities import LayerFacts, Reason, prunability, short_reason


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
    constraints: dict[str, str] = field(default_factory=dict)  # granularity -> how it is constrained where it applies
    labels: dict[str, str] = field(default_factory=dict)  # granularity -> the short label of its reason or constraint

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> LayerInfo:
        return cls(**data)

    def reason(self, granularity: str) -> Reason | None:
        """Why ``granularity`` does not apply to this layer, with its short label (None where it applies)."""
        return self._labelled(self.granularities.get(granularity), granularity)

    def constraint(self, granularity: str) -> Reason | None:
        """How ``granularity`` is constrained where it applies (kept channels in multiples, whole heads), or None."""
        return self._labelled(self.constraints.get(granularity), granularity)

    def _labelled(self, text: str | None, granularity: str) -> Reason | None:
        # read back from JSON the sentence is a plain string: its label was kept beside it (or, written before labels
        # were, the sentence is its own label)
        return None if text is None else Reason(self.labels.get(granularity) or short_reason(text), text)

    def facts(self, *, eager: bool = True, traced: bool = True) -> LayerFacts:
        """What a granularity needs to know about this layer."""
        return LayerFacts(self.type, tuple(self.shape), eager, self.is_output, traced)


def describe_model(
    model: LoadedModel, input_shape: tuple[int, ...], per_layer_flops: dict[str, int] | None = None,
    graph: ModelGraph | None = None,
) -> list[LayerInfo]:
    """List the prunable layers of ``model`` with params, measured FLOPs, coupled group and prunability.

    Args:
        model: the loaded model (not modified).
        input_shape: one sample's shape, e.g. ``(1, 28, 28)``.
        per_layer_flops: FLOPs already counted by :func:`~pruner_core.graph.flops.layer_flops` (counted here when
            not given).
        graph: the model's graph when at hand (else :func:`~pruner_core.graph.model_graph.graph_of`, cached).
    """
    example = example_input(model.module, input_shape)
    flops = per_layer_flops if per_layer_flops is not None else layer_flops(model.module, example)[1]
    graph = graph or graph_of(model.module, input_shape, eager=model.eager)
    infos = []
    for name, mod, kind in prunable_layers(model.module):
        shape = [int(s) for s in mod.weight.shape]
        bias = getattr(mod, "bias", None)
        params = mod.weight.numel() + (bias.numel() if isinstance(bias, torch.Tensor) else 0)
        is_output = name in graph.outputs
        facts = LayerFacts(kind, tuple(shape), model.eager, is_output, model.eager and graph.traced,
                           graph.follows.get(name, ()), graph.attention.get(name, ()))
        why = prunability(facts)
        multiple = graph.multiple_of.get(name, 1)
        constraints = {}
        if why["channel"] is None and multiple > 1:
            constraints["channel"] = Reason(f"multiples of {multiple}",
                                            f"channels kept in multiples of {multiple} (a GroupNorm's groups)")
        partner = next((h for h in graph.heads.values() if name in h.layers[1:]), None)
        if why["channel"] is None and partner is not None:
            constraints["channel"] = Reason("whole heads",
                                            f"heads removed whole, with '{partner.layers[0]}' (its query rows)")
        if why["channel"] is None and name in graph.heads:
            heads = graph.heads[name]
            constraints["channel"] = Reason("whole heads", f"heads removed whole: {heads.num_heads} heads of "
                                            f"{heads.head_dim} (query, key and value rows together); "
                                            f"'{heads.attention}' keeps at least one")
        labels = {g: short_reason(r) for g, r in {**why, **constraints}.items() if r is not None}
        infos.append(LayerInfo(name, kind, shape, int(params), flops.get(name), graph.group_of[name], is_output, why,
                               constraints, labels))
    return infos
