"""Plotly figure builders and display tables for the redundancy signals of :mod:`pruner_core.measure.analysis`.

Pure functions: data in, ``go.Figure`` (or ``pd.DataFrame``) out. Nothing here imports streamlit, computes a
statistic, or touches a model; the numbers drawn are exactly those of the :class:`~pruner_core.measure.analysis.Analysis`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from pruner_core.graph.fx import NEAR_ZERO
from pruner_core.measure.analysis import Analysis, LayerAnalysis
from pruner_core.present.tables import group_label, shared_groups
from pruner_core.pruning.granularities import MATRICES

NORMS = ("l1", "l2")
CHANNEL_SIGNALS = ("magnitude", "apoz", "near_zero", "bn_scale")
SIGNAL_LABELS = {"magnitude": "weight magnitude", "apoz": "APoZ", "near_zero": f"near-zero share (|a| < {NEAR_ZERO})",
                 "bn_scale": "norm scale |γ| (BatchNorm, GroupNorm, LayerNorm)"}
NA = "n/a"
HEAD_SIGNALS = ("magnitude", "output")
HEAD_LABELS = {"magnitude": "weight magnitude", "output": "mean |output|"}


def _check(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"The '{name}' parameter must be one of {', '.join(map(repr, valid))}. Got {value!r} instead.")


def _fmt(value: float) -> str:
    """The value as shown on hover: enough digits to read it back exactly as the analysis holds it."""
    return f"{value:.6g}"


def kernel_heatmap(layer: LayerAnalysis, norm: str = "l2", colorscale: str = "Viridis") -> go.Figure:
    """Heatmap of one layer's kernel norms, output channels x input channels.

    Args:
        layer: the layer's analysis; ``kernel_l1`` / ``kernel_l2`` are drawn as they are.
        norm: ``"l1"`` or ``"l2"``.
        colorscale: any plotly colour scale name.

    Returns:
        A figure whose one trace has ``z`` equal to the layer's ``[out, in]`` kernel-norm matrix; hovering a cell
        shows its output and input channel and the exact norm.

    Raises:
        ValueError: an unknown ``norm``.
    """
    _check("norm", norm, NORMS)
    z = np.asarray(layer.kernel_l1 if norm == "l1" else layer.kernel_l2)
    unit = "weight" if layer.type in MATRICES else "kernel"
    fig = go.Figure(
        go.Heatmap(
            z=z,
            colorscale=colorscale,
            colorbar={"title": {"text": norm.upper()}},
            hovertemplate=f"out %{{y}}<br>in %{{x}}<br>{norm.upper()} %{{z}}<extra></extra>",
        )
    )
    fig.update_layout(
        title=f"{layer.name}: {norm.upper()} norm of each {unit} ({z.shape[0]} out x {z.shape[1]} in)",
        xaxis_title="input channel",
        yaxis_title="output channel",
        margin={"t": 50, "l": 60, "r": 20, "b": 50},
    )
    # Channel indices are integers: no fractional ticks, even for a single input channel.
    fig.update_xaxes(tick0=0, dtick=_dtick(z.shape[1]))
    fig.update_yaxes(tick0=0, dtick=_dtick(z.shape[0]), autorange="reversed")  # channel 0 on top, as in the tensor
    return fig


def _dtick(n: int) -> int:
    """A whole-number tick step giving at most about ten ticks over ``n`` channels."""
    return max(1, math.ceil(n / 10))


def _signal(layer: LayerAnalysis, signal: str, norm: str) -> list[float] | None:
    if signal == "magnitude":
        return layer.channel_l1 if norm == "l1" else layer.channel_l2
    return {"apoz": layer.apoz, "near_zero": layer.near_zero, "bn_scale": layer.bn_scale}[signal]


def channel_signal_heatmap(
    analysis: Analysis,
    signal: str = "magnitude",
    norm: str = "l2",
    colorscale: str = "Viridis",
    layers: list[str] | None = None,
    heading: str | None = None,
) -> go.Figure:
    """Cross-layer heatmap of one per-channel signal: one row per layer, one column per output channel.

    Each row is divided by its own maximum so that layers of different scales share one colour bar (a row whose
    maximum is 0 stays 0). Rows are padded with NaN (drawn blank) to the widest layer. Layers where the signal
    is undefined (no ReLU after the layer for APoZ, no BatchNorm for BN scale) are left out and named in the
    title after "n/a:", never drawn as 0.

    Args:
        analysis: the model's analysis.
        signal: ``"magnitude"`` (channel L1/L2 norm of the weights), ``"apoz"``, ``"near_zero"`` (after smooth
            activations) or ``"bn_scale"`` (|gamma| of the norm right after the layer).
        norm: for ``"magnitude"``, which channel norm: ``"l1"`` or ``"l2"``.
        colorscale: any plotly colour scale name.
        layers: only these layers (e.g. the members of one coupled group), in this order; all when None.
        heading: what the rows are, for the title (default "per layer").

    Returns:
        A figure whose heatmap ``z`` holds the normalised rows, ``y`` the layer names and ``text`` the raw
        values shown on hover.

    Raises:
        ValueError: an unknown ``signal`` or ``norm``.
    """
    _check("signal", signal, CHANNEL_SIGNALS)
    _check("norm", norm, NORMS)
    chosen = analysis.layers if layers is None else [analysis.layer(name) for name in layers]
    rows = [(la.name, _signal(la, signal, norm)) for la in chosen]
    label = SIGNAL_LABELS[signal] + (f" ({norm.upper()})" if signal == "magnitude" else "")
    title = f"Channel {label} {heading or 'per layer'} (each row divided by its max)"
    return _row_heatmap(rows, label, title, colorscale, ("layer", "output channel"))


def head_heatmap(analysis: Analysis, signal: str = "magnitude", norm: str = "l2", colorscale: str = "Viridis") -> go.Figure:
    """Per-head heatmap: one row per attention module, one column per head.

    ``"magnitude"`` is the L1 or L2 norm over a head's query, key and value rows and the output projection's
    columns that read it; ``"output"`` is the head's mean |output| over the calibration samples (n/a where the
    forward never calls the output projection as a module, as in ``nn.MultiheadAttention``, and named so).
    Each row is divided by its own maximum, as on the channel heatmaps.
    """
    _check("signal", signal, HEAD_SIGNALS)
    _check("norm", norm, NORMS)
    rows = [(h.attention, (h.l1 if norm == "l1" else h.l2) if signal == "magnitude" else h.mean_output)
            for h in analysis.heads]
    label = HEAD_LABELS[signal] + (f" ({norm.upper()})" if signal == "magnitude" else "")
    title = f"Head {label} per attention module (each row divided by its max)"
    return _row_heatmap(rows, label, title, colorscale, ("attention", "head"))


def _row_heatmap(rows: list[tuple[str, list[float] | None]], label: str, title: str, colorscale: str,
                 axes: tuple[str, str]) -> go.Figure:
    """Rows of values, each divided by its own maximum (a row whose maximum is 0 stays 0), padded with NaN (drawn
    blank) to the widest; raw values on hover. Rows without values (``None``) are left out and named in the title."""
    row, column = axes
    shown = [(name, values) for name, values in rows if values is not None]
    missing = [name for name, values in rows if values is None]
    if missing:
        title += f"<br><sup>{NA}: {', '.join(missing)}</sup>"
    width = max((len(values) for _, values in shown), default=0)
    z, text = [], []
    for _, values in shown:
        top = max(values, default=0.0)
        scaled = [v / top if top > 0 else 0.0 for v in values]
        pad = width - len(values)
        z.append(scaled + [math.nan] * pad)
        text.append([_fmt(v) for v in values] + [""] * pad)
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=list(range(width)),
            y=[name for name, _ in shown],
            text=text,
            colorscale=colorscale,
            zmin=0,
            zmax=1,
            colorbar={"title": {"text": "/ row max"}},
            hovertemplate=f"{row} %{{y}}<br>{column} %{{x}}<br>{label} %{{text}}<br>/ row max %{{z:.3f}}<extra></extra>",
            hoverongaps=False,
        )
    )
    fig.update_layout(
        title=title,
        xaxis_title=column,
        yaxis_title=row,
        margin={"t": 70, "l": 60, "r": 20, "b": 50},
        height=max(260, 60 + 28 * len(shown) + 90),
    )
    fig.update_yaxes(autorange="reversed", type="category")  # first on top
    if not shown:
        fig.add_annotation(text=f"{label}: {NA} for every {row}", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    return fig


def weight_histogram(layer: LayerAnalysis) -> go.Figure:
    """Bar chart of the layer's weight histogram (``hist_counts`` over ``hist_edges``)."""
    edges = np.asarray(layer.hist_edges, dtype=float)
    centers = (edges[:-1] + edges[1:]) / 2
    fig = go.Figure(
        go.Bar(
            x=centers,
            y=layer.hist_counts,
            width=np.diff(edges),
            customdata=np.stack([edges[:-1], edges[1:]], axis=1),
            hovertemplate="weight %{customdata[0]:.4g} to %{customdata[1]:.4g}<br>count %{y}<extra></extra>",
            marker_line_width=0,
        )
    )
    fig.update_layout(
        title=f"{layer.name}: weight histogram (sparsity {layer.sparsity:.1%})",
        xaxis_title="weight value",
        yaxis_title="count",
        bargap=0,
        margin={"t": 50, "l": 60, "r": 20, "b": 50},
    )
    return fig


