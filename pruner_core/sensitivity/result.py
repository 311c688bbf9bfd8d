"""The typed results of a sensitivity analysis: scan progress, per-unit curves, the scan, a recommendation, and what a
recipe measured when applied.

A :class:`Sensitivity` is saved and loaded as JSON (:meth:`Sensitivity.to_json` / :meth:`Sensitivity.from_json`,
:meth:`Sensitivity.save` / :meth:`Sensitivity.load`); the cache and ``pruner sensitivity --json`` write it.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from torch import nn

from pruner_core.errors import SpecError
from pruner_core.pruning.recipe import Recipe

FORMAT_VERSION = 1


@dataclass
class ScanProgress:
    """One step of a scan, for a progress bar: ``done`` of ``total`` evaluations, ``eta_s`` seconds left."""

    done: int
    total: int
    eta_s: float | None
    current: str  # the unit being scanned
    ratio: float | None = None

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


@dataclass
class UnitCurve:
    """The curves of one scanned unit: a layer, or (``channel``) a coupled group named by its first member.

    ``accuracy[i]`` and ``loss[i]`` were measured with ``ratios[i]`` of the unit pruned (of its weights, or of
    its output channels for ``channel``) and nothing else. For ``channel``, ``consumers`` are the layers that
    read the group's channels, ``kept_channels[i]`` what ``ratios[i]`` keeps, and ``latency`` (when measured)
    maps kept channel counts to milliseconds.
    """

    name: str
    layers: list[str]
    weights: int
    flops: int | None
    is_output: bool = False
    channels: int | None = None
    consumers: list[str] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    kept_channels: list[int] | None = None
    latency: dict | None = None
    samples: list[int] = field(default_factory=list)  # evaluation samples each ratio used (0: past a collapse)

    def drop(self, dense_accuracy: float) -> list[float]:
        """Accuracy lost at each ratio (negative where pruning happened to help)."""
        return [dense_accuracy - a for a in self.accuracy]


@dataclass
class Sensitivity:
    """The result of :func:`~pruner_core.sensitivity.scan.scan`; :meth:`to_json` is plain JSON-serialisable data.

    ``layers`` describes every prunable layer of the model (``weights``, ``flops``, ``out``, ``in``,
    ``groups`` = how many groups of weights the granularity has in it, ``is_output``), which is what
    :func:`~pruner_core.sensitivity.allocate.recommend` needs to predict sparsity and FLOPs without the model.
    """

    model: str
    fingerprint: str
    data: str
    settings: dict
    dense_accuracy: float
    dense_loss: float
    units: list[UnitCurve]
    layers: dict[str, dict]
    complete: bool
    seconds: float
    how: str = ""

    def unit(self, name: str) -> UnitCurve:
        """The unit called ``name`` (a layer name, or a group's first member)."""
        for u in self.units:
            if u.name == name:
                return u
        raise SpecError(f"no scanned unit named '{name}'; scanned: {', '.join(u.name for u in self.units)}")

    def least_sensitive(self) -> list[str]:
        """Unit names ordered from the least to the most sensitive (mean accuracy drop, then mean loss rise)."""

        def key(u: UnitCurve) -> tuple[float, float]:
            drops = u.drop(self.dense_accuracy)
            rises = [v - self.dense_loss for v in u.loss]
            return (sum(drops) / len(drops), sum(rises) / len(rises)) if drops else (math.inf, math.inf)

        return [u.name for u in sorted(self.units, key=key)]

    def to_json(self) -> dict:
        """Plain data: ``{"version", "model", "fingerprint", "data", "settings", "dense": {"accuracy", "loss"},
        "layers": {name: {...}}, "units": [{"name", "layers", "weights", "flops", "is_output", "channels",
        "consumers", "ratios", "accuracy", "loss", "kept_channels", "latency"}, ...], "complete", "seconds",
        "how"}``."""
        return {
            "version": FORMAT_VERSION,
            "model": self.model,
            "fingerprint": self.fingerprint,
            "data": self.data,
            "settings": dict(self.settings),
            "dense": {"accuracy": self.dense_accuracy, "loss": self.dense_loss},
            "layers": {k: dict(v) for k, v in self.layers.items()},
            "units": [asdict(u) for u in self.units],
            "complete": self.complete,
            "seconds": self.seconds,
            "how": self.how,
        }

    @classmethod
    def from_json(cls, data: dict, source: str = "sensitivity scan") -> Sensitivity:
        """Rebuild from :meth:`to_json` output (e.g. a JSON file written by ``pruner sensitivity``).

        Raises:
            SpecError: not a scan of this format (naming what is missing).
        """
        if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
            got = data.get("version") if isinstance(data, dict) else type(data).__name__
            raise SpecError(f"{source}: not a sensitivity scan of format version {FORMAT_VERSION}; got version {got!r}")
        try:
            units = [UnitCurve(**u) for u in data["units"]]
            return cls(
                data["model"], data["fingerprint"], data["data"], dict(data["settings"]), float(data["dense"]["accuracy"]),
                float(data["dense"]["loss"]), units, {k: dict(v) for k, v in data["layers"].items()},
                bool(data["complete"]), float(data["seconds"]), data.get("how", ""),
            )
        except (KeyError, TypeError, AttributeError) as e:
            raise SpecError(f"{source}: a sensitivity scan is missing or has a malformed field ({type(e).__name__}: {e})") from None

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_json` as JSON (atomically)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Sensitivity:
        """Read a scan written by :meth:`save` (SpecError when unreadable)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SpecError(f"sensitivity scan '{path}' cannot be read ({type(e).__name__}: {e})") from None
        return cls.from_json(data, source=str(path))


@dataclass
class Recommendation:
    """Per-unit ratios meeting a target, the recipe that applies them, and the predicted outcome.

    ``predicted`` and ``uniform["predicted"]`` hold ``param_sparsity``, ``flop_reduction`` (of the prunable
    layers; ``None`` when FLOPs are unknown), ``accuracy`` (dense accuracy times each unit's retained share
    ``1 - drop / dense`` at its ratio, read from the curves: in [0, dense]) and ``accuracy_drop`` (dense minus it).
    """

    target: str
    value: float
    ratios: dict[str, float]  # unit name -> ratio (of weights, or of output channels for channel)
    recipe: Recipe
    predicted: dict
    uniform: dict
    threshold: float  # the per-unit accuracy-drop threshold the allocation reached

    def to_json(self) -> dict:
        return {"target": self.target, "value": self.value, "ratios": dict(self.ratios), "recipe": self.recipe.to_dict(),
                "predicted": dict(self.predicted), "uniform": {**self.uniform, "recipe": self.uniform["recipe"].to_dict()},
                "threshold": self.threshold}

    def summary(self) -> str:
        p, u = self.predicted, self.uniform["predicted"]
        return (f"recommended: {_pct(p['param_sparsity'])} parameter sparsity, {_pct(p['flop_reduction'])} FLOP reduction, "
                f"predicted accuracy {_pct(p['accuracy'])} (drop {_pct(p['accuracy_drop'])}); uniform {self.uniform['ratio']:.3f}: "
                f"{_pct(u['param_sparsity'])} sparsity, {_pct(u['flop_reduction'])} FLOPs, predicted accuracy "
                f"{_pct(u['accuracy'])} (drop {_pct(u['accuracy_drop'])})")


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2%}"


@dataclass
class Measured:
    """What a recipe did when applied without fine-tuning: measured, on the evaluation subset."""

    accuracy: float
    loss: float
    param_sparsity: float  # of the prunable layers' weights, zero or removed
    flop_reduction: float  # of the prunable layers' FLOPs, masked weights' multiply-adds counted as removed
    samples: int
    module: nn.Module = field(repr=False)

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "module"}
