"""Plotly figures of a sensitivity scan and a recommendation (pure functions: data in, go.Figure out)."""

from __future__ import annotations

import plotly.graph_objects as go

from pruner_core.sensitivity.result import Recommendation, Sensitivity


def _unit_label(unit) -> str:
    return unit.name if len(unit.layers) <= 1 else f"{unit.name} (+{len(unit.layers) - 1} coupled)"


def sensitivity_curves(sens: Sensitivity, metric: str = "accuracy") -> go.Figure:
    """One line per unit: test accuracy (or loss) against the ratio pruned, ratio 0 at the dense value."""
    if metric not in ("accuracy", "loss"):
        raise ValueError(f"metric must be 'accuracy' or 'loss'; got {metric!r}")
    dense = sens.dense_accuracy if metric == "accuracy" else sens.dense_loss
    fig = go.Figure()
    for unit in sens.units:
        ys = getattr(unit, metric)
        fig.add_trace(go.Scatter(
            x=[0.0, *unit.ratios], y=[dense, *ys], mode="lines+markers", name=_unit_label(unit),
            hovertemplate=f"{_unit_label(unit)}<br>ratio %{{x:.0%}}<br>{metric} %{{y:.4g}}<extra></extra>",
        ))
    of = "output channels" if sens.settings.get("granularity") == "channel" else "weights"
    fig.update_layout(
        title=f"Sensitivity: {metric} with one layer (or coupled group) pruned, no fine-tuning"
              + ("" if sens.complete else " — cancelled, partial"),
        xaxis_title=f"fraction of the unit's {of} removed", yaxis_title=f"test {metric}",
        xaxis_tickformat=".0%", yaxis_tickformat=".0%" if metric == "accuracy" else None,
        height=420, margin={"t": 50, "l": 60, "r": 20, "b": 50}, legend_title_text="layer",
    )
    return fig


def _samples_label(used: int | None, of: int) -> str:
    """What a cell was measured on: every sample, fewer (adaptive: the answer was clear), or none (past a collapse)."""
    if used is None:
        return f"measured on {of:,} samples"
    if used == 0:
        return "not evaluated: past a collapse to chance"
    return f"measured on {used:,} of {of:,} samples" + (" (stopped: clear)" if used < of else "")


def sensitivity_heatmap(sens: Sensitivity) -> go.Figure:
    """Units x ratios, coloured by the accuracy lost (percentage points); cells not scanned are blank; hover says
    how many samples each cell was measured on."""
    ratios = sorted({r for u in sens.units for r in u.ratios})
    z, text, used = [], [], []
    for unit in sens.units:
        by_ratio = dict(zip(unit.ratios, unit.accuracy, strict=False))
        samples = dict(zip(unit.ratios, unit.samples, strict=False))
        row = [None if r not in by_ratio else (sens.dense_accuracy - by_ratio[r]) * 100 for r in ratios]
        z.append(row)
        text.append(["" if v is None else f"{v:.1f}" for v in row])
        used.append([_samples_label(samples.get(r), sens.settings["samples"]) if r in by_ratio else "" for r in ratios])
    fig = go.Figure(go.Heatmap(
        z=z, x=[f"{r:.0%}" for r in ratios], y=[_unit_label(u) for u in sens.units], text=text, customdata=used,
        texttemplate="%{text}", colorscale="Reds", zmin=0, colorbar={"title": "drop (pp)"},
        hovertemplate="%{y}<br>ratio %{x}<br>accuracy drop %{z:.2f} pp<br>%{customdata}<extra></extra>",
    ))
    fig.update_layout(title="Accuracy drop (percentage points) by layer and ratio", xaxis_title="ratio removed",
                      yaxis_autorange="reversed", height=max(260, 40 * len(sens.units) + 120),
                      margin={"t": 50, "l": 120, "r": 20, "b": 50})
    return fig