def layer_signal_table(analysis: Analysis) -> pd.DataFrame:
    """One row per prunable layer: what it is, what it costs and a summary of each redundancy signal.

    Columns: ``layer``, ``type``, ``shape``, ``params`` (weight and bias), ``FLOPs`` (measured at batch 1),
    ``time share`` (fraction of the calibration forward spent in the layer, None where not measured),
    ``group`` (the coupled group's number as the Model page shows it, :func:`~pruner_core.present.tables.shared_groups`;
    layers sharing one lose channels together; "—" for a layer alone), ``sparsity`` (fraction of zero
    weights), ``mean APoZ`` (percent over output channels, or "n/a" where no ReLU-like activation follows the layer),
    ``near-zero`` (the same for the share of |a| < NEAR_ZERO after a smooth activation: GELU, SiLU, Tanh, ...) and
    ``norm`` (the BatchNorm, GroupNorm or LayerNorm that scales its channels, with its type, or "n/a").
    """
    columns = ["layer", "type", "shape", "params", "FLOPs", "time share", "group", "sparsity", "mean APoZ", "near-zero",
               "norm"]
    rows, shared = [], shared_groups(analysis.layers)
    for la in analysis.layers:
        rows.append(
            {
                "layer": la.name,
                "type": la.type,
                "shape": " x ".join(map(str, la.shape)),
                "params": la.params,
                "FLOPs": la.flops,
                "time share": la.time_share,
                "group": group_label(la.group, shared),
                "sparsity": la.sparsity,
                "mean APoZ": f"{float(np.mean(la.apoz)):.1%}" if la.apoz else NA,
                "near-zero": f"{float(np.mean(la.near_zero)):.1%}" if la.near_zero else NA,
                "norm": (f"{la.bn} ({la.norm_type})" if la.norm_type else la.bn) if la.bn else NA,
            }
        )
    return pd.DataFrame(rows, columns=columns)


