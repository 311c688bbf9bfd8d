"""The Inspect page, driven as a user would: pick a layer, change norm and samples, read the layer table."""

from __future__ import annotations

import json

import pytest
import torch
from streamlit.testing.v1 import AppTest
from torch import nn


@pytest.fixture
def inspect(app: AppTest) -> AppTest:
    """The app switched to Inspect on the demo model and data."""
    at = app.switch_page("pages/inspect.py").run()
    assert not at.exception
    return at


def layer_table(at: AppTest):
    return next(df.value for df in at.dataframe if "mean APoZ" in df.value.columns).set_index("layer")


def charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def titles(at: AppTest) -> list[str]:
    return [c["layout"]["title"]["text"] for c in charts(at)]


def test_opens_with_heatmaps_histogram_and_table_of_the_demo(inspect):
    assert not inspect.error
    assert [t.value for t in inspect.title] == ["Inspect"]
    assert inspect.selectbox(key="inspect.layer").options == ["conv1", "conv2", "fc1", "fc2"]
    assert inspect.selectbox(key="inspect.layer").value == "conv1"
    assert inspect.number_input(key="inspect.samples").value == 256
    assert inspect.radio(key="inspect.norm").value == "L2"
    assert len(charts(inspect)) == 5  # kernel heatmap, histogram, three channel signals
    shown = titles(inspect)
    assert shown[0].startswith("conv1: L2 norm of each kernel (32 out x 1 in)")
    assert any(t.startswith("Channel APoZ") and "n/a: fc2" in t for t in shown)  # never drawn as 0
    assert any(t.startswith("Channel norm scale") and "n/a: fc1, fc2" in t for t in shown)


def test_layer_table_values(inspect):
    table = layer_table(inspect)
    assert list(table.index) == ["conv1", "conv2", "fc1", "fc2"]
    assert table.loc["conv1", "norm"] == "bn1 (BatchNorm2d)"
    assert table.loc["conv2", "norm"] == "bn2 (BatchNorm2d)"
    assert table.loc["fc1", "norm"] == "n/a"
    assert table.loc["fc2", "mean APoZ"] == "n/a"  # the logits: no ReLU follows
    for name in ("conv1", "conv2", "fc1"):
        assert table.loc[name, "mean APoZ"].endswith("%")
    assert table.loc["conv2", "shape"] == "64 x 32 x 3 x 3"
    assert list(table["params"]) == [32 * 9 + 32, 64 * 32 * 9 + 64, 128 * 64 * 7 * 7 + 128, 10 * 128 + 10]
    assert list(table["FLOPs"]) == [2 * 32 * 9 * 28 * 28, 2 * 64 * 32 * 9 * 14 * 14, 2 * 128 * 3136, 2 * 10 * 128]
    assert list(table["type"]) == ["Conv2d", "Conv2d", "Linear", "Linear"]
    assert table["time share"].between(0, 1, inclusive="neither").all() and table["time share"].sum() < 1
    assert (table["group"] == "—").all()  # a plain chain: nothing is coupled (as the Model page says it)
    assert any(c.value.startswith("No coupled layers") for c in inspect.caption)


def test_picking_another_layer_redraws_its_heatmap_and_histogram(inspect):
    at = inspect.selectbox(key="inspect.layer").set_value("fc1").run()
    assert not at.exception and not at.error
    kernel, hist = charts(at)[:2]
    assert kernel["layout"]["title"]["text"].startswith("fc1: L2 norm of each weight (128 out x 3136 in)")
    assert hist["layout"]["title"]["text"].startswith("fc1: weight histogram")
    at = at.selectbox(key="inspect.layer").set_value("fc2").run()
    assert not at.exception
    assert any("APoZ n/a: no activation (ReLU-like, GELU, SiLU, Tanh, ...) follows" in c.value for c in at.caption)


@pytest.fixture
def analyses(monkeypatch) -> list[int]:
    """Sample counts of every analysis actually computed (not served from the cache) from now on."""
    import pages._common as common

    calls: list[int] = []

    def counting(model, data, *, samples, **kwargs):
        calls.append(samples)
        return real(model, data, samples=samples, **kwargs)

    real = common.analyze
    monkeypatch.setattr(common, "analyze", counting)
    return calls


def test_changing_norm_colour_scale_and_layer_redraws_without_recomputing(inspect, analyses):
    viridis = charts(inspect)[0]["data"][0]["colorscale"]
    at = inspect.radio(key="inspect.norm").set_value("L1").run()
    assert not at.exception
    assert titles(at)[0].startswith("conv1: L1 norm")
    assert any(t.startswith("Channel weight magnitude (L1)") for t in titles(at))
    at = at.selectbox(key="inspect.colorscale").set_value("Cividis").run()
    assert not at.exception
    assert charts(at)[0]["data"][0]["colorscale"] != viridis
    at = at.selectbox(key="inspect.layer").set_value("conv2").run()
    assert not at.exception
    assert analyses == []


