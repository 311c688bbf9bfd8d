"""Models that return more than a tensor: a tuple or list (logits and auxiliary heads), a dict or a ``ModelOutput``.

A spec ending in ``#KEY`` names the output that holds the class scores: ``pkg.models:net#0`` (the first of a tuple),
``model.pt2#logits``. The model is then wrapped as :class:`Output`, a module returning that one tensor, and every
page and command sees class scores. A model whose output is not a tensor is named with what it returns and the spec
that would pick the scores (:func:`describe`).
"""

from __future__ import annotations

import re

import torch
from torch import nn

OUTPUT_RE = re.compile(r"^(?P<base>.+)#(?P<key>[A-Za-z_]\w*|\d+)$")


class Output(nn.Module):
    """``model`` returning only its output ``key`` (an index of a tuple or list, a key of a dict or ModelOutput)."""

    def __init__(self, model: nn.Module, key: int | str) -> None:
        super().__init__()
        self.model, self.key = model, key

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[self.key]


def split_output(spec: str) -> tuple[str, int | str | None]:
    """``(spec without #KEY, KEY)``, KEY an int for an index; ``(spec, None)`` without one."""
    match = OUTPUT_RE.match(spec)
    if match is None:
        return spec, None
    key = match.group("key")
    return match.group("base"), int(key) if key.isdigit() else key


def describe(out) -> tuple[str, int | str | None]:
    """What a model returned, in words, and the key of the output that looks like class scores (a ``[batch, n]``
    tensor; ``logits`` first), or None."""
    if isinstance(out, dict) or hasattr(out, "keys"):  # a dict or a transformers ModelOutput
        items = [(k, out[k]) for k in out.keys()]
        kind = f"a {type(out).__name__} with keys"
    elif isinstance(out, tuple | list):
        items = list(enumerate(out))
        kind = f"a {type(out).__name__} of {len(out)}"
    else:
        return type(out).__name__, None
    shown = ", ".join(f"{k!r}: {list(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__}" for k, v in items)
    scores = [k for k, v in items if isinstance(v, torch.Tensor) and v.dim() == 2]
    best = "logits" if "logits" in scores else (scores[0] if scores else None)
    return f"{kind} {shown}", best
