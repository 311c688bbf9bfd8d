"""Attention heads: which layers hold a model's heads, whether a head can be removed, and removing it whole.

Two layouts are recognised, as their public counterparts write them:

- fused: a module with ``num_heads`` and one ``qkv`` Linear of 3 x heads x head_dim outputs, read back by ``proj``
  (timm's ``Attention``);
- separate: a module with ``q_proj``/``k_proj``/``v_proj`` (or ``query``/``key``/``value``) Linears read back by
  ``o_proj``/``out_proj`` (Hugging Face's ``ViTAttention`` and the like), with ``head_dim``.

A head goes whole: its query, key and value rows together (and the output projection's columns that read it). Whether
the module's own forward still runs with a head fewer is tried once, on a copy: timm's forward reshapes its output
to the input's width (``reshape(B, N, C)``) and cannot lose a head; one that reshapes by ``-1`` or by the head count
can. The first kind, and ``nn.MultiheadAttention``, are opened before channel pruning
(:mod:`~pruner_core.graph.head_forms`): an equivalent module that can lose heads takes their place in the copy.

:func:`attention_heads` lists every attention module's heads, removable or not (for the Inspect page's per-head
magnitude); :func:`head_norms` is one number per head over all the weights that make and read it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import torch
from torch import nn

HEAD_COUNTS = ("num_heads", "num_attention_heads")  # the attribute a forward may reshape by
SEPARATE = (("q_proj", "k_proj", "v_proj"), ("query", "key", "value"))
OUTPUTS = ("o_proj", "out_proj", "proj")


@dataclass(frozen=True)
class Heads:
    """The heads of one attention module: the layers that make them, the one that reads them back, their number."""

    attention: str  # the attention module
    layers: tuple[str, ...]  # (qkv,) fused, or (q, k, v): the first is the unit that is planned
    output: str  # the projection that reads the heads back
    num_heads: int
    head_dim: int

    @property
    def parts(self) -> int:
        """Query, key and value rows per head in the unit layer: 3 for a fused qkv, 1 for a separate q."""
        return 3 if len(self.layers) == 1 else 1

    def blocks(self) -> list[list[int]]:
        """The unit layer's output channels, one list per head (each channel of a block goes with the head)."""
        dim, hd = self.num_heads * self.head_dim, self.head_dim
        return [[p * dim + h * hd + d for p in range(self.parts) for d in range(hd)] for h in range(self.num_heads)]

    def after_removal(self, attn: nn.Module, unit: nn.Linear) -> Heads:
        """The heads left once ``unit`` lost whole heads; the module's head-count attributes are set to match."""
        count = unit.out_features // (self.parts * self.head_dim)
        for attr in HEAD_COUNTS:
            if isinstance(getattr(attn, attr, None), int):
                setattr(attn, attr, count)
        return replace(self, num_heads=count)


def find_attention(module: nn.Module, names: list[str]) -> tuple[dict[str, Heads], dict[str, tuple[str, str]]]:
    """``(heads, roles)``: the heads of each attention module whose heads can go, keyed by the unit layer, and
    ``{layer: (role, attention module)}`` for layers that attention rules out of channel pruning: ``"fixed"`` (the
    attention cannot lose a head) and ``"mha"`` (inside an ``nn.MultiheadAttention``); ``"reads"`` marks the layers
    that read the embedding dimension for an attention (its q/k/v), for the graph to find the stream."""
    prunable = set(names)
    heads: dict[str, Heads] = {}
    roles: dict[str, tuple[str, str]] = {}
    for name, mod in module.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(mod, nn.MultiheadAttention):
            for child, _ in mod.named_modules():
                if child and prefix + child in prunable:
                    roles[prefix + child] = ("mha", name)
            continue
        found = layout(mod)
        if found is None or not all(prefix + n in prunable for n in (*found.layers, found.output)):
            continue
        found = replace(found, attention=name, layers=tuple(prefix + n for n in found.layers),
                        output=prefix + found.output)
        if found.num_heads > 1 and one_head_less_runs(mod, found, prefix):
            heads[found.layers[0]] = found
            roles.update({layer: ("reads", name) for layer in found.layers})
        else:
            roles.update({layer: ("fixed", name) for layer in found.layers})
    return heads, roles


def attention_heads(module: nn.Module) -> list[Heads]:
    """The heads of every attention module of ``module`` in definition order, whether or not they can be removed:
    fused ``qkv``, separate ``q/k/v`` and ``nn.MultiheadAttention`` (its ``in_proj_weight`` makes them, ``out_proj``
    reads them; only with query, key and value of one width)."""
    found = []
    for name, mod in module.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(mod, nn.MultiheadAttention):
            if mod._qkv_same_embed_dim and mod.num_heads > 0:
                found.append(Heads(name, (prefix + "in_proj_weight",), prefix + "out_proj", mod.num_heads, mod.head_dim))
            continue
        heads = layout(mod)
        if heads is not None:
            found.append(replace(heads, attention=name, layers=tuple(prefix + n for n in heads.layers),
                                 output=prefix + heads.output))
    return found