def mask_overlay_heatmap(name: str, weight: np.ndarray, keep: np.ndarray, colorscale: str = "Viridis") -> go.Figure:
    """Heatmap of what a mask keeps of one layer: the L2 norm of each kernel's kept weights, out x in.

    A kernel (one weight for Linear) whose weights are all removed is drawn blank (NaN), so removed channels show
    as blank rows and removed kernels as blank cells; hovering a cell shows how many of its weights are kept.

    Args:
        name: the layer's name, for the title.
        weight: the layer's weight ``[out, in, *kernel]``.
        keep: a bool keep-mask of the same shape (True = kept).
        colorscale: any plotly colour scale name.

    Returns:
        A figure whose one trace has ``z`` = the ``[out, in]`` L2 norms of ``weight * keep`` (NaN where no weight
        of the kernel is kept) and ``customdata`` = the kept-weight count of each kernel.

    Raises:
        ValueError: ``keep`` is not shaped like ``weight``.
    """
    w, k = np.asarray(weight, dtype=float), np.asarray(keep, dtype=bool)
    if w.shape != k.shape or w.ndim < 2:
        raise ValueError(f"The 'keep' parameter must be a bool mask shaped like the weight {list(w.shape)}. Got {list(k.shape)} instead.")
    axes = tuple(range(2, w.ndim))
    per_kernel = math.prod(w.shape[2:])
    kept = k.sum(axis=axes) if axes else k.astype(int)
    z = np.sqrt(np.square(w * k).sum(axis=axes)) if axes else np.abs(w * k)
    z = np.where(kept > 0, z, np.nan)
    removed_kernels = int((kept == 0).sum())
    unit = "weight" if per_kernel == 1 else "kernel"
    fig = go.Figure(
        go.Heatmap(
            z=z,
            customdata=kept,
            colorscale=colorscale,
            colorbar={"title": {"text": "L2 kept"}},
            hoverongaps=False,
            hovertemplate=f"out %{{y}}<br>in %{{x}}<br>kept %{{customdata}}/{per_kernel} weights"
            "<br>L2 of kept %{z:.4g}<extra></extra>",
        )
    )
    fig.update_layout(
        title=f"{name}: L2 norm of the kept weights of each {unit}; blank = removed "
        f"({removed_kernels:,} of {kept.size:,} {unit}s, {1 - k.mean():.1%} of weights)",
        xaxis_title="input channel",
        yaxis_title="output channel",
        margin={"t": 50, "l": 60, "r": 20, "b": 50},
        plot_bgcolor="white",
    )
    fig.update_xaxes(tick0=0, dtick=_dtick(z.shape[1]), showgrid=False)
    fig.update_yaxes(tick0=0, dtick=_dtick(z.shape[0]), autorange="reversed", showgrid=False)
    return fig


