"""Tables (pandas) built from measured figures, shared by the pages, the CLI and the report."""

from __future__ import annotations

import pandas as pd

from pruner_core.config.text import format_bytes, format_times
from pruner_core.measure.preview import why_not
from pruner_core.pruning.describe import LayerInfo
from pruner_core.pruning.granularities import GRANULARITIES, Reason


def layer_table(layers: list[LayerInfo], total_flops: int | None) -> pd.DataFrame:
    """One row per prunable layer: type, weight shape, parameters, measured FLOPs (and their share), and its coupled
    group where it has one: a group of two or more layers, numbered as the Coupled groups tab lists them ("—" for a
    layer whose channels go on their own, so the two never disagree)."""
    shared = shared_groups(layers)
    rows = [
        {
            "layer": layer.name,
            "type": layer.type,
            "weight shape": " x ".join(map(str, layer.shape)),
            "parameters": layer.params,
            "FLOPs": layer.flops,
            "FLOPs share": (layer.flops / total_flops) if layer.flops is not None and total_flops else None,
            "coupled group": group_label(layer.group, shared),
        }
        for layer in layers
    ]
    return pd.DataFrame(rows, columns=["layer", "type", "weight shape", "parameters", "FLOPs", "FLOPs share", "coupled group"])


def prunability_table(layers: list[LayerInfo]) -> pd.DataFrame:
    """One row per prunable layer, one column per granularity: "yes", "yes: <constraint>" or "no: <reason>", each
    as its short label (e.g. "no: depthwise", "yes: multiples of 4"); :func:`prunability_legend` says each in full."""
    rows = []
    for layer in layers:
        row = {"layer": layer.name}
        for name in GRANULARITIES:
            why, how = layer.reason(name), layer.constraint(name)
            row[name] = f"no: {why.short}" if why is not None else f"yes: {how.short}" if how else "yes"
        rows.append(row)
    return pd.DataFrame(rows, columns=["layer", *GRANULARITIES])


