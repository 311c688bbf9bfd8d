"""Attention whose heads can be removed: an equivalent module in place of one whose own forward cannot lose a head.

Two kinds of attention compute heads that channel pruning could remove but whose forward stands in the way:

- ``nn.MultiheadAttention``: its heads come from one ``in_proj_weight`` parameter that torch's fused forward reads
  directly (no layer torch-pruning can follow), and its ``head_dim``/``embed_dim`` checks fix the head count;
- timm's ``Attention`` (a ``qkv`` Linear read back by ``proj``), whose forward reshapes its output to the input's
  width (``reshape(B, N, C)``), which fails once a head is gone.

:func:`open_heads` swaps each of them, in place, for a :class:`HeadAttention`: the same computation (the same
weights, in the same layout) written so the head count is read at every call. The replacement keeps the layer names
of the module it replaces, so a plan, a recipe and a slider name the same layer before and after: timm's ``qkv`` and
``proj`` stay ``qkv`` and ``proj``; an ``nn.MultiheadAttention``'s in-projection, listed as the layer
``attn.in_proj_weight``, becomes a Linear of that name (state-dict keys ``attn.in_proj_weight.weight`` and ``.bias``),
and ``attn.out_proj`` stays ``attn.out_proj``.

A swap is made only where the replacement gives the original's outputs on a random probe (within 1e-5 of their
scale), and, for ``nn.MultiheadAttention``, only for self-attention (query, key and value one tensor in the model's
forward) with query, key and value of one width and no ``bias_k``/``add_zero_attn``: everything else keeps its
module, and :func:`open_heads` says why.

Only a copy that will lose channels is opened (a channel run's working copy, the copy a graph is traced on): a mask
run, the Inspect page and every measurement of the original model see the user's own module.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pruner_core.graph.attention import layout, one_head_less_runs

TIMM_PARTS = ("q_norm", "k_norm", "attn_drop", "proj_drop")  # children of timm's Attention the forward uses


class HeadAttention(nn.Module):
    """Self-attention over ``[B, N, C]`` from one fused Linear of ``3 x num_heads x head_dim`` outputs (queries, keys
    and values, each ``num_heads x head_dim`` rows in head order), read back by an output Linear.

    ``num_heads`` is read at every forward, so removing whole heads (their rows in the fused layer, their columns
    in the output one) and lowering ``num_heads`` keeps the module working.
    """

    def __init__(self, unit: nn.Linear, output: nn.Linear, num_heads: int, head_dim: int, scale: float, *,
                 unit_name: str = "qkv", output_name: str = "proj", parts: dict[str, nn.Module] | None = None,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.unit_name, self.output_name = unit_name, output_name
        self.num_heads, self.head_dim, self.scale, self.dropout = num_heads, head_dim, float(scale), float(dropout)
        setattr(self, unit_name, unit)
        setattr(self, output_name, output)
        for name, part in (parts or {}).items():
            setattr(self, name, part)

    def attend(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(output [B, N, C], attention weights [B, heads, N, N])`` for ``x`` ``[B, N, C]``; ``bias`` is added to
        the attention logits (a mask as 0 / -inf), broadcast to ``[B, heads, N, N]``."""
        b, n, _ = x.shape
        qkv = getattr(self, self.unit_name)(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self._part("q_norm")(q), self._part("k_norm")(k)
        logits = (q * self.scale) @ k.transpose(-2, -1)
        if bias is not None:
            logits = logits + bias
        weights = logits.softmax(dim=-1)
        dropped = self._part("attn_drop")(weights)
        if self.dropout and self.training:
            dropped = nn.functional.dropout(dropped, self.dropout)
        out = (dropped @ v).transpose(1, 2).reshape(b, n, -1)
        return self._part("proj_drop")(getattr(self, self.output_name)(out)), dropped  # after dropout, as torch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attend(x)[0]

    def _part(self, name: str) -> nn.Module:
        return getattr(self, name, None) or nn.Identity()


class HeadMultiheadAttention(HeadAttention):
    """:class:`HeadAttention` with ``nn.MultiheadAttention``'s call and return: ``(query, key, value, ...)`` ->
    ``(output, weights or None)``, batch first or not, ``key_padding_mask``/``attn_mask`` (bool: True is masked;
    float: added) and ``is_causal``. Self-attention only: ``key`` and ``value`` must be the query (or omitted).

    It never takes torch's fused fast path (``_qkv_same_embed_dim`` is False for the layers that check it, such as
    ``nn.TransformerEncoderLayer``), so the layers it is made of are the ones that run.
    """

    _qkv_same_embed_dim = False  # read by nn.TransformerEncoderLayer: no fast path around this module
    in_proj_bias = None

    def __init__(self, mha: nn.MultiheadAttention) -> None:
        unit = nn.Linear(mha.embed_dim, 3 * mha.embed_dim, bias=mha.in_proj_bias is not None)
        output = nn.Linear(mha.out_proj.in_features, mha.out_proj.out_features, bias=mha.out_proj.bias is not None)
        with torch.no_grad():
            unit.weight.copy_(mha.in_proj_weight)
            output.weight.copy_(mha.out_proj.weight)
            if mha.in_proj_bias is not None:
                unit.bias.copy_(mha.in_proj_bias)
            if mha.out_proj.bias is not None:
                output.bias.copy_(mha.out_proj.bias)
        super().__init__(unit, output, mha.num_heads, mha.head_dim, 1 / math.sqrt(mha.head_dim),
                         unit_name="in_proj_weight", output_name="out_proj", dropout=mha.dropout)
        self.embed_dim, self.batch_first = mha.embed_dim, mha.batch_first
        self.to(device=mha.in_proj_weight.device, dtype=mha.in_proj_weight.dtype)

    def forward(self, query: torch.Tensor, key: torch.Tensor | None = None, value: torch.Tensor | None = None,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = True,
                attn_mask: torch.Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        for name, other in (("key", key), ("value", value)):
            if other is not None and other is not query:
                raise ValueError(f"this attention was opened for head removal as self-attention; its {name} must be "
                                 "its query")
        unbatched = query.dim() == 2
        x = query.unsqueeze(1 if not self.batch_first else 0) if unbatched else query
        x = x if self.batch_first else x.transpose(0, 1)
        out, weights = self.attend(x, self._bias(x, key_padding_mask, attn_mask, is_causal))
        out = out if self.batch_first else out.transpose(0, 1)
        if unbatched:
            out = out.squeeze(1 if not self.batch_first else 0)
        if not need_weights:
            return out, None
        weights = weights.mean(dim=1) if average_attn_weights else weights
        return out, weights.squeeze(0) if unbatched else weights

    def _bias(self, x: torch.Tensor, key_padding_mask, attn_mask, is_causal: bool) -> torch.Tensor | None:
        b, n, _ = x.shape
        bias = None
        if attn_mask is None and is_causal:
            attn_mask = torch.ones(n, n, dtype=torch.bool, device=x.device).triu(1)
        if attn_mask is not None:
            mask = _additive(attn_mask, x.dtype)
            bias = mask.view(b, self.num_heads, n, n) if mask.dim() == 3 else mask
        if key_padding_mask is not None:
            pad = _additive(key_padding_mask, x.dtype).view(b, 1, 1, n)
            bias = pad if bias is None else bias + pad
        return bias


def _additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A mask as logits to add: bool True (masked) -> -inf, False -> 0; a float mask as it is."""
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))
    return mask.to(dtype)


def open_heads(module: nn.Module, example: torch.Tensor) -> dict[str, str | None]:
    """Swap, in place, each attention of ``module`` whose forward cannot lose a head for an equivalent
    :class:`HeadAttention` (see the module's docstring).

    Args:
        module: a working copy (changed in place).
        example: one input batch, run once to see how each ``nn.MultiheadAttention`` is called.

    Returns:
        ``{attention module: None}`` for each one swapped, ``{attention module: why not}`` for each one kept.
    """
    candidates = {name for name, mod in module.named_modules() if name and (
        isinstance(mod, nn.MultiheadAttention) or _timm_like(mod))}
    calls = _calls(module, example, candidates)
    found: dict[str, str | None] = {}
    for name, mod in list(module.named_modules()):
        if name not in candidates:
            continue
        new = None
        if isinstance(mod, nn.MultiheadAttention):
            why = _mha_why_not(mod, calls.get(name))
        elif calls.get(name) is None:
            why = "the model's forward never calls it"
        elif calls[name] != "x":
            why = "its forward is called with more than its input (a mask, say), which the replacement does not take"
        else:
            why = None
        try:
            if why is None:
                new = HeadMultiheadAttention(mod) if isinstance(mod, nn.MultiheadAttention) else _timm_replacement(mod)
        except Exception as e:  # noqa: BLE001 - a module we cannot rebuild stays as it is, named
            why = f"an equivalent head-removable module could not be built ({type(e).__name__})"
        if new is not None:
            new.train(mod.training)
            why = _differs(mod, new)
        if why is None:
            parent, _, child = name.rpartition(".")
            setattr(module.get_submodule(parent) if parent else module, child, new)
        found[name] = why
    for mod in module.modules():  # an encoder would hand opened layers NestedTensors, which they do not take
        if isinstance(mod, nn.TransformerEncoder) and any(isinstance(m, HeadAttention) for m in mod.modules()):
            mod.use_nested_tensor = False
    return found


def _timm_like(mod: nn.Module) -> bool:
    """A fused ``qkv``/``proj`` attention (``num_heads`` or ``num_attention_heads``) whose own forward cannot lose a
    head."""
    heads = layout(mod)
    return heads is not None and heads.layers == ("qkv",) and heads.output == "proj" and heads.num_heads > 1 and (
        not one_head_less_runs(mod, heads))


def _timm_replacement(mod: nn.Module) -> HeadAttention:
    heads = layout(mod)
    parts = {p: getattr(mod, p) for p in TIMM_PARTS if isinstance(getattr(mod, p, None), nn.Module)}
    scale = getattr(mod, "scale", heads.head_dim ** -0.5)
    return HeadAttention(mod.qkv, mod.proj, heads.num_heads, heads.head_dim,
                         scale if isinstance(scale, int | float) else heads.head_dim ** -0.5, parts=parts)


def _mha_why_not(mha: nn.MultiheadAttention, self_attention: str | None) -> str | None:
    if not mha._qkv_same_embed_dim:
        return "its key and value have their own widths (kdim/vdim)"
    if mha.bias_k is not None or mha.add_zero_attn:
        return "it has bias_k/bias_v or add_zero_attn"
    if self_attention is None:
        return "the model's forward never calls it"
    if self_attention != "self":
        return "it is cross-attention (its key or value is not its query)"
    return None


def _calls(module: nn.Module, example: torch.Tensor, names: set[str]) -> dict[str, str]:
    """How the forward calls each module of ``names``: ``"self"`` for an ``nn.MultiheadAttention`` given one tensor
    as query, key and value (``"cross"`` otherwise), ``"x"`` for any other module called with its input alone
    (``"more"`` otherwise); a module never called is absent."""
    seen: dict[str, str] = {}
    handles = []
    for name, mod in module.named_modules():
        if name not in names:
            continue
        if isinstance(mod, nn.MultiheadAttention):
            def hook(_, args, kwargs, name=name):
                given = [*args[:3], *(kwargs.get(p) for p in ("query", "key", "value")[len(args[:3]):])]
                same = given[0] is given[1] and given[1] is given[2]
                seen[name] = "self" if same and seen.get(name, "self") == "self" else "cross"
        else:
            def hook(_, args, kwargs, name=name):
                alone = len(args) == 1 and not kwargs
                seen[name] = "x" if alone and seen.get(name, "x") == "x" else "more"
        handles.append(mod.register_forward_pre_hook(hook, with_kwargs=True))
    if not handles:
        return seen
    try:
        with torch.no_grad():
            module(example)
    except Exception:  # noqa: BLE001 - a model that cannot run its example opens no attention
        return {}
    finally:
        for h in handles:
            h.remove()
    return seen


def _differs(old: nn.Module, new: HeadAttention) -> str | None:
    """None when ``new`` gives ``old``'s outputs on a random probe (eval mode), else why not."""
    width = getattr(new, new.unit_name).in_features
    probe = torch.randn(2, 5, width, generator=torch.Generator().manual_seed(0)).to(
        getattr(new, new.unit_name).weight)
    modes = (old.training, new.training)
    old.eval(), new.eval()
    try:
        with torch.no_grad():
            if isinstance(old, nn.MultiheadAttention):
                if not old.batch_first:
                    probe = probe.transpose(0, 1)
                want, got = old(probe, probe, probe)[0], new(probe)[0]
            else:
                want, got = old(probe), new(probe)
    except Exception as e:  # noqa: BLE001 - a forward we do not reproduce, whatever it raises
        return f"an equivalent head-removable module could not be run in its place ({type(e).__name__})"
    finally:
        old.train(modes[0]), new.train(modes[1])
    if not isinstance(want, torch.Tensor) or want.shape != got.shape:
        return "its forward returns something other than attention over its input"
    if not torch.allclose(want, got, atol=1e-5 * max(1.0, float(want.abs().max()))):
        return "its forward computes something other than standard scaled dot-product attention"
    return None