def training_curves(history: list, losses: list[tuple[int, float]] | None = None) -> go.Figure:
    """Plotly figure of a fine-tuning run: test accuracy per epoch (left) and train loss (right).

    Args:
        history: the run's :class:`~pruner_core.pipeline.finetune.EpochRecord` rows.
        losses: ``(step, loss)`` samples seen while polling a running job, drawn per step; when empty, each epoch's
            mean training loss is drawn instead (rows saved without one are left out).
    """
    from plotly.subplots import make_subplots

    right = "train loss per step" if losses else "train loss (mean over each epoch)"
    fig = make_subplots(rows=1, cols=2, subplot_titles=("test accuracy per epoch", right))
    fig.add_trace(go.Scatter(x=[h.epoch for h in history], y=[h.test_accuracy for h in history],
                             mode="lines+markers", name="test accuracy"), row=1, col=1)
    if losses:
        fig.add_trace(go.Scatter(x=[s for s, _ in losses], y=[v for _, v in losses], mode="lines", name=right),
                      row=1, col=2)
        fig.update_xaxes(title_text="step", row=1, col=2)
    else:
        rows = [h for h in history if h.train_loss is not None]
        fig.add_trace(go.Scatter(x=[h.epoch for h in rows], y=[h.train_loss for h in rows],
                                 mode="lines+markers", name=right), row=1, col=2)
        fig.update_xaxes(title_text="epoch", row=1, col=2)
    fig.update_xaxes(title_text="epoch", row=1, col=1)
    fig.update_yaxes(tickformat=".0%", range=[0, 1.02], row=1, col=1)
    fig.update_layout(height=300, margin={"t": 40, "l": 60, "r": 20, "b": 40}, showlegend=False)
    return fig


# --- comparison (pruner_core.compare.compare entries) --------------------------------------------------------------

COMPARE_COSTS = {
    "latency": ("PyTorch b1 ms", "latency, batch 1, PyTorch eager (ms, median)"),
    "latency_ort": ("ORT b1 ms", "latency, batch 1, ONNX Runtime (ms, median)"),
    "size": ("dense size (B)", "dense weight file (bytes)"),
    "size_gzip": ("gzip size (B)", "gzip-compressed weight file (bytes)"),
    "size_sparse": ("sparse size (B)", "bitmask + values encoding (bytes)"),
}