def reason_legend(found: list[tuple[str, str, Reason]], most: int = 8) -> list[str]:
    """Each distinct reason once, in full, with what it applies to: ``found`` holds (layer, where, reason) triples
    (where: e.g. the granularity, or "" where the table is about one) and each line reads, in Markdown,
    ``**short label** (where): the sentence — `layer`, `layer`, ...`` with at most ``most`` layers named."""
    seen: dict[str, tuple[str, list[str], list[str]]] = {}
    for layer, where, reason in found:
        _, wheres, names = seen.setdefault(str(reason), (reason.short, [], []))
        if where and where not in wheres:
            wheres.append(where)
        if layer not in names:
            names.append(layer)
    lines = []
    for text, (label, wheres, names) in seen.items():
        shown = ", ".join(f"`{n}`" for n in names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")
        where = f" ({', '.join(wheres)})" if wheres else ""
        lines.append(f"**{label}**{where}: {text} — {shown}")
    return lines


def prunability_legend(layers: list[LayerInfo]) -> list[str]:
    """The sentences behind :func:`prunability_table`'s short labels, each once with its granularities and layers
    (:func:`reason_legend`): first why a granularity does not apply, then how one is constrained where it does."""
    found = []
    for word, of in (("no", LayerInfo.reason), ("yes", LayerInfo.constraint)):
        for layer in layers:
            for name in GRANULARITIES:
                if (reason := of(layer, name)) is not None:
                    found.append((layer.name, name, Reason(f"{word}: {reason.short}", reason)))
    return reason_legend(found)


def not_applicable_legend(layers: list[LayerInfo], granularity: str, m: int = 4) -> list[str]:
    """The sentences behind the Prune page's short "not applicable because" notes for ``granularity`` (N:M with the
    recipe's M), each once with its layers (:func:`reason_legend`)."""
    return reason_legend([(info.name, "", why) for info in layers if (why := why_not(info, granularity, m)) is not None])


def shared_groups(layers) -> dict[int, int]:
    """The groups of two or more layers, numbered 0, 1, ... in the order their first layers come: group id -> number.

    ``layers`` are anything with a ``group`` id (:class:`LayerInfo`, an analysis' layers; None = no group): the one
    numbering of coupled groups that the Model page, its Coupled groups tab and Inspect all show.
    """
    counts: dict[int, int] = {}
    for layer in layers:
        if layer.group is not None:
            counts[layer.group] = counts.get(layer.group, 0) + 1
    return {g: i for i, g in enumerate(g for g, n in counts.items() if n > 1)}


def group_label(group: int | None, shared: dict[int, int]) -> str:
    """A layer's coupled group as a cell shows it: its number in :func:`shared_groups`, "—" for a layer alone."""
    return str(shared[group]) if group in shared else "—"


def coupled_groups_table(layers: list[LayerInfo]) -> pd.DataFrame:
    """Groups of two or more layers whose output channels are tied (e.g. by residual additions), numbered as the
    layer table numbers them."""
    shared = shared_groups(layers)
    groups: dict[int, list[str]] = {}
    for layer in layers:
        if layer.group in shared:
            groups.setdefault(shared[layer.group], []).append(layer.name)
    rows = [{"group": g, "layers": ", ".join(members), "size": len(members)} for g, members in groups.items()]
    return pd.DataFrame(rows, columns=["group", "layers", "size"])


def _fewer(before: int, after: int) -> str:
    return "unchanged" if before == after else f"{format_times(before, after)} fewer"


def preview_metrics(totals: dict, masked: bool) -> list[dict]:
    """The preview's headline figures: ``label``, ``value``, ``delta`` and ``help`` for each metric shown.

    Changes follow the one convention of the Compare table: ``N.NN× fewer`` = original ÷ pruned (above 1: cheaper).
    A masked preview says its dense FLOPs are unchanged and gives the non-zero FLOPs apart (what a runtime that
    skips zeros would compute, not a measured speed); a channel preview gives the pruned copy's measured FLOPs.
    """
    before, after = totals["params_before"], totals["params_after"]
    shown = [{"label": "Parameters removed", "value": f"{before - after:,}",
              "delta": f"{_fewer(before, after)}: {(before - after) / before:.1%} of {before:,}",
              "help": "N.NN× = the original's count ÷ the pruned one's (above 1: fewer)"}]
    if masked:
        shown += [
            {"label": "FLOPs / sample (dense)", "value": f"{totals['flops_after']:,}", "delta": "unchanged",
             "help": "A dense runtime multiplies the masked zeros too"},
            {"label": "Non-zero FLOPs / sample", "value": f"{totals['nonzero_flops_after']:,}",
             "delta": _fewer(totals["flops_before"], totals["nonzero_flops_after"]),
             "help": "What a runtime that skips zero weights would compute; not measured speed. N.NN× = the "
                     "original's FLOPs ÷ these"},
        ]
    else:
        shown.append({"label": "FLOPs / sample", "value": f"{totals['flops_after']:,}",
                      "delta": _fewer(totals["flops_before"], totals["flops_after"]),
                      "help": "Measured on the pruned copy (torch flop counter). N.NN× = the original's FLOPs ÷ these"})
    return shown


def coverage_sentence(prunable: int, total: int, unreached: dict[str, tuple[str, int]]) -> str:
    """What pruning reaches of a model's parameters, as a share of all of them (from ``parameter_coverage``)."""
    total = max(total, 1)
    left = total - prunable - sum(count for _, count in unreached.values())
    text = f"Pruning reaches {prunable:,} of the {total:,} parameters ({prunable / total:.1%}): the weights of the layers below."
    if left > 0:
        text += f" Biases and norm parameters ({left:,}, {left / total:.1%}) are never pruned."
    if unreached:
        shown = ", ".join(f"'{name}' ({kind}, {count / total:.1%})" for name, (kind, count) in list(unreached.items())[:5])
        text += f" Not reached (no granularity supports them yet): {shown}{' and more' if len(unreached) > 5 else ''}."
    return text


def int8_lines(figures, path) -> list[str]:
    """A run's INT8 stage (:class:`~pruner_core.pipeline.quantize.Int8Figures`) for people, one figure a line: the file,
    accuracy, each batch's latency against FP32 (timed in turn), which layers run in INT8, then the verdict."""
    lines = [f"int8     {path} ({figures.bytes_int8:,} bytes; FP32 ONNX {figures.bytes_fp32:,}; "
             f"{figures.qdq_nodes} quantize/dequantize nodes)",
             f"accuracy FP32 {figures.accuracy_fp32:.2%} -> INT8 {figures.accuracy_int8:.2%} "
             f"on {figures.test_samples:,} test samples"]
    for batch in (1, 64):
        a, b = figures.latency_fp32[f"batch{batch}"], figures.latency_int8[f"batch{batch}"]
        lines.append(f"batch {batch:<3} FP32 {a.median_ms:.3f} ms, INT8 {b.median_ms:.3f} ms: "
                     f"{figures.speedup(batch):.2f}x ({b.runtime}, {b.runs} runs each, in turn)")
    fp32_layers = [name for name, layer in figures.layers.items() if not layer["int8"]]
    lines.append(f"layers   {figures.int8_layers} of {len(figures.layers)} run in INT8"
                 + (f"; FP32: {', '.join(fp32_layers)}" if fp32_layers else ""))
    return [*lines, figures.verdict()]


def info_lines(signs) -> str:
    """Human-readable :class:`~pruner_core.measure.metrics.VitalSigns`, as printed by ``pruner info``."""
    data = signs.data
    lines = [
        f"model      {signs.model} ({signs.format})",
        f"data       {data['name']}: {data['test']} test samples, shape {data['sample_shape']}",
        f"params     {signs.params:,} ({signs.nonzero_params:,} non-zero, sparsity {signs.sparsity:.1%})",
        f"FLOPs      {signs.flops:,} per sample",
        f"size       {format_bytes(signs.size_bytes, 2)} ({signs.size_bytes:,} bytes, dense safetensors)",
        f"accuracy   {signs.accuracy:.2%}",
    ]
    for key, m in signs.latency.items():
        lines.append(f"latency    {key}: {m.median_ms:.3f} ms median (IQR {m.p25_ms:.3f}-{m.p75_ms:.3f}), {m.runs} runs")
    lines.append(f"measured   {signs.how['latency']}")
    lines.append("")
    lines.append(f"{'layer':<24}{'type':<8}{'shape':<18}{'params':>10}{'FLOPs':>12}  group  granularities")
    for layer in signs.layers:
        ok = [g for g, why in layer.granularities.items() if why is None]
        flops = f"{layer.flops:,}" if layer.flops is not None else "n/a"
        shape = "x".join(map(str, layer.shape))
        lines.append(
            f"{layer.name:<24}{layer.type:<8}{shape:<18}{layer.params:>10,}{flops:>12}  {layer.group:>5}  {', '.join(ok)}"
        )
    return "\n".join(lines)