def channel_latency(sens: Sensitivity) -> go.Figure | None:
    """For a channel scan with latency measured: milliseconds of each group's layers against kept channels."""
    units = [u for u in sens.units if u.latency]
    if not units:
        return None
    fig = go.Figure()
    noisy_any = False
    for unit in units:
        lat = unit.latency
        noisy = lat.get("noisy") or [False] * len(lat["kept"])
        noisy_any |= any(noisy)
        error = None
        if "p25_ms" in lat:  # the inter-quartile range around each median (scans saved before had none)
            error = {"type": "data", "symmetric": False, "thickness": 1,
                     "array": [hi - m for m, hi in zip(lat["ms"], lat["p75_ms"], strict=True)],
                     "arrayminus": [m - lo for m, lo in zip(lat["ms"], lat["p25_ms"], strict=True)]}
        fig.add_trace(go.Scatter(
            x=lat["kept"], y=lat["ms"], mode="lines+markers", name=_unit_label(unit), line={"shape": "linear"},
            error_y=error, customdata=["noisy" if n else "" for n in noisy],
            marker={"symbol": ["circle-open" if n else "circle" for n in noisy], "size": [9 if n else 6 for n in noisy]},
            hovertemplate="%{x} channels kept: %{y:.3f} ms %{customdata}<extra>" + unit.name + "</extra>"))
    fig.update_layout(
        title="Latency of each group's layers against the channels kept (steps show where kernels change)"
              + ("<br><sup>open markers: noisy (inter-quartile range over half the median): not a step</sup>"
                 if noisy_any else ""),
        xaxis_title="output channels kept", yaxis_title="ms (median, bars: inter-quartile range)", height=380,
        margin={"t": 60, "l": 60, "r": 20, "b": 50},
    )
    return fig


def allocation_bars(rec: Recommendation) -> go.Figure:
    """Per-unit ratio: the recommendation beside the uniform allocation meeting the same target."""
    names = list(rec.ratios)
    fig = go.Figure([
        go.Bar(x=names, y=[rec.ratios[n] for n in names], name="recommended"),
        go.Bar(x=names, y=[rec.uniform["ratio"]] * len(names), name="uniform"),
    ])
    fig.update_layout(title="Ratio removed per layer: recommended (sensitive layers keep more) and uniform",
                      barmode="group", yaxis_tickformat=".0%", yaxis_range=[0, 1], height=340,
                      margin={"t": 50, "l": 60, "r": 20, "b": 60})
    return fig


def unit_curve(unit, dense_accuracy: float, ratio: float, predicted: float | None = None) -> go.Figure:
    """A small figure of one unit's scanned accuracy against the ratio removed, with the ratio now set marked
    (a vertical line) and, when given, the accuracy the curve gives at that ratio (a point): for beside a slider."""
    xs, ys = [0.0, *unit.ratios], [dense_accuracy, *unit.accuracy]
    fig = go.Figure(go.Scatter(x=xs, y=ys, mode="lines+markers", marker={"size": 4}, name="scanned",
                               hovertemplate="ratio %{x:.0%}<br>accuracy %{y:.1%}<extra>scanned alone</extra>"))
    fig.add_vline(x=ratio, line_dash="dot", line_color="firebrick")
    if predicted is not None:
        fig.add_trace(go.Scatter(x=[ratio], y=[predicted], mode="markers", marker={"size": 9, "color": "firebrick"},
                                 name="now", hovertemplate="ratio %{x:.0%}<br>curve gives %{y:.1%}<extra></extra>"))
    fig.update_layout(height=120, showlegend=False, margin={"t": 6, "l": 40, "r": 6, "b": 24},
                      xaxis={"range": [0, 1], "tickformat": ".0%", "nticks": 5},
                      yaxis={"range": [0, max(1.0, *ys)], "tickformat": ".0%", "nticks": 3})
    return fig


def int8_layer_bars(result) -> go.Figure:
    """Points lost with each layer alone in INT8 (:class:`~pruner_core.sensitivity.int8.Int8Sensitivity`), in graph
    order, the whole model in INT8 drawn as a line: the tall bars are the layers to keep in FP32."""
    drops = result.drops()
    names = list(drops)
    fig = go.Figure([go.Bar(x=names, y=[drops[n] for n in names], name="this layer alone in INT8",
                            hovertemplate="%{x}: %{y:+.2f} points<extra></extra>")])
    whole = (result.fp32_accuracy - result.int8_accuracy) * 100
    fig.add_hline(y=whole, line_dash="dot", annotation_text=f"every layer in INT8: {whole:+.2f} points")
    fig.update_layout(title=f"Accuracy lost per layer alone in INT8 (ONNX Runtime, {result.samples} test images; "
                            f"FP32 {result.fp32_accuracy:.2%})", yaxis_title="points lost", height=360,
                      margin={"t": 50, "l": 60, "r": 20, "b": 90})
    return fig
