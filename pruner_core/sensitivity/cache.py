"""Complete scans stored on disk as JSON, keyed by the model's weights, the evaluation data and every scan setting."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from pruner_core.errors import SpecError
from pruner_core.io.data import Dataset, sample_digest
from pruner_core.io.models import LoadedModel
from pruner_core.sensitivity.engine import BATCH_SIZE
from pruner_core.sensitivity.result import Sensitivity
from pruner_core.sensitivity.scan import DEFAULT_RATIOS, scan


def cache_key(model: LoadedModel, data: Dataset, settings: dict) -> str:
    """A key that changes with the model's weights, the evaluation data and every scan setting.

    ``settings`` are :func:`~pruner_core.sensitivity.scan.scan`'s keyword arguments (defaults may be left out; they
    are filled in).
    """
    full = {"granularity": "unstructured", "criterion": "l1", "ratios": list(DEFAULT_RATIOS), "samples": 1000,
            "seconds": None, "layers": None, "latency": None, "latency_runs": 9, "batch_size": BATCH_SIZE, "adaptive": True}
    full |= {k: v for k, v in settings.items() if k not in ("callback", "cancel")}
    full["ratios"] = [float(r) for r in full["ratios"]]
    h = hashlib.sha256()
    h.update(model.fingerprint().encode())
    h.update(data.name.encode())
    n = min(int(full["samples"]), len(data.y_test))
    h.update(sample_digest(data.x_test, data.y_test, n).encode())  # evaluation samples
    h.update(sample_digest(data.x_train, data.y_train, 256).encode())  # calibration samples
    h.update(json.dumps(full, sort_keys=True, default=str).encode())
    return h.hexdigest()[:20]


def default_cache_dir() -> Path:
    """``$PRUNER_CACHE/sensitivity`` when set, else ``~/.cache/pruner/sensitivity``."""
    root = os.environ.get("PRUNER_CACHE")
    return Path(root) / "sensitivity" if root else Path.home() / ".cache" / "pruner" / "sensitivity"


def cached_scan(model: LoadedModel, data: Dataset, *, cache_dir: str | Path | None = None, **settings) -> Sensitivity:
    """:func:`~pruner_core.sensitivity.scan.scan`, stored as JSON under ``cache_dir`` by :func:`cache_key`; only
    complete scans are stored.

    A damaged cache file is ignored and rewritten.
    """
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = folder / f"{cache_key(model, data, settings)}.json"
    if path.is_file():
        try:
            return Sensitivity.load(path)
        except SpecError:
            pass
    result = scan(model, data, **settings)
    if result.complete:
        folder.mkdir(parents=True, exist_ok=True)
        result.save(path)
    return result
