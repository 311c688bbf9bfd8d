"""The comparison as tables: one row per model with deltas and ratios against the original, and the same for people."""

from __future__ import annotations

import pandas as pd

from pruner_core.compare.compare import BATCHES, RUNTIMES, Entry
from pruner_core.compare.result import Sizes
from pruner_core.config.text import byte_unit, format_bytes
from pruner_core.measure.metrics import Latency

NOISY = 0.5  # an inter-quartile range wider than this share of the median marks a latency as noisy
SIZE_LABELS = dict(zip(Sizes.NAMES, ("dense", "gzip", "sparse", "ONNX"), strict=True))  # column "<label> size (B)"
# The columns of :func:`display_table` a reader picks by group (after model and kind, always shown).
COLUMN_GROUPS = {
    "accuracy": ["accuracy"],
    "latency PyTorch": [f"PyTorch b{b}" for b in BATCHES],
    "latency ONNX Runtime": [f"ONNX Runtime b{b}" for b in BATCHES],
    "sizes": [f"{label} size" for label in SIZE_LABELS.values()],
    "FLOPs / params": ["FLOPs", "non-zero / total params"],
}


def _iqr(lat: Latency) -> float:
    return lat.p75_ms - lat.p25_ms


def _noisy(lat: Latency | None) -> bool:
    return lat is not None and _iqr(lat) > NOISY * lat.median_ms


def comparison_table(entries: list[Entry]) -> pd.DataFrame:
    """The comparison as one row per model, deltas against the first entry (the original).

    Columns: id (the run's, or "original"), model (its label: the id and what it pruned), kind, accuracy, Δ accuracy (percentage points), latency medians per runtime and batch and
    the speed-up of each against the original (original / this; > 1 is faster), the three sizes and ONNX size
    with their ratio to the original, non-zero and total parameters, FLOPs and their reduction, and notes
    (masked models, warnings, errors). Models without figures keep their row with the error in ``notes``.
    """
    base = entries[0].figures if entries and entries[0].figures else None
    figures_of = {e.key: e.figures for e in entries}
    rows = []
    for e in entries:
        row: dict = {"id": e.key, "model": e.label, "kind": e.kind}
        f = e.figures
        notes = list(e.warnings)
        if e.masked:
            notes.insert(0, "masked: zeros are stored and computed; dense runtimes do not run it faster")
        if f is None:
            notes.insert(0, e.error or "not measured")
            row["notes"] = "; ".join(notes)
            rows.append(row)
            continue
        if f.onnx_error:
            notes.append(f"no ONNX: {f.onnx_error}")
        if e.kind == "int8":
            notes.insert(0, against_own_fp32(f, figures_of.get(e.of)))
        noisy = [f"{RUNTIMES[rt]} b{b}" for rt in RUNTIMES for b in BATCHES if _noisy(f.latency_at(rt, b))]
        if noisy:
            notes.append(f"latency noisy (inter-quartile range over {NOISY:.0%} of the median; re-measure on a quiet"
                         f" machine): {', '.join(noisy)}")
        row["accuracy"] = f.accuracy
        row["Δ accuracy (pp)"] = (f.accuracy - base.accuracy) * 100 if base else None
        for runtime, short in (("pytorch", "PyTorch"), ("onnxruntime", "ORT")):
            for batch in BATCHES:
                lat, ref = f.latency_at(runtime, batch), base.latency_at(runtime, batch) if base else None
                row[f"{short} b{batch} ms"] = lat.median_ms if lat else None
                row[f"{short} b{batch} IQR ms"] = _iqr(lat) if lat else None
                row[f"{short} b{batch} speed-up"] = ref.median_ms / lat.median_ms if lat and ref else None
                row[f"{short} b{batch} within spread"] = bool(lat and ref) and abs(lat.median_ms - ref.median_ms) <= (
                    _iqr(lat) + _iqr(ref)) / 2
        for size, label in SIZE_LABELS.items():
            value, ref = getattr(f.sizes, size), getattr(base.sizes, size) if base else None
            row[f"{label} size (B)"] = value
            row[f"{label} size ratio"] = value / ref if value and ref else None
        row["non-zero params"] = f.nonzero_params
        row["params"] = f.params
        row["non-zero / total"] = f"{f.nonzero_params:,} / {f.params:,}"
        row["FLOPs"] = f.flops
        row["FLOP reduction"] = base.flops / f.flops if base and f.flops else None
        row["notes"] = "; ".join(notes)
        rows.append(row)
    return pd.DataFrame(rows)


