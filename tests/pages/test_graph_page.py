"""The Graph page: Netron views of the original and a pruned run side by side, with runs missing or damaged."""

from __future__ import annotations

import shutil
import urllib.request
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from pruner_core.compare.compare import run_cache_dir
from pruner_core.errors import PrunerError
from pruner_core.frontends import netron_server as netron_view
from pruner_core.io import export
from pruner_core.io.data import load_data
from pruner_core.io.models import load_model
from pruner_core.pipeline.run import run_experiment
from pruner_core.pipeline.runs import list_runs
from pruner_core.pruning.recipe import Recipe


@pytest.fixture(scope="module")
def made_runs(tmp_path_factory) -> dict[str, Path]:
    """Two finished runs of the demo (channel-pruned and masked), made once and copied into each test's runs folder."""
    root = tmp_path_factory.mktemp("graph_runs")
    cnn, data = load_model("demo:mnist-cnn"), load_data("demo:mnist5k")
    recipes = {
        "channel": Recipe(granularity="channel", criterion="l1", sparsity=0.5, finetune={"epochs": 0}),
        "masked": Recipe(sparsity=0.5, finetune={"epochs": 0}),
    }
    return {
        kind: run_experiment(cnn, data, recipe, data_spec="demo:mnist5k", root=root, latency_runs=(3, 2)).path
        for kind, recipe in recipes.items()
    }


@pytest.fixture(autouse=True)
def no_servers_left():
    """AppTest runs the page in this process: its Netron servers are stopped after each test."""
    yield
    netron_view.stop_all()


def add_runs(made_runs: dict[str, Path], runs_root: Path, *kinds: str) -> list[Path]:
    runs_root.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copytree(made_runs[k], runs_root / made_runs[k].name)) for k in kinds]


def open_graph(app: AppTest) -> AppTest:
    at = app.switch_page("pages/graph.py").run()
    assert not at.exception
    assert [t.value for t in at.title] == ["Graph"]
    return at


def iframes(at: AppTest) -> list[str]:
    return [f.proto.src for f in at.get("iframe")]


def answers(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status == 200 and b"netron" in r.read().lower()


def test_with_no_runs_the_original_is_shown_alone_and_the_prune_page_suggested(app, runs_root):
    at = open_graph(app)
    assert not at.error
    assert any("run one on the Prune page" in i.value for i in at.info)
    assert not [s for s in at.selectbox if s.key == "graph.run"]  # no run picker without runs
    [url] = iframes(at)
    assert url.startswith("http://127.0.0.1:") and answers(url)
    [link] = at.get("link_button")
    assert link.proto.url == url
    onnx = next(runs_root.glob(".cache/original-*/model.onnx"))  # the cache the Compare page shares
    assert f"demo:mnist-cnn · {netron_view.onnx_file(onnx).caption}" in [c.value for c in at.caption]
    assert any(f"127.0.0.1:{url.rsplit(':', 1)[1]}" in c.value for c in at.caption)


def test_a_done_run_is_shown_beside_the_original(app, runs_root, made_runs):
    [run] = add_runs(made_runs, runs_root, "channel")
    at = open_graph(app)
    assert not at.error and not at.info
    assert at.selectbox(key="graph.run").value == run.name
    assert len(at.columns) == 2
    original_url, run_url = iframes(at)
    assert original_url != run_url and answers(original_url) and answers(run_url)
    run_onnx = run_cache_dir(list_runs(runs_root)[0]) / "model.onnx"
    assert run_onnx.is_file()
    assert netron_view.server_of(run_onnx).url == run_url
    original_onnx = next(runs_root.glob(".cache/original-*/model.onnx"))
    assert run_onnx.stat().st_size < original_onnx.stat().st_size  # channels were removed
    captions = [c.value for c in at.caption]
    share = run_onnx.stat().st_size / original_onnx.stat().st_size
    assert f"run {run.name} · {netron_view.onnx_file(run_onnx).caption}, {share:.0%} of the original's" in captions
    assert f"demo:mnist-cnn · {netron_view.onnx_file(original_onnx).caption}" in captions
    assert [s.value for s in at.subheader] == ["Original", "Pruned"]


def test_choosing_another_run_stops_the_server_no_longer_shown(app, runs_root, made_runs):
    channel, masked = add_runs(made_runs, runs_root, "channel", "masked")
    at = open_graph(app)
    first = at.selectbox(key="graph.run").value
    first_onnx = runs_root / first / "compare" / "model.onnx"
    first_server = netron_view.server_of(first_onnx)
    assert first_server.alive
    other = next(run.name for run in (channel, masked) if run.name != first)
    at = at.selectbox(key="graph.run").set_value(other).run()
    assert not at.exception and not at.error
    assert netron_view.server_of(first_onnx) is None and not first_server.alive
    assert netron_view.server_of(runs_root / other / "compare" / "model.onnx").url == iframes(at)[1]
    assert len(netron_view.running()) == 2  # the original's and the chosen run's


def test_a_damaged_run_folder_is_listed_as_not_shown_and_breaks_nothing(app, runs_root, made_runs):
    add_runs(made_runs, runs_root, "channel")
    broken = runs_root / "20260101-000000-broken"
    broken.mkdir()
    (broken / "status.json").write_text("{not json")
    at = open_graph(app)
    assert not at.error
    assert len(iframes(at)) == 2
    assert any("Not shown" in c.value and "broken" in c.value and "damaged" in c.value for c in at.caption)


def test_only_damaged_runs_show_the_original_alone(app, runs_root):
    (runs_root / "half-written").mkdir(parents=True)
    at = open_graph(app)
    assert not at.error
    assert any("run one on the Prune page" in i.value for i in at.info)
    assert len(iframes(at)) == 1


def test_a_run_whose_model_cannot_be_rebuilt_is_an_error_beside_the_original(app, runs_root, made_runs):
    [run] = add_runs(made_runs, runs_root, "channel")
    (run / "weights.safetensors").write_bytes(b"\x00garbage" * 20)
    at = open_graph(app)
    [error] = at.error
    assert f"Run {run.name} cannot be shown" in error.value and "weights.safetensors" in error.value
    assert len(iframes(at)) == 1  # the original's view is still there


def test_an_export_that_fails_is_an_error_naming_the_model_and_the_reason(app, runs_root, made_runs, monkeypatch):
    add_runs(made_runs, runs_root, "channel")

    def refuse(module, input_shape, path, **kwargs):
        raise PrunerError("ONNX export failed: UnsupportedOperatorError: aten::frobnicate")

    monkeypatch.setattr(export, "export_onnx", refuse)  # ensure_onnx (used by the page) exports through it
    at = open_graph(app)
    assert [e.value for e in at.error] == [
        "The original model demo:mnist-cnn cannot be shown: ONNX export failed: UnsupportedOperatorError: aten::frobnicate",
        f"Run {at.selectbox(key='graph.run').value} cannot be shown: ONNX export failed: UnsupportedOperatorError:"
        " aten::frobnicate",
    ]
    assert iframes(at) == [] and len(at.columns) == 2
