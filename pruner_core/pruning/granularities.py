"""The registry of pruning granularities: what a group of weights is, and which layers it applies to.

A granularity decides *which groups* of a weight ``[out, in, *kernel]`` exist (:meth:`Granularity.kept_dims`: the
leading dimensions that index a group; the rest are summed over) and *where it applies*
(:meth:`Granularity.why_not`). The recipe, the preview, the pages and the CLI ask this registry; no rule about a
granularity is written anywhere else. No heavy imports: the rules are plain Python.

>>> GRANULARITIES["kernel"].kept_dims(4), GRANULARITIES["vector"].kept_dims(4), GRANULARITIES["channel"].kept_dims(2)
(2, 3, 1)
>>> why = GRANULARITIES["nm"].why_not(LayerFacts("Linear", (16, 10), True, False), nm=(2, 4))
>>> why, why.short
('10 input features is not a multiple of M=4', 'not a multiple of 4')
"""

from __future__ import annotations

from dataclasses import dataclass

from pruner_core.errors import SpecError

NM_DEFAULT = (2, 4)
MATRICES = ("Linear", "Embedding", "Recurrent", "Attention")  # 2-D weights [out, in]: no kernels


@dataclass(frozen=True)
class LayerFacts:
    """What a granularity needs to know about a layer to say whether it applies."""

    type: str  # Linear, Conv1d, Conv2d, Embedding, Recurrent (an LSTM/GRU matrix), Attention (an in-projection)
    shape: tuple[int, ...]  # weight shape [out, in, *kernel]
    eager: bool  # an ordinary nn.Module whose layers can be physically removed
    is_output: bool  # its outputs are the model's outputs
    traced: bool = True  # torch-pruning's dependency graph could be built, so coupled channels are known
    follows: tuple[str, ...] = ()  # its output channels are those layers' channels (a depthwise over a concatenation)
    attention: tuple[str, str] = ()  # ("stream" | "mha", attention module): attention rules its channels out


class Reason(str):
    """Why a granularity does not apply to a layer (or how it is constrained where it does): the sentence itself, and
    ``short``, a label of a few words that a table cell shows beside the sentence said once below the table.

    >>> r = Reason("depthwise", "each filter reads one input channel"); r == "each filter reads one input channel", r.short
    (True, 'depthwise')
    """

    short: str

    def __new__(cls, short: str, text: str) -> Reason:
        reason = super().__new__(cls, text)
        reason.short = short
        return reason

    def __getnewargs__(self) -> tuple[str, str]:  # pickled (st.cache_data) and deep-copied with its label
        return self.short, str(self)


def short_reason(reason: str) -> str:
    """A reason's short label; a plain sentence (read back from JSON written before labels were kept) is its own."""
    return getattr(reason, "short", None) or str(reason)


