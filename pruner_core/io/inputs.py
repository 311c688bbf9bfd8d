"""The inputs a model is traced, counted and timed on: zeros or random values of its sample shape, as floats, or as
integer token ids for a model that starts with an embedding.

A sample shape alone does not say which: ``(16,)`` is 16 features to an MLP and 16 token ids to a text CNN. A model
takes ids when it holds an ``nn.Embedding`` and refuses floats; that is found once per module (one forward pass of
one sample) and remembered while the module lives.
"""

from __future__ import annotations

import weakref

import torch
from torch import nn

_TAKES_IDS: weakref.WeakKeyDictionary[nn.Module, dict[tuple[int, ...], bool]] = weakref.WeakKeyDictionary()
EMBEDDINGS = ("Embedding", "EmbeddingBag")  # by name: a TorchScript submodule is not an nn.Embedding instance


def embeddings(module: nn.Module) -> list[nn.Module]:
    """The embedding layers of ``module`` (eager or TorchScript)."""
    return [m for m in module.modules() if getattr(m, "original_name", type(m).__name__) in EMBEDDINGS]


def _has_embedding(module: nn.Module) -> bool:
    graph = getattr(module, "graph", None)  # a torch.export / fx program: its layers are flattened into nodes
    return bool(embeddings(module)) or (graph is not None and "embedding" in str(graph))


def takes_ids(module: nn.Module, shape: tuple[int, ...]) -> bool:
    """Whether ``module`` takes integer token ids (not floats) as samples of ``shape``."""
    known = _TAKES_IDS.setdefault(module, {})
    key = tuple(shape)
    if key not in known:
        known[key] = _has_embedding(module) and not _runs(module, torch.zeros(1, *key))
    return known[key]


def _runs(module: nn.Module, x: torch.Tensor) -> bool:
    try:
        with torch.inference_mode():
            module(x)
    except Exception:  # noqa: BLE001 - any refusal of floats, for an embedding model, means "ids"
        return False
    return True


def example_input(module: nn.Module, shape: tuple[int, ...], batch: int = 1) -> torch.Tensor:
    """Zeros of ``[batch, *shape]``: floats, or id 0 for a model that takes token ids."""
    return torch.zeros(batch, *shape, dtype=torch.long if takes_ids(module, shape) else torch.float32)


def random_input(module: nn.Module, shape: tuple[int, ...], batch: int, seed: int = 0) -> torch.Tensor:
    """A seeded random batch: uniform in [0, 1), or ids below the smallest vocabulary of the model's embeddings."""
    generator = torch.Generator().manual_seed(seed)
    if takes_ids(module, shape):
        vocab = min((int(m.weight.shape[0]) for m in embeddings(module)), default=1)
        return torch.randint(0, vocab, (batch, *shape), generator=generator)
    return torch.rand(batch, *shape, generator=generator)