def against_own_fp32(int8, fp32) -> str:
    """A run's INT8 row against the run itself (its FP32 ONNX), both timed in this sitting: the speed INT8 adds."""
    if fp32 is None:
        return "INT8 in ONNX Runtime only (no PyTorch timing); its FP32 run is not in this table"
    parts = []
    for batch in BATCHES:
        lat, ref = int8.latency_at("onnxruntime", batch), fp32.latency_at("onnxruntime", batch)
        if lat and ref:
            parts.append(f"{ref.median_ms / lat.median_ms:.2f}× at batch {batch}")
    size = f", {fp32.sizes.onnx_bytes / int8.sizes.onnx_bytes:.2f}× smaller ONNX file" if fp32.sizes.onnx_bytes else ""
    return (f"INT8 in ONNX Runtime only (no PyTorch timing); against its own FP32 run: "
            f"{', '.join(parts) or 'not timed'} in ONNX Runtime{size}, "
            f"{(int8.accuracy - fp32.accuracy) * 100:+.1f} pp accuracy")


def measurement_notes(entries: list[Entry]) -> list[str]:
    """How the figures of a comparison were measured, one line each (device, threads, runs, runtimes, sizes)."""
    figures = next((e.figures for e in entries if e.figures), None)
    if figures is None:
        return []
    lines = [f"{what}: {how}" for what, how in figures.how.items()]
    for runtime, per_batch in figures.latency.items():
        for lat in per_batch.values():
            lines.append(f"latency ({RUNTIMES.get(runtime, runtime)}): {lat.label}")
    lines.append(
        "latency cells: median ± half the inter-quartile range of the timed runs; "
        "speed-up = the original's median / this model's median at the same batch and runtime (> 1: faster), ≈1× "
        "where the difference is within the two timings' spreads (half their inter-quartile ranges, added); "
        f"the models were timed together, in turn, at {figures.measured or '?'}"
    )
    return lines


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: lower x (cost) and higher y (accuracy), ties kept."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any(
            (x2 <= x and y2 >= y) and (x2 < x or y2 > y) for j, (x2, y2) in enumerate(points) if j != i
        )
        if not dominated:
            front.append(i)
    return front


def _with_ratio(value: str, times) -> str:
    """``value (times×)``: one convention for every cost, times = original / this (above 1: cheaper than the
    original, faster for latency); accuracy changes are in percentage points instead."""
    if times is None or pd.isna(times):
        return value
    return f"{value} ({times:.2f}×)"


def _times(share):
    """A size as a share of the original's, as times smaller (1 / share)."""
    return 1 / share if share and not pd.isna(share) else None


def _decimals(values) -> int:
    """Fixed decimals for a column of milliseconds, from its largest value: 2 below 100 ms, 1 below 1000, then 0."""
    top = max((v for v in values if v is not None and not pd.isna(v)), default=0.0)
    return 2 if top < 100 else 1 if top < 1000 else 0


