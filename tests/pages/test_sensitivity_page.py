"""The Sensitivity page, driven as a user would: scan the demo, read the curves, get a recommendation, open it
in Prune; a cancelled scan, bad ratios and an impossible target."""

from __future__ import annotations

import json
import time

import pytest
from streamlit.testing.v1 import AppTest

from pruner_core.errors import PrunerError
from pruner_core.frontends import jobs
from pruner_core.sensitivity import cache as cache_module
from pruner_core.sensitivity import scan as scan_module
from tests.pages.helpers import JOB_DEADLINE_S, wait_for_job


@pytest.fixture
def sensitivity(app: AppTest) -> AppTest:
    at = app.switch_page("pages/sensitivity.py").run()
    assert not at.exception
    return at


def scanned(at: AppTest, ratios: str = "0.3, 0.6, 0.9", samples: int = 300) -> AppTest:
    at.text_input(key="sens.ratios").set_value(ratios)
    at.number_input(key="sens.samples").set_value(samples)
    at = at.button(key="sens.run").click().run()
    assert not at.exception and not at.error
    wait_for_job(at, "sens.job")
    return at


def chart_titles(at: AppTest) -> list[str]:
    return [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]


def test_scan_shows_curves_and_a_recommendation_that_opens_in_prune(sensitivity):
    assert any("Run scan" in i.value for i in sensitivity.info)
    at = scanned(sensitivity)
    titles = chart_titles(at)
    assert titles[0].startswith("Sensitivity: accuracy") and titles[1].startswith("Accuracy drop")
    curves = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert [t["name"] for t in curves["data"]] == ["conv1", "conv2", "fc1", "fc2"]
    assert all(t["x"] == [0.0, 0.3, 0.6, 0.9] for t in curves["data"])
    assert len({t["y"][0] for t in curves["data"]}) == 1  # ratio 0: the dense accuracy for every layer
    assert any(t.startswith("Ratio removed per layer") for t in titles)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Parameter sparsity"] == "70.0%"
    at = at.button(key="sens.check").click().run()
    measured = next(df.value for df in at.dataframe if "allocation" in df.value.columns).set_index("allocation")
    assert measured.loc["recommended (curves)", "parameter sparsity"] == pytest.approx(0.70, abs=0.005)
    assert measured.loc["recommended (curves)", "accuracy"] > measured.loc["uniform", "accuracy"]
    assert measured.loc["one global threshold", "parameter sparsity"] == pytest.approx(0.70, abs=0.01)
    at = at.button(key="sens.open").click().run()
    assert not at.exception
    assert at.session_state["prune.sparsity"] == 0.0
    assert set(at.session_state["prune.overrides"]["layers"]) <= {"conv1", "conv2", "fc1"}
    assert [t.value for t in at.title] == ["Prune"]
    settings = next(df.value for df in at.dataframe if "prune" in df.value.columns).set_index("layer")
    assert settings["ratio"].notna().sum() >= 2  # the recommended per-layer ratios fill the table


def test_an_impossible_target_names_the_closest_achievable(sensitivity):
    at = scanned(sensitivity, ratios="0.1, 0.2")
    at = at.slider(key="sens.sparsity").set_value(0.9).run()
    assert not at.exception
    assert any("closest achievable" in e.value for e in at.error)


def test_bad_ratios_are_named_and_nothing_runs(sensitivity):
    at = sensitivity.text_input(key="sens.ratios").set_value("0.1, lots").run()
    at = at.button(key="sens.run").click().run()
    assert any("'lots' is not a number" in e.value for e in at.error)
    assert "sens.job" not in at.session_state
    at = at.text_input(key="sens.ratios").set_value(" , ").run()
    at = at.button(key="sens.run").click().run()
    assert any("no ratios to scan" in e.value for e in at.error)
    at = at.text_input(key="sens.ratios").set_value("0.5, 1.5").run()
    at = at.button(key="sens.run").click().run()
    assert any("must be a fraction in [0, 1); got 1.5" in e.value for e in at.error)  # refused before any scan
    assert "sens.job" not in at.session_state


