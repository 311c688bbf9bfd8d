"""The Compare page, driven as a user would: two runs and the original, their table, plots and downloads."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from streamlit.testing.v1 import AppTest

from pruner_core.io.data import load_data
from pruner_core.io.models import load_model
from pruner_core.pipeline.run import run_experiment
from pruner_core.pipeline.runs import list_runs
from pruner_core.pruning.recipe import Recipe
from tests.pages.conftest import APP

RECIPES = (
    {"sparsity": 0.5, "finetune": {"epochs": 0.1}},
    {"granularity": "channel", "criterion": "l2", "sparsity": 0.5, "finetune": {"epochs": 0}},
)


@pytest.fixture(scope="module")
def saved_runs(tmp_path_factory):
    """Two finished runs of the demo model (masked, channel), made once and copied into each test's runs folder."""
    root = tmp_path_factory.mktemp("saved_runs")
    model, data = load_model("demo:mnist-cnn"), load_data("demo:mnist5k")
    for recipe in RECIPES:
        run_experiment(model, data, Recipe.from_dict(recipe), data_spec="demo:mnist5k", root=root, latency_runs=(2, 1))
    return root


@pytest.fixture
def compare(app: AppTest, runs_root, saved_runs) -> AppTest:
    shutil.copytree(saved_runs, runs_root, dirs_exist_ok=True)
    at = app.switch_page("pages/compare.py").run()
    assert not at.exception
    return at


def shown_table(at: AppTest):
    return next(df.value for df in at.dataframe if "ONNX Runtime b64" in df.value.columns)


def test_compares_two_runs_with_the_original(compare):
    assert not compare.error and not compare.warning
    assert len(compare.multiselect(key="compare.runs").value) == 2
    table = shown_table(compare.multiselect(key="compare.groups").select("sizes").run())
    assert list(table["kind"]) == ["original", "channel", "masked"]
    assert table["accuracy"].iloc[0].startswith("98.90% (+0.0 pp)")
    assert re.search(r"\((3\.9\d|4\.0\d)×\)$", table["dense size"].iloc[1])  # channel pruning: a quarter of the weights
    assert table["dense size"].iloc[2] == table["dense size"].iloc[0]  # masks keep dense shapes
    assert "notes" not in table.columns and list(table["model"])[0] == "original"  # ids: the headlines say the rest
    masked_id = table["model"].iloc[2]
    assert not any(" · " in m for m in table["model"])
    assert any(c.value.startswith(f"{masked_id}: masked: ") and "dense runtimes do not run it faster" in c.value
               for c in compare.caption)  # the notes, one line per model below the table
    assert all("ms (" in v for v in table["ONNX Runtime b1"])
    assert any("do not run them faster" in i.value for i in compare.info)
    charts = [json.loads(c.proto.spec) for c in compare.get("plotly_chart")]
    titles = [c["layout"]["title"]["text"] for c in charts]
    assert titles[0].startswith("Accuracy against latency") and titles[1].startswith("Accuracy against dense weight")
    assert any(t.startswith("Per-layer sparsity") for t in titles) and any(t.startswith("Per-class") for t in titles)
    assert any(t.startswith("Fine-tuning") for t in titles)  # the masked run fine-tuned a tenth of an epoch
    pareto = charts[0]
    front = next(trace for trace in pareto["data"] if trace["name"] == "Pareto front")
    assert len(front["x"]) >= 1


def test_the_reader_picks_the_column_groups_and_the_default_fits(compare):
    picker = compare.multiselect(key="compare.groups")
    assert picker.value == ["accuracy", "latency ONNX Runtime", "FLOPs / params"]  # fits 1440 px (the e2e test checks)
    assert list(shown_table(compare).columns) == ["model", "kind", "accuracy", "ONNX Runtime b1", "ONNX Runtime b64",
                                                  "FLOPs", "non-zero / total params"]
    at = picker.select("latency PyTorch").unselect("FLOPs / params").run()
    assert not at.exception
    table = next(df.value for df in at.dataframe if "PyTorch b1" in df.value.columns)
    assert list(table.columns) == ["model", "kind", "accuracy", "PyTorch b1", "PyTorch b64", "ONNX Runtime b1",
                                   "ONNX Runtime b64"]
    assert all(" ms (" in v for v in table["PyTorch b1"])