def pareto_plot(table: pd.DataFrame, cost: str = "latency") -> go.Figure:
    """Accuracy against a measured cost, one point per model, the Pareto front drawn and its points ringed.

    Args:
        table: :func:`~pruner_core.compare.compare.comparison_table` (rows without figures are left out).
        cost: a key of :data:`COMPARE_COSTS`.
    """
    from pruner_core.present.compare_table import pareto_front

    _check("cost", cost, tuple(COMPARE_COSTS))
    column, title = COMPARE_COSTS[cost]
    rows = table.dropna(subset=["accuracy", column]) if column in table else table.iloc[0:0]
    xs, ys = rows[column].astype(float).tolist(), rows["accuracy"].astype(float).tolist()
    front = pareto_front(list(zip(xs, ys, strict=True)))
    fig = go.Figure()
    order = sorted(front, key=lambda i: xs[i])
    fig.add_trace(go.Scatter(
        x=[xs[i] for i in order], y=[ys[i] for i in order], mode="lines", name="Pareto front",
        line={"dash": "dot", "color": "#2ca02c"}, hoverinfo="skip",
    ))
    symbols = {"original": "star", "masked": "circle-open", "channel": "diamond", "dense": "square"}
    for kind, group in rows.groupby("kind", sort=False):
        idx = [rows.index.get_loc(i) for i in group.index]
        fig.add_trace(go.Scatter(
            x=[xs[i] for i in idx], y=[ys[i] for i in idx], mode="markers", name=str(kind),
            marker={"size": [16 if i in front else 10 for i in idx], "symbol": symbols.get(str(kind), "circle"),
                    "line": {"width": 2}},
            text=[rows["model"].iloc[i] + (" (on the Pareto front)" if i in front else "") for i in idx],
            hovertemplate="%{text}<br>accuracy %{y:.2%}<br>" + title + " %{x:,.4g}<extra></extra>",
        ))
    fig.update_layout(
        title=f"Accuracy against {title}", height=380, margin={"t": 50, "l": 60, "r": 20, "b": 50},
        xaxis_title=title, yaxis_title="test accuracy", yaxis_tickformat=".1%", legend_title_text="model",
    )
    return fig


def sparsity_comparison(entries: list) -> go.Figure:
    """Per-layer fraction of zero weights of each measured model, as grouped bars (layers on x)."""
    fig = go.Figure()
    for e in entries:
        if not e.figures or e.kind == "original":
            continue
        sparsity = e.figures.sparsity
        fig.add_trace(go.Bar(x=list(sparsity), y=list(sparsity.values()), name=e.key,
                             hovertemplate="%{x}: %{y:.1%} zero<extra>" + e.key + "</extra>"))
    fig.update_layout(
        title="Per-layer sparsity (fraction of zero weights)",
        barmode="group", height=340, yaxis_tickformat=".0%", yaxis_range=[0, 1],
        margin={"t": 50, "l": 60, "r": 20, "b": 60},
    )
    return fig


def per_class_change(entries: list, classes: list[str] | None = None) -> go.Figure:
    """Change of per-class test accuracy against the original (percentage points), grouped bars per class."""
    base = entries[0].figures.per_class if entries and entries[0].figures else []
    names = classes or [str(i) for i in range(len(base))]
    fig = go.Figure()
    for e in entries[1:]:
        if not e.figures:
            continue
        deltas = [None if a is None or b is None else (a - b) * 100 for a, b in zip(e.figures.per_class, base, strict=False)]
        fig.add_trace(go.Bar(x=names[: len(deltas)], y=deltas, name=e.key,
                             hovertemplate="class %{x}: %{y:+.1f} pp<extra>" + e.key + "</extra>"))
    fig.update_layout(
        title="Per-class accuracy change against the original (percentage points)", barmode="group", height=340,
        xaxis_title="class", yaxis_title="Δ accuracy (pp)", margin={"t": 50, "l": 60, "r": 20, "b": 50},
    )
    return fig


def finetune_overlay(entries: list) -> go.Figure:
    """Test accuracy per fine-tuning epoch of each run, overlaid (runs without fine-tuning are left out)."""
    fig = go.Figure()
    for e in entries:
        rows = [h for h in e.history if h.test_accuracy is not None]
        if not rows:
            continue
        fig.add_trace(go.Scatter(x=[h.epoch for h in rows], y=[h.test_accuracy for h in rows],
                                 mode="lines+markers", name=e.key))
    fig.update_layout(
        title="Fine-tuning: test accuracy per epoch", height=320, xaxis_title="epoch", yaxis_title="test accuracy",
        yaxis_tickformat=".1%", margin={"t": 50, "l": 60, "r": 20, "b": 50},
    )
    return fig