def test_a_cancelled_scan_keeps_its_partial_curves_marked(sensitivity):
    at = sensitivity.switch_page("pages/model.py").run()
    at.session_state["active.model"] = {"spec": "demo:resnet20", "weights": None, "trust": False}
    at = at.switch_page("pages/sensitivity.py").run()
    at.number_input(key="sens.samples").set_value(200)
    at = at.button(key="sens.run").click().run()
    job = jobs.get(at.session_state["sens.job"])
    deadline = time.monotonic() + JOB_DEADLINE_S
    while job.update is None or job.update.done < 3:
        assert time.monotonic() < deadline and job.running
        time.sleep(0.1)  # a background thread, not UI state
    job.cancel.set()  # what the Cancel button's callback does
    wait_for_job(at, "sens.job")
    assert any("cancelled" in w.value and "partial" in w.value for w in at.warning)
    assert chart_titles(at)[0].endswith("cancelled, partial")
    assert not [m for m in at.metric if m.label == "Parameter sparsity"]  # no recommendation from a partial scan


def test_channel_scan_groups_residual_partners_and_times_kept_channels(sensitivity):
    at = sensitivity.switch_page("pages/model.py").run()
    at.session_state["active.model"] = {"spec": "demo:resnet20", "weights": None, "trust": False}
    at = at.switch_page("pages/sensitivity.py").run()
    at = at.selectbox(key="sens.granularity").set_value("channel").run()
    at = scanned(at, ratios="0.5", samples=100)
    curves = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert any("coupled" in t["name"] for t in curves["data"])  # a residual group is one curve
    assert any(t.startswith("Latency of each group") for t in chart_titles(at))


def test_search_by_measurement_keeps_the_target_and_shows_a_measured_accuracy(sensitivity):
    at = scanned(sensitivity)
    assert "Predicted accuracy" in {m.label for m in at.metric}  # from the curves, until measured
    at = at.button(key="sens.search").click().run()
    assert not at.exception and not at.error
    candidates = next(df.value for df in at.dataframe if "candidate" in df.value.columns)
    assert len(candidates) == 5 and candidates["candidate"].str.endswith("(start)").sum() == 1
    assert candidates["candidate"].iloc[0].startswith("global threshold")
    assert any("training images" in c.value and "evaluations in" in c.value for c in at.caption)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Parameter sparsity"] == "70.0%" and "Measured accuracy" in metrics
    assert any("measured, without fine-tuning, on the first 300 test images" in c.value for c in at.caption)
    at = at.button(key="sens.check").click().run()
    measured = next(df.value for df in at.dataframe if "allocation" in df.value.columns).set_index("allocation")
    assert list(measured.index) == ["searched", "uniform", "one global threshold"]
    assert (measured["samples"] == 700).all()  # the test images after the scan's 300
    assert measured.loc["searched", "accuracy"] >= measured.loc["one global threshold", "accuracy"]


def test_a_scan_of_another_model_is_not_shown_as_this_ones(sensitivity):
    at = scanned(sensitivity, ratios="0.5", samples=100)
    at = at.switch_page("pages/model.py").run()
    at.session_state["active.model"] = {"spec": "demo:lenet300", "weights": None, "trust": False}
    at = at.switch_page("pages/sensitivity.py").run()
    assert not at.exception
    assert any("another model or data set" in i.value for i in at.info)
    assert not at.get("plotly_chart")


