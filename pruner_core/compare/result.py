"""The typed figures of one model in a comparison (:class:`ModelFigures`, its :class:`Sizes`), with one JSON form.

``RUN/compare/compare.json`` stores :meth:`ModelFigures.to_json` per data set, and ``pruner compare --json`` writes
it per model. :meth:`ModelFigures.from_json` refuses data it cannot read whole, naming the field, so a damaged
cache entry is measured again instead of breaking a table later.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pruner_core.errors import PrunerError
from pruner_core.measure.metrics import Latency

_WHERE = "comparison figures"


@dataclass(frozen=True)
class Sizes:
    """Bytes on disk: the weights as dense safetensors, that file gzip-compressed, the sparse encoding (a bitmask of
    the non-zeros plus their values, computed), and the ONNX file (``None`` when no ONNX file was written)."""

    dense_bytes: int
    gzip_bytes: int
    sparse_bytes: int
    onnx_bytes: int | None = None

    NAMES = ("dense_bytes", "gzip_bytes", "sparse_bytes", "onnx_bytes")  # the figures, in the order tables show them

    def to_json(self) -> dict:
        """``{dense_bytes, gzip_bytes, sparse_bytes}`` and ``onnx_bytes`` when there is an ONNX file."""
        out = {"dense_bytes": self.dense_bytes, "gzip_bytes": self.gzip_bytes, "sparse_bytes": self.sparse_bytes}
        return out | ({"onnx_bytes": self.onnx_bytes} if self.onnx_bytes is not None else {})

    @classmethod
    def from_json(cls, data) -> Sizes:
        """Read :meth:`to_json`'s output.

        Raises:
            PrunerError: not an object, or a size missing or not a whole number of bytes.
        """
        data = _object(data, "sizes")
        return cls(*(_whole(f"sizes.{name}", data.get(name)) for name in cls.NAMES[:3]),
                   onnx_bytes=_whole("sizes.onnx_bytes", data["onnx_bytes"]) if "onnx_bytes" in data else None)


@dataclass(frozen=True)
class ModelFigures:
    """What a comparison measured of one model on one data set.

    Attributes:
        accuracy: top-1 on the test split, a fraction.
        per_class: top-1 per class (``None`` for a class absent from the test split).
        params: parameters; ``nonzero_params``: those that are not exactly zero.
        flops: FLOPs of one forward pass at batch 1 (a multiply-add counts as 2).
        sizes: the bytes of each serialisation (:class:`Sizes`).
        sparsity: fraction of exactly-zero weights per prunable layer.
        how: how each figure was measured, by figure name.
        onnx_error: why there is no ONNX file (``None`` when there is one, or none was asked for).
        latency: ``{runtime: {"batch1": Latency, "batch64": Latency}}`` (runtime ``pytorch``, ``onnxruntime``);
            empty until the models of the comparison have been timed together.
        measured: when they were timed (ISO 8601); equal across the entries of one sitting.
    """

    accuracy: float
    per_class: list[float | None]
    params: int
    nonzero_params: int
    flops: int
    sizes: Sizes
    sparsity: dict[str, float]
    how: dict[str, str]
    onnx_error: str | None = None
    latency: dict[str, dict[str, Latency]] = field(default_factory=dict)
    measured: str | None = None

    def latency_at(self, runtime: str, batch: int) -> Latency | None:
        """The latency timed in ``runtime`` at ``batch`` (``None``: not timed there, e.g. no ONNX file)."""
        return self.latency.get(runtime, {}).get(f"batch{batch}")

    def to_json(self) -> dict:
        """Plain data with the keys ``compare.json`` has always held: ``accuracy``, ``per_class``, ``params``,
        ``nonzero_params``, ``flops``, ``sizes``, ``sparsity``, ``onnx_error``, ``how``, ``latency`` (each
        :meth:`Latency.to_dict <pruner_core.measure.metrics.Latency.to_dict>`, its label included) and ``measured``."""
        return {
            "accuracy": self.accuracy, "per_class": list(self.per_class), "params": self.params,
            "nonzero_params": self.nonzero_params, "flops": self.flops, "sizes": self.sizes.to_json(),
            "sparsity": dict(self.sparsity), "onnx_error": self.onnx_error, "how": dict(self.how),
            "latency": {rt: {b: lat.to_dict() for b, lat in per_batch.items()} for rt, per_batch in self.latency.items()},
            "measured": self.measured,
        }

    @classmethod
    def from_json(cls, data) -> ModelFigures:
        """Read :meth:`to_json`'s output (keys it does not know are ignored; ``onnx_error`` and ``measured`` may be
        absent).

        Raises:
            PrunerError: not an object, or a figure missing or of the wrong kind (the message names it).
        """
        data = _object(data, "the figures")
        per_class = data.get("per_class")
        if not isinstance(per_class, list):
            raise _wrong("per_class", per_class, "a list")
        sparsity, how, latency = (_object(data.get(key), key) for key in ("sparsity", "how", "latency"))
        return cls(
            accuracy=_number("accuracy", data.get("accuracy")),
            per_class=[None if v is None else _number(f"per_class[{i}]", v) for i, v in enumerate(per_class)],
            params=_whole("params", data.get("params")),
            nonzero_params=_whole("nonzero_params", data.get("nonzero_params")),
            flops=_whole("flops", data.get("flops")),
            sizes=Sizes.from_json(data.get("sizes")),
            sparsity={str(k): _number(f"sparsity.{k}", v) for k, v in sparsity.items()},
            how={str(k): _text(f"how.{k}", v) for k, v in how.items()},
            onnx_error=_text("onnx_error", data.get("onnx_error"), optional=True),
            latency={str(rt): {str(b): _latency(f"latency.{rt}.{b}", lat)
                               for b, lat in _object(per_batch, f"latency.{rt}").items()}
                     for rt, per_batch in latency.items()},
            measured=_text("measured", data.get("measured"), optional=True),
        )


def _wrong(name: str, value, expected: str) -> PrunerError:
    got = "nothing" if value is None else f"{type(value).__name__} {str(value)[:60]!r}"
    return PrunerError(f"{_WHERE}: '{name}' must be {expected}; got {got}")


def _object(value, name: str) -> dict:
    if not isinstance(value, dict):
        raise _wrong(name, value, "an object")
    return value


def _number(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _wrong(name, value, "a number")
    return value


def _whole(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _wrong(name, value, "a whole number, at least 0")
    return value


def _text(name: str, value, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise _wrong(name, value, "text" + (" or null" if optional else ""))
    return value


def _latency(name: str, value) -> Latency:
    """A :class:`Latency` read with :meth:`Latency.from_dict`, its fields checked first."""
    value = _object(value, name)
    for key in ("median_ms", "p25_ms", "p75_ms", "min_ms"):
        _number(f"{name}.{key}", value.get(key))
    for key in ("batch", "runs", "warmup", "threads"):
        _whole(f"{name}.{key}", value.get(key))
    for key in ("device", "runtime"):
        _text(f"{name}.{key}", value.get(key))
    try:
        return Latency.from_dict(value)
    except (KeyError, TypeError) as e:  # a field added to Latency and not checked above
        raise PrunerError(f"{_WHERE}: '{name}' is incomplete ({type(e).__name__}: {e})") from None