class Granularity:
    """One granularity. Subclasses set ``name`` and ``label`` and override :meth:`kept_dims` and :meth:`why_not`."""

    name: str = ""
    label: str = ""

    def kept_dims(self, ndim: int) -> int:
        """How many leading dimensions of an ``ndim``-dimensional weight index a group (the rest are summed over)."""
        return ndim

    def group_shape(self, weight_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape of one layer's group scores."""
        return tuple(weight_shape[: self.kept_dims(len(weight_shape))])

    def why_not(self, layer: LayerFacts, nm: tuple[int, int] = NM_DEFAULT) -> Reason | None:
        """None where this granularity applies to ``layer``, else the :class:`Reason` it does not."""
        return None

    def __repr__(self) -> str:
        return f"<granularity {self.name}>"


class Unstructured(Granularity):
    name, label = "unstructured", "single weights"


class NM(Granularity):
    name, label = "nm", f"N:M ({NM_DEFAULT[0]}:{NM_DEFAULT[1]}) along the input dimension"

    def why_not(self, layer: LayerFacts, nm: tuple[int, int] = NM_DEFAULT) -> Reason | None:
        m, n_in = nm[1], layer.shape[1]
        if n_in % m:
            unit = "embedding dimensions" if layer.type == "Embedding" else (
                "input features" if layer.type in MATRICES else "input channels")
            return Reason(f"not a multiple of {m}", f"{n_in} {unit} is not a multiple of M={m}")
        return None


def check_nm(n, m) -> None:
    """The N:M rule: whole numbers with 1 <= N < M (N = M would keep every weight).

    Raises:
        SpecError: naming both numbers.
    """
    whole = all(isinstance(v, int) and not isinstance(v, bool) for v in (n, m))
    if not (whole and 1 <= n < m):
        raise SpecError(f"n must be smaller than m (1 <= n < m); got n={n}, m={m}")


def _no_kernels(layer: LayerFacts, what: str) -> Reason:
    """Why a 2-D weight (Linear, Embedding, recurrent or attention matrix) has no ``what``, and what applies."""
    return Reason("2-D weight", f"{layer.type} weights have no {what} (use unstructured, nm"
                  f"{' or channel' * (layer.type == 'Linear')})")


class Vector(Granularity):
    name, label = "vector", "kernel rows W[o, i, r, :]"

    def kept_dims(self, ndim: int) -> int:
        return ndim - 1

    def why_not(self, layer: LayerFacts, nm: tuple[int, int] = NM_DEFAULT) -> Reason | None:
        if layer.type in MATRICES:
            return _no_kernels(layer, "kernel rows")
        if layer.shape[-1] < 2:
            return Reason(f"rows of width {layer.shape[-1]}",
                          f"kernel rows of width {layer.shape[-1]} are single weights (use unstructured)")
        return None


class Kernel(Granularity):
    name, label = "kernel", "whole k x k kernels W[o, i, :, :]"

    def kept_dims(self, ndim: int) -> int:
        return 2

    def why_not(self, layer: LayerFacts, nm: tuple[int, int] = NM_DEFAULT) -> Reason | None:
        if layer.type in MATRICES:
            return _no_kernels(layer, "kernels")
        if layer.shape[1] == 1:
            return Reason("depthwise", "each filter reads one input channel (a depthwise or single-channel "
                          "convolution), so its one kernel is the whole filter: removing it removes the output channel "
                          "(use channel or unstructured)")
        size = 1
        for k in layer.shape[2:]:
            size *= k
        return Reason("1x1 kernel", "a 1x1 kernel is a single weight (use unstructured)") if size < 2 else None


class Channel(Granularity):
    name, label = "channel", "output channels, physically removed"

    def kept_dims(self, ndim: int) -> int:
        return 1

    def why_not(self, layer: LayerFacts, nm: tuple[int, int] = NM_DEFAULT) -> Reason | None:
        if not layer.eager:
            return Reason("program (mask only)",
                          "TorchScript / torch.export programs cannot have channels physically removed (mask only)")
        if not layer.traced:
            return Reason("not traced", "torch-pruning could not trace the model, so which channels are coupled is "
                          "unknown")
        if layer.type == "Embedding":
            return Reason("embedding", "an embedding's rows are its vocabulary, not output channels (use unstructured "
                          "or nm)")
        opened = layer.attention[:1] == ("heads",)  # an in-projection whose heads go (see graph.head_forms)
        if layer.type in ("Recurrent", "Attention") and not opened:
            return Reason("attention matrix" if layer.type == "Attention" else "recurrent matrix",
                          f"a{'n attention in-projection' if layer.type == 'Attention' else ' recurrent weight matrix'} "
                          "is masked only: its rows are gates or heads, not channels (use unstructured or nm)")
        if layer.is_output:
            return Reason("output layer", "its outputs are the model's outputs (the classes)")
        if layer.attention and not opened:
            role, module = layer.attention
            if role == "fixed":
                return Reason("heads fixed", f"attention '{module}' cannot lose a head: it has one head, or its "
                              "forward reshapes its output to the input's width and computes more than plain scaled "
                              "dot-product attention (a per-head bias, say), so no equivalent module can stand in "
                              "for it; plain attention has its heads removed whole, timm's reshape(B, N, C) included")
            if role == "mha":
                return Reason("MultiheadAttention", f"it is part of nn.MultiheadAttention '{module}', whose heads are "
                              "removed only in self-attention (query, key and value one tensor) of one width, without "
                              "bias_k or add_zero_attn; use unstructured or nm here")
            return Reason("attention width", f"its channels are the embedding dimension that attention '{module}' "
                          "reads and reshapes into heads: channel pruning removes whole attention heads and MLP hidden "
                          "units instead")
        if layer.follows:
            return Reason("follows its inputs", f"its channels are those of "
                          f"{', '.join(repr(n) for n in layer.follows)} (a depthwise layer over their concatenation): "
                          "they go when those layers' channels go")
        if layer.shape[0] < 2:
            return Reason("one channel", "a single output channel cannot be removed")
        return None


GRANULARITIES: dict[str, Granularity] = {g.name: g for g in (Unstructured(), NM(), Vector(), Kernel(), Channel())}


def granularity(name: str) -> Granularity:
    """The registered granularity ``name``.

    Raises:
        SpecError: naming the valid ones.
    """
    if name not in GRANULARITIES:
        raise SpecError(f"unknown granularity '{name}'; valid: {', '.join(GRANULARITIES)}")
    return GRANULARITIES[name]


def prunability(layer: LayerFacts, nm: tuple[int, int] = NM_DEFAULT) -> dict[str, Reason | None]:
    """Map each granularity to None (applies) or the reason it does not apply to ``layer``."""
    return {name: g.why_not(layer, nm) for name, g in GRANULARITIES.items()}