class SteppingClock:
    """``time`` as the scan sees it: each ``perf_counter()`` is one second after the one before, so a dense evaluation
    "takes" a second on any machine, however fast (the rest of ``time`` is the real one)."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        self.now += 1.0
        return self.now

    def __getattr__(self, name: str):
        return getattr(time, name)


def test_a_time_budget_lowers_the_samples_and_says_so(sensitivity, monkeypatch):
    """The budget's behaviour, on a scripted clock: how long a scan of resnet20 really takes under a 2-second
    budget, and the samples it leaves, is a benchmark (bench/run.py ``sensitivity_budget``), not a test."""
    monkeypatch.setattr(scan_module, "time", SteppingClock())  # 1 s per evaluation x ~20 layers: well over 2 s
    at = sensitivity.switch_page("pages/model.py").run()
    at.session_state["active.model"] = {"spec": "demo:resnet20", "weights": None, "trust": False}
    at = at.switch_page("pages/sensitivity.py").run()
    at.number_input(key="sens.seconds").set_value(2)
    at = scanned(at, ratios="0.5", samples=1000)
    result = at.session_state["sens.result"]
    assert 100 <= result.settings["samples"] < 1000
    assert any(f"first {result.settings['samples']:,} test samples" in c.value for c in at.caption)


def test_a_failed_scan_leaves_no_earlier_curves_on_show(sensitivity, monkeypatch):
    at = scanned(sensitivity, ratios="0.5", samples=100)
    assert at.get("plotly_chart")

    def fail(*args, **kwargs):
        raise PrunerError("the scan failed: layer 'conv2' could not be scored")

    monkeypatch.setattr(cache_module, "scan", fail)
    at = at.text_input(key="sens.ratios").set_value("0.4").run()
    at = at.button(key="sens.run").click().run()
    wait_for_job(at, "sens.job")
    assert any("could not be scored" in e.value for e in at.error)
    assert not at.get("plotly_chart")


def test_prune_sliders_sit_beside_their_curves_and_the_preview_predicts_from_them(sensitivity):
    at = scanned(sensitivity, ratios="0.3, 0.6, 0.9", samples=300)
    sens = at.session_state["sens.result"]
    at = at.switch_page("pages/prune.py").run()  # unstructured + l1: what was scanned
    assert not at.exception and not at.error
    curves = {c.proto.id: json.loads(c.proto.spec) for c in at.get("plotly_chart")
              if json.loads(c.proto.spec)["layout"].get("height") == 120}
    assert len(curves) == 3  # conv1, conv2, fc1: one per slider (fc2, the classes, has no slider)
    first = next(iter(curves.values()))
    assert first["data"][0]["x"] == [0.0, 0.3, 0.6, 0.9] and first["layout"]["shapes"][0]["x0"] == 0.5

    def prediction(at):
        return next(i.value for i in at.info if "Predicted from the scan" in i.value or "No prediction" in i.value)

    before = prediction(at)
    assert f"dense {sens.dense_accuracy:.1%}" in before
    at = at.slider(key="prune.slider.conv2").set_value(0.9).run()
    after = prediction(at)
    assert after != before  # the preview's prediction follows the slider
    shown = float(after.split("accuracy ")[1].split("%")[0]) / 100
    assert 0 <= shown <= sens.dense_accuracy
    at = at.slider(key="prune.slider.fc1").set_value(0.95).run()
    assert "fc1 would lose more than the scan measured (up to 90%)" in prediction(at)
    at = at.selectbox(key="prune.criterion").set_value(at.selectbox(key="prune.criterion").options[1]).run()
    assert not any("Predicted from the scan" in i.value or "No prediction" in i.value for i in at.info)
    assert not [c for c in at.get("plotly_chart") if json.loads(c.proto.spec)["layout"].get("height") == 120]


def test_before_a_scan_the_page_says_how_long_it_would_take_timed_now(sensitivity):
    promise = next(i.value for i in sensitivity.info if "Run scan" in i.value)
    assert "runs 36 evaluations (4 units x 9 ratios on 500 test samples): about " in promise
    assert "from one evaluation timed now" in promise
    at = sensitivity.text_input(key="sens.ratios").set_value("0.5, 1.5").run()
    assert any("How long it takes cannot be said" in i.value and "1.5" in i.value for i in at.info)
    at = at.text_input(key="sens.ratios").set_value("0.5").run()
    at = at.selectbox(key="sens.granularity").set_value("channel").run()
    assert any("runs 3 evaluations (3 units x 1 ratio on" in i.value and "channel latency" in i.value for i in at.info)


def test_the_pickers_show_short_names_with_the_descriptions_in_their_help(sensitivity):
    granularity, criterion = sensitivity.selectbox(key="sens.granularity"), sensitivity.selectbox(key="sens.criterion")
    assert all(" — " not in o for o in [*granularity.options, *criterion.options])  # no name cut to "…" in the box
    assert "- **unstructured**: single weights" in granularity.help
    assert "- **l1**: L1 norm of the weights in each group" in criterion.help
