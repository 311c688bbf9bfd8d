"""Figure builders and the layer-signal table as pure functions: what they draw is exactly the analysis."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pruner_core.measure.analysis import Analysis, HeadAnalysis, LayerAnalysis
from pruner_core.present.figures import (
    CHANNEL_SIGNALS,
    channel_signal_heatmap,
    head_heatmap,
    kernel_heatmap,
    layer_signal_table,
    mask_overlay_heatmap,
    weight_histogram,
)


def layer(name: str, out: int, inp: int, *, apoz=None, bn=None, kind="Conv2d", seed=0) -> LayerAnalysis:
    """A layer analysis with chosen numbers (not computed: the builders only draw)."""
    rng = np.random.default_rng(seed)
    k2 = rng.random((out, inp)) + 0.1
    edges = np.linspace(-1, 1, 5)
    return LayerAnalysis(
        name=name, type=kind, shape=[out, inp, 3, 3] if kind == "Conv2d" else [out, inp],
        channel_l1=(rng.random(out) * 5 + 0.5).tolist(), channel_l2=(rng.random(out) * 3 + 0.25).tolist(),
        kernel_l1=k2 * 2, kernel_l2=k2, nm_l1=None, hist_counts=[1, 4, 6, 2], hist_edges=edges.tolist(),
        sparsity=0.25, apoz=apoz, bn_scale=bn, bn="bn_" + name if bn is not None else None,
        params=out * inp * (9 if kind == "Conv2d" else 1) + out, flops=1000 * out, group=seed % 2,
        time_share=0.1 * seed,
    )


ANALYSIS = Analysis(
    layers=[
        layer("conv1", 4, 1, apoz=[0.0, 0.5, 0.25, 1.0], bn=[0.2, 0.4, 0.8, 0.1], seed=1),
        layer("conv2", 6, 4, apoz=[0.1, 0.2, 0.3, 0.4, 0.5, 0.05], seed=2),
        layer("fc", 3, 6, kind="Linear", seed=3),
    ],
    samples=8, seconds=0.0,
)


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_kernel_heatmap_draws_the_kernel_norms_out_by_in(norm):
    la = ANALYSIS.layers[1]
    fig = kernel_heatmap(la, norm=norm, colorscale="Cividis")
    z = np.asarray(fig.data[0].z)
    np.testing.assert_array_equal(z, la.kernel_l1 if norm == "l1" else la.kernel_l2)
    assert z.shape == (6, 4)
    assert fig.layout.xaxis.title.text == "input channel"
    assert fig.layout.yaxis.title.text == "output channel"
    hover = fig.data[0].hovertemplate
    assert "%{x}" in hover and "%{y}" in hover and "%{z}" in hover  # indices and the exact (unformatted) value
    assert norm.upper() in fig.layout.title.text
    assert fig.layout.xaxis.dtick == 1 and fig.layout.yaxis.dtick == 1  # whole channel indices only
    assert fig.data[0].colorscale[0][1] != kernel_heatmap(la).data[0].colorscale[0][1]  # Cividis != Viridis


def test_kernel_heatmap_refuses_unknown_norm_naming_the_valid_ones():
    with pytest.raises(ValueError, match=r"'l1', 'l2'.*'linf'"):
        kernel_heatmap(ANALYSIS.layers[0], norm="linf")


def _rows(fig) -> dict[str, list[float]]:
    return {name: list(row) for name, row in zip(fig.data[0].y, fig.data[0].z, strict=True)}


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_magnitude_heatmap_rows_are_each_layers_channel_norms_over_their_max(norm):
    fig = channel_signal_heatmap(ANALYSIS, "magnitude", norm=norm)
    rows = _rows(fig)
    assert list(rows) == ["conv1", "conv2", "fc"]
    width = max(len(la.channel_l2) for la in ANALYSIS.layers)
    for la in ANALYSIS.layers:
        raw = la.channel_l1 if norm == "l1" else la.channel_l2
        row = rows[la.name]
        assert len(row) == width
        np.testing.assert_allclose(row[: len(raw)], np.asarray(raw) / max(raw))
        assert max(row[: len(raw)]) == 1.0
        assert all(math.isnan(v) for v in row[len(raw):])  # padded blank, not 0
    assert "max" in fig.layout.title.text and "n/a" not in fig.layout.title.text


def test_apoz_heatmap_omits_layers_without_activation_and_names_them():
    fig = channel_signal_heatmap(ANALYSIS, "apoz")
    rows = _rows(fig)
    assert list(rows) == ["conv1", "conv2"]
    np.testing.assert_allclose(rows["conv1"][:4], [0.0, 0.5, 0.25, 1.0])
    np.testing.assert_allclose(rows["conv2"], np.asarray([0.1, 0.2, 0.3, 0.4, 0.5, 0.05]) / 0.5)
    assert "n/a: fc" in fig.layout.title.text


def test_bn_scale_heatmap_lists_every_layer_without_batchnorm():
    fig = channel_signal_heatmap(ANALYSIS, "bn_scale")
    assert list(fig.data[0].y) == ["conv1"]
    np.testing.assert_allclose(fig.data[0].z[0][:4], np.asarray([0.2, 0.4, 0.8, 0.1]) / 0.8)
    assert "n/a: conv2, fc" in fig.layout.title.text


@pytest.mark.parametrize("signal", CHANNEL_SIGNALS)
def test_channel_heatmap_hover_shows_layer_channel_and_raw_value(signal):
    fig = channel_signal_heatmap(ANALYSIS, signal)
    trace = fig.data[0]
    assert "%{y}" in trace.hovertemplate and "%{x}" in trace.hovertemplate and "%{text}" in trace.hovertemplate
    for name, text in zip(trace.y, trace.text, strict=True):
        la = ANALYSIS.layer(name)
        raw = {"magnitude": la.channel_l2, "apoz": la.apoz, "bn_scale": la.bn_scale}[signal]
        assert [float(t) for t in text[: len(raw)]] == pytest.approx(raw, rel=1e-5)
        assert all(t == "" for t in text[len(raw):])


def test_row_of_zeros_stays_zero_instead_of_dividing_by_zero():
    dead = Analysis([layer("conv1", 3, 1, apoz=[0.0, 0.0, 0.0])], samples=1, seconds=0.0)
    assert list(channel_signal_heatmap(dead, "apoz").data[0].z[0]) == [0.0, 0.0, 0.0]


def test_signal_undefined_everywhere_says_so():
    fig = channel_signal_heatmap(Analysis([layer("fc", 3, 6, kind="Linear")], samples=1, seconds=0.0), "apoz")
    assert list(fig.data[0].y) == []
    assert "n/a: fc" in fig.layout.title.text
    assert "n/a for every layer" in fig.layout.annotations[0].text


def test_channel_heatmap_refuses_unknown_signal():
    with pytest.raises(ValueError, match=r"'magnitude', 'apoz', 'near_zero', 'bn_scale'.*'taylor'"):
        channel_signal_heatmap(ANALYSIS, "taylor")


def test_weight_histogram_bars_are_the_histogram():
    la = ANALYSIS.layers[0]
    bar = weight_histogram(la).data[0]
    assert list(bar.y) == la.hist_counts
    np.testing.assert_allclose(bar.x, [-0.75, -0.25, 0.25, 0.75])
    np.testing.assert_allclose(bar.width, [0.5] * 4)


def test_layer_signal_table_summarises_each_layer_with_na_not_zero():
    table = layer_signal_table(ANALYSIS).set_index("layer")
    assert list(table.index) == ["conv1", "conv2", "fc"]
    assert list(table.columns) == [
        "type", "shape", "params", "FLOPs", "time share", "group", "sparsity", "mean APoZ", "near-zero", "norm"
    ]
    assert table.loc["conv1", "shape"] == "4 x 1 x 3 x 3"
    assert table.loc["conv2", "params"] == 6 * 4 * 9 + 6
    assert table["FLOPs"].tolist() == [4000, 6000, 3000]
    assert table["time share"].tolist() == pytest.approx([0.1, 0.2, 0.3])
    # numbered as the Model page numbers coupled groups: only groups of two or more, "—" for a layer alone
    assert table["group"].tolist() == ["0", "—", "0"]
    assert table.loc["fc", "type"] == "Linear"
    assert table.loc["conv1", "mean APoZ"] == "43.8%"  # mean of 0, 0.5, 0.25, 1
    assert table.loc["fc", "mean APoZ"] == "n/a"
    assert table.loc["conv1", "norm"] == "bn_conv1"
    assert table.loc["conv2", "norm"] == "n/a"
    assert table["sparsity"].tolist() == [0.25] * 3


def test_channel_heatmap_of_one_group_shows_only_its_members_in_order():
    fig = channel_signal_heatmap(ANALYSIS, "apoz", layers=["conv2", "conv1"], heading="of group 1")
    heat = fig.data[0]
    assert list(heat.y) == ["conv2", "conv1"]
    assert fig.layout.title.text.startswith("Channel APoZ of group 1")
    assert list(heat.z[1][:4]) == [0.0, 0.5, 0.25, 1.0]


@pytest.mark.parametrize("shape", [(4, 3, 3, 3), (5, 6)])
def test_mask_overlay_draws_kept_norms_and_blanks_fully_removed_kernels(shape):
    rng = np.random.default_rng(0)
    weight = rng.normal(size=shape)
    keep = rng.random(shape) > 0.4
    keep[1] = False  # a whole output channel removed: a blank row
    if len(shape) == 4:
        keep[0, 2] = False  # one whole kernel removed: a blank cell
        keep[2, 0, 0, 0] = False  # one weight of a kernel removed: still drawn
        keep[2, 0, 1, 1] = True
    fig = mask_overlay_heatmap("conv", weight, keep, colorscale="Cividis")
    z = np.asarray(fig.data[0].z, dtype=float)
    assert z.shape == shape[:2]
    assert np.isnan(z[1]).all()
    kept = keep.reshape(*shape[:2], -1).sum(-1)
    expected = np.sqrt(((weight * keep) ** 2).reshape(*shape[:2], -1).sum(-1))
    np.testing.assert_allclose(z[kept > 0], expected[kept > 0])
    assert np.isnan(z[kept == 0]).all()
    np.testing.assert_array_equal(np.asarray(fig.data[0].customdata), kept)
    per_kernel = int(np.prod(shape[2:]))
    assert f"/{per_kernel} weights" in fig.data[0].hovertemplate
    assert f"{int((kept == 0).sum()):,} of {kept.size:,}" in fig.layout.title.text
    if len(shape) == 4:
        assert np.isnan(z[0, 2]) and not np.isnan(z[2, 0])


def test_mask_overlay_refuses_a_mask_of_another_shape():
    with pytest.raises(ValueError, match=r"shaped like the weight \[2, 3\]"):
        mask_overlay_heatmap("fc", np.ones((2, 3)), np.ones((3, 2), dtype=bool))


def test_head_heatmap_draws_one_row_per_attention_divided_by_its_max_and_names_what_is_missing():
    heads = [HeadAnalysis("blocks.0.attn", ["q", "proj"], 8, [4.0, 2.0, 1.0], [2.0, 1.0, 0.5], [0.2, 0.4, 0.1]),
             HeadAnalysis("blocks.1.attn", ["in_proj_weight", "out_proj"], 8, [1.0, 3.0], [0.5, 1.5], None)]
    analysis = Analysis([layer("conv1", 3, 1)], samples=1, seconds=0.0, heads=heads)
    magnitude = head_heatmap(analysis, "magnitude", norm="l1")
    assert list(magnitude.data[0].y) == ["blocks.0.attn", "blocks.1.attn"]
    assert [list(row) for row in magnitude.data[0].z][0] == [1.0, 0.5, 0.25]
    assert list(magnitude.data[0].z[1])[:2] == [pytest.approx(1 / 3), 1.0] and math.isnan(magnitude.data[0].z[1][2])
    assert list(magnitude.data[0].text[0]) == ["4", "2", "1"] and "(L1)" in magnitude.layout.title.text
    assert list(head_heatmap(analysis, "magnitude").data[0].z[0]) == [1.0, 0.5, 0.25]  # L2 by default
    output = head_heatmap(analysis, "output")
    assert list(output.data[0].y) == ["blocks.0.attn"] and "n/a: blocks.1.attn" in output.layout.title.text
    with pytest.raises(ValueError, match="'magnitude', 'output'"):
        head_heatmap(analysis, "apoz")