def display_table(table: pd.DataFrame, groups: list[str] | None = None) -> pd.DataFrame:
    """:func:`comparison_table` as text for people: one column per figure, the delta or ratio beside each value.

    ``model`` is the run's id ("original" for the original: the headlines say what each run pruned), then ``kind``
    and the columns of ``groups`` (:data:`COLUMN_GROUPS`; all of them by default), in that order. Latency shows
    ``median ±half the inter-quartile range ms (speed-up×)``, or ``≈1×`` where the difference from the original is
    within the two spreads (so noise is never shown as a speed-up), sizes ``MB (times smaller×)``, FLOPs ``count
    (reduction×)``: every × is original / this, so above 1 is cheaper; accuracy moves in percentage points. A column
    keeps one unit and one number of decimals (its milliseconds fixed, its sizes in the original's unit). The notes
    are not a column: :func:`table_notes` gives them, one line per model.
    """
    decimals = {f"{short} b{batch}": _decimals(table.get(f"{short} b{batch} ms", pd.Series(dtype=float)))
                for short in ("PyTorch", "ORT") for batch in BATCHES}
    units = {}
    for label in SIZE_LABELS.values():
        sizes = table.get(f"{label} size (B)", pd.Series(dtype=float)).dropna()
        units[label] = byte_unit(sizes.iloc[0]) if len(sizes) else None  # the original's, first
    out = []
    for _, r in table.iterrows():
        row = {"model": r.get("id", r["model"]), "kind": r["kind"]}
        if "accuracy" in r and not pd.isna(r.get("accuracy")):
            row["accuracy"] = f"{r['accuracy']:.2%} ({r['Δ accuracy (pp)']:+.1f} pp)"
            for short, name in (("PyTorch", "PyTorch"), ("ORT", "ONNX Runtime")):
                for batch in BATCHES:
                    ms, iqr = r.get(f"{short} b{batch} ms"), r.get(f"{short} b{batch} IQR ms")
                    d = decimals[f"{short} b{batch}"]
                    if ms is None or pd.isna(ms):
                        row[f"{name} b{batch}"] = "—"
                    elif r.get(f"{short} b{batch} within spread") and r["kind"] != "original":
                        row[f"{name} b{batch}"] = f"{ms:.{d}f} ±{iqr / 2:.{d}f} ms (≈1×)"  # within the spreads
                    else:
                        row[f"{name} b{batch}"] = _with_ratio(f"{ms:.{d}f} ±{iqr / 2:.{d}f} ms",
                                                              r.get(f"{short} b{batch} speed-up"))
            for label in SIZE_LABELS.values():
                size = r.get(f"{label} size (B)")
                row[f"{label} size"] = "—" if size is None or pd.isna(size) else _with_ratio(
                    format_bytes(size, 2, units[label]), _times(r.get(f"{label} size ratio")))
            row["FLOPs"] = _with_ratio(f"{r['FLOPs'] / 1e6:.2f} M", r.get("FLOP reduction"))
            row["non-zero / total params"] = r["non-zero / total"]
        out.append(row)
    picked = groups if groups is not None else list(COLUMN_GROUPS)
    columns = ["model", "kind", *(c for g in COLUMN_GROUPS if g in picked for c in COLUMN_GROUPS[g])]
    return pd.DataFrame(out).reindex(columns=columns).fillna("—")


def table_notes(table: pd.DataFrame) -> list[str]:
    """The notes of :func:`comparison_table` (masked runs, warnings, errors), one line per model that has any:
    ``<id>: <notes>``, said below the table instead of in a column of their own."""
    return [f"{r.get('id', r['model'])}: {r['notes']}" for _, r in table.iterrows()
            if isinstance(r.get("notes"), str) and r["notes"]]


def headlines(table: pd.DataFrame) -> list[str]:
    """One line per measured run for people who will not read the table: what was pruned, then FLOPs, size,
    ONNX Runtime speed at batch 1 and accuracy against the original, e.g. ``channel l2 layerwise 50% of channels:
    3.80× fewer FLOPs, 4.00× smaller (dense file), 1.90× faster in ONNX Runtime at batch 1, -0.9 pp accuracy``: the
    table's own convention, × = original ÷ this (above 1: cheaper), accuracy in percentage points.

    Every figure is one of the table's, measured here, the latencies in one sitting; a speed difference within the
    two timings' spread is said to be none."""
    lines = []
    for _, r in table.iterrows():
        if r["kind"] == "original" or pd.isna(r.get("accuracy")):
            continue
        what = str(r["model"]).split(" · ", 1)[-1]
        parts = []
        reduction = r.get("FLOP reduction")
        if reduction and not pd.isna(reduction):
            parts.append(f"{reduction:.2f}× fewer FLOPs" if reduction > 1.005 else "the same FLOPs")
        dense, sparse, onnx = r.get("dense size ratio"), r.get("sparse size ratio"), r.get("ONNX size ratio")
        if r["kind"] == "int8" and onnx and not pd.isna(onnx):  # the combined effect: pruning and INT8, file to file
            parts.append(f"{1 / onnx:.2f}× smaller ONNX file")
        elif dense and not pd.isna(dense) and dense < 0.99:
            parts.append(f"{1 / dense:.2f}× smaller (dense file)")
        elif sparse and not pd.isna(sparse) and sparse < 0.99:
            parts.append(f"{1 / sparse:.2f}× smaller stored sparse (the dense file is not)")
        else:
            parts.append("no smaller")
        speed = r.get("ORT b1 speed-up")
        if speed and not pd.isna(speed):
            if r.get("ORT b1 within spread"):
                parts.append("no faster in ONNX Runtime at batch 1 (within the timings' spread)")
            elif speed >= 1:
                parts.append(f"{speed:.2f}× faster in ONNX Runtime at batch 1")
            else:
                parts.append(f"{1 / speed:.2f}× slower in ONNX Runtime at batch 1")
        parts.append(f"{r['Δ accuracy (pp)']:+.1f} pp accuracy")
        lines.append(f"{what}: {', '.join(parts)}")
    return lines