def test_changing_samples_recomputes_on_that_many(inspect, analyses):
    at = inspect.number_input(key="inspect.samples").set_value(37).run()
    assert not at.exception and not at.error
    assert analyses == [37]
    assert any("APoZ over 37 calibration samples" in c.value for c in at.caption)
    assert layer_table(at).loc["fc2", "mean APoZ"] == "n/a"


def test_model_without_prunable_layers_is_explained_and_page_keeps_working(app, tmp_path):
    path = tmp_path / "no_prunable.pt"
    torch.save(nn.Sequential(nn.Flatten(), nn.ReLU()), path)
    at = app
    at.session_state["active.model"] = {"spec": str(path), "weights": None, "trust": True}
    at.switch_page("pages/inspect.py").run()
    assert not at.exception
    assert any("no prunable layers" in w.value for w in at.warning), [e.value for e in at.error]
    assert not at.get("plotly_chart")


def test_resnet20_coupled_group_view_shows_every_member(app):
    at = app
    at.session_state["active.model"] = {"spec": "demo:resnet20", "weights": None, "trust": False}
    at.switch_page("pages/inspect.py").run()
    assert not at.exception and not at.error
    group = at.selectbox(key="inspect.group")
    assert len(group.options) == 3  # one per residual stage
    assert group.value.endswith("conv1, layer1.0.conv2, layer1.1.conv2, layer1.2.conv2")
    at = group.set_value(group.options[2]).run()
    assert not at.exception
    heatmaps = [c for c in charts(at) if "in group" in c["layout"]["title"]["text"]]
    assert len(heatmaps) == 3  # magnitude, APoZ and BN scale of the chosen group
    members = ["layer3.0.shortcut.0", "layer3.0.conv2", "layer3.1.conv2", "layer3.2.conv2"]
    assert sorted(heatmaps[0]["data"][0]["y"]) == sorted(members)
    assert all(len(row) == 64 for row in heatmaps[0]["data"][0]["z"])  # stage 3 has 64 channels
    table = layer_table(at)
    assert table.loc["layer3.1.conv2", "group"] == table.loc["layer3.0.shortcut.0", "group"] == "2"
    assert group.options[2].startswith("group 2: ")  # the picker numbers the groups as the table does


def test_calibration_data_of_the_wrong_shape_is_an_error_and_the_page_keeps_working(app, user_files):
    at = app
    at.session_state["active.data"] = str(user_files["wrong_shape_data"])  # 3 x 32 x 32 for a 1 x 28 x 28 model
    at.switch_page("pages/inspect.py").run()
    assert not at.exception
    assert any("(3, 32, 32)" in e.value and "(1, 28, 28)" in e.value for e in at.error), [e.value for e in at.error]
    at.session_state["active.data"] = "demo:mnist5k"
    at.run()
    assert not at.exception and not at.error
    assert len(charts(at)) == 5


class TinyViT(nn.Module):
    """Sixteen 7x7 patches of an MNIST digit through one timm-style attention (4 heads), then a classifier."""

    def __init__(self) -> None:
        super().__init__()
        from tests.zoo.architectures import Attention

        self.patch = nn.Conv2d(1, 16, 7, stride=7)
        self.attn = Attention(16, 4)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        return self.head((tokens + self.attn(tokens)).mean(1))


def test_an_attention_model_shows_per_head_magnitude_and_output(app, tmp_path):
    path = tmp_path / "tiny_vit.pt"
    torch.manual_seed(0)
    torch.save(TinyViT().eval(), path)
    at = app
    at.session_state["active.model"] = {"spec": str(path), "weights": None, "trust": True}
    at.switch_page("pages/inspect.py").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "Attention heads" in [h.value for h in at.subheader]
    heads = [c for c in charts(at) if c["layout"]["title"]["text"].startswith("Head ")]
    assert len(heads) == 2  # magnitude and mean |output|
    for fig in heads:
        assert fig["data"][0]["y"] == ["attn"] and len(fig["data"][0]["z"][0]) == 4 and max(fig["data"][0]["z"][0]) == 1
    at.radio(key="inspect.norm").set_value("L1").run()
    assert any(c["layout"]["title"]["text"].startswith("Head weight magnitude (L1)") for c in charts(at))


def test_a_model_without_attention_has_no_heads_section(inspect):
    assert "Attention heads" not in [h.value for h in inspect.subheader]