def test_switching_runtime_and_size_redraws_without_measuring_again(compare, monkeypatch):
    from pages import _common
    from pruner_core.compare import compare as core

    monkeypatch.setattr(core, "measure_static", lambda *a, **k: pytest.fail("measured again"))
    monkeypatch.setattr(_common, "list_runs_by_path", lambda root: pytest.fail("run folders read again"))
    at = compare.radio(key="compare.latency").set_value("ONNX Runtime").run()
    at = at.radio(key="compare.size").set_value("sparse encoding").run()
    assert not at.exception
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert "ONNX Runtime" in titles[0] and "bitmask + values" in titles[1]


def test_fewer_runs_and_the_export_downloads(compare):
    at = compare.multiselect(key="compare.runs").unselect(compare.multiselect(key="compare.runs").value[0]).run()
    assert not at.exception
    assert list(shown_table(at)["kind"]) == ["original", "masked"]
    assert at.selectbox(key="compare.export_run").options == [at.multiselect(key="compare.runs").value[0].split("/")[-1]]
    labels = [b.proto.label for b in at.get("download_button")]
    assert sorted(labels) == ["ONNX", "Recipe", "Report (HTML, opens offline)", "Weights"]


def test_a_damaged_run_is_listed_and_the_page_still_compares(app, runs_root, saved_runs):
    shutil.copytree(saved_runs, runs_root, dirs_exist_ok=True)
    broken = runs_root / "zz-broken"
    broken.mkdir()
    (broken / "status.json").write_text("{not json")
    at = app.switch_page("pages/compare.py").run()
    assert str(broken) not in at.multiselect(key="compare.runs").options  # whose it is cannot be read: not offered
    at = at.toggle(key="compare.others").set_value(True).run()  # ... until the user asks for the others
    at = at.multiselect(key="compare.runs").select(str(broken)).run()
    assert not at.exception
    assert any("zz-broken" in e.value and "status.json" in e.value for e in at.error)
    assert len(shown_table(at)) == 4  # the original, the two runs, and the damaged one (without figures)


def test_a_run_of_another_base_model_is_shown_with_a_warning(app, runs_root, saved_runs):
    shutil.copytree(saved_runs, runs_root, dirs_exist_ok=True)
    at = app.switch_page("pages/model.py").run()
    at.session_state["active.model"] = {"spec": "demo:resnet20", "weights": None, "trust": False}
    at = at.switch_page("pages/compare.py").run()
    assert not at.exception and not at.warning  # other models' runs are not chosen for you
    assert at.multiselect(key="compare.runs").value == []
    assert any("No runs of this model and data yet (2 of other models or data" in i.value for i in at.info)
    at = at.toggle(key="compare.others").set_value(True).run()
    picker = at.multiselect(key="compare.runs")
    assert len(picker.options) == 2
    assert all("other model or data (demo:mnist-cnn, demo:mnist5k)" in label for label in picker.options)
    for run in sorted(p for p in runs_root.iterdir() if p.is_dir()):
        picker.select(str(run))
    at = picker.run()
    assert len(at.warning) == 2 and all("another base model" in w.value for w in at.warning)
    run_id = shown_table(at)["model"].iloc[1]
    assert any(c.value.startswith(f"{run_id}: ") and "another base model" in c.value for c in at.caption)


def test_no_runs_yet(app):
    at = app.switch_page("pages/compare.py").run()
    assert not at.exception and not at.error
    assert any("No saved runs yet" in i.value for i in at.info)
    assert list(shown_table(at)["kind"]) == ["original"]


def test_each_session_is_offered_its_own_runs_and_its_active_models(app, runs_root, saved_runs):
    shutil.copytree(saved_runs, runs_root, dirs_exist_ok=True)
    runs = sorted(str(p) for p in runs_root.iterdir() if p.is_dir())
    at = app.switch_page("pages/model.py").run()
    at.session_state["active.model"] = {"spec": "demo:resnet20", "weights": None, "trust": False}
    at.session_state["session.runs"] = {runs[0]}  # made in this session, before it switched model
    at = at.switch_page("pages/compare.py").run()
    assert not at.exception
    assert at.multiselect(key="compare.runs").value == [runs[0]]
    assert at.multiselect(key="compare.runs").options == [next(r.label for r in list_runs(runs_root) if str(r.path) == runs[0])]
    other = AppTest.from_file(APP, default_timeout=120).run()  # another browser session, on the demo model
    other = other.switch_page("pages/compare.py").run()
    assert sorted(other.multiselect(key="compare.runs").value) == runs  # both are its active model's