def head_norms(weights: dict[str, torch.Tensor], heads: Heads, norm: str = "l2") -> list[float]:
    """One magnitude per head: the L1 (sum of |w|) or L2 norm of its query, key and value rows together with the
    output projection's columns that read it. ``weights`` maps each of ``heads.layers`` and ``heads.output`` to its
    weight matrix."""
    if norm not in ("l1", "l2"):
        raise ValueError(f"norm must be 'l1' or 'l2'; got {norm!r}")
    out = weights[heads.output].detach().float()
    values = []
    for h, rows in enumerate(heads.blocks()):
        index = torch.tensor(rows)
        parts = [weights[layer].detach().float()[index] for layer in heads.layers]
        parts.append(out[:, h * heads.head_dim : (h + 1) * heads.head_dim])
        flat = torch.cat([p.reshape(-1) for p in parts])
        values.append(float(flat.abs().sum() if norm == "l1" else torch.linalg.vector_norm(flat)))
    return values


def layout(mod: nn.Module) -> Heads | None:
    """The module's heads by their local names, if it is attention in one of the two layouts (a fused layer other
    than ``qkv`` is named by the module's ``unit_name``, as a :class:`~pruner_core.graph.head_forms.HeadAttention`
    names its own)."""
    fused = getattr(mod, "unit_name", "qkv")
    output = getattr(mod, "output_name", None) or next(
        (n for n in OUTPUTS if isinstance(getattr(mod, n, None), nn.Linear)), None)
    if output is None or not isinstance(getattr(mod, output, None), nn.Linear):
        return None
    count = next((getattr(mod, a) for a in HEAD_COUNTS if isinstance(getattr(mod, a, None), int)), None)
    qkv = getattr(mod, fused, None)
    if isinstance(qkv, nn.Linear) and count:
        head_dim = getattr(mod, "head_dim", qkv.out_features // (3 * count))
        if isinstance(head_dim, int) and qkv.out_features == 3 * count * head_dim == 3 * getattr(mod, output).in_features:
            return Heads("", (fused,), output, count, head_dim)
    for trio in SEPARATE:
        linears = [getattr(mod, n, None) for n in trio]
        if all(isinstance(q, nn.Linear) for q in linears) and len({q.out_features for q in linears}) == 1:
            head_dim = getattr(mod, "head_dim", getattr(mod, "attention_head_size", None))
            width = linears[0].out_features
            if isinstance(head_dim, int) and head_dim > 0 and width % head_dim == 0 and (
                    getattr(mod, output).in_features == width):
                return Heads("", trio, output, width // head_dim, head_dim)
    return None


def one_head_less_runs(attn: nn.Module, heads: Heads, prefix: str = "") -> bool:
    """Whether a copy of ``attn`` with its last head removed still runs and returns its input's shape."""
    trial = copy.deepcopy(attn).eval()
    local = [layer.removeprefix(prefix) for layer in heads.layers]
    dim = heads.num_heads * heads.head_dim
    gone = set(heads.blocks()[-1])
    with torch.no_grad():
        for name in local:
            layer = getattr(trial, name)
            keep = torch.tensor([c for c in range(layer.out_features) if c not in gone])
            setattr(trial, name, _rows(layer, keep))
        out = getattr(trial, heads.output.removeprefix(prefix))
        setattr(trial, heads.output.removeprefix(prefix), _columns(out, torch.arange(dim - heads.head_dim)))
        heads.after_removal(trial, getattr(trial, local[0]))
        x = torch.zeros(1, 3, getattr(trial, local[0]).in_features)
        try:
            y = trial(x)
        except Exception:  # noqa: BLE001 - a forward that cannot lose a head, whatever it raises
            return False
    y = y[0] if isinstance(y, tuple | list) else y
    return isinstance(y, torch.Tensor) and tuple(y.shape) == tuple(x.shape)


def _rows(layer: nn.Linear, keep: torch.Tensor) -> nn.Linear:
    new = nn.Linear(layer.in_features, len(keep), bias=layer.bias is not None)
    new.weight.copy_(layer.weight[keep])
    if layer.bias is not None:
        new.bias.copy_(layer.bias[keep])
    return new


def _columns(layer: nn.Linear, keep: torch.Tensor) -> nn.Linear:
    new = nn.Linear(len(keep), layer.out_features, bias=layer.bias is not None)
    new.weight.copy_(layer.weight[:, keep])
    if layer.bias is not None:
        new.bias.copy_(layer.bias)
    return new
