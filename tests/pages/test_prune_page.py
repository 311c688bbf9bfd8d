"""The Prune page, driven as a user would: choose a recipe, read its preview, run it, cancel it."""

from __future__ import annotations

import json
import re

import pytest
from streamlit.testing.v1 import AppTest

from pruner_core.frontends import jobs
from pruner_core.io.models import load_model
from pruner_core.pipeline.runs import list_runs
from tests.pages.helpers import wait_for_job


@pytest.fixture
def prune(app: AppTest) -> AppTest:
    """The app switched to Prune on the demo model and data."""
    at = app.switch_page("pages/prune.py").run()
    assert not at.exception
    return at


def table(at: AppTest, column: str):
    """The first data frame shown with ``column``, indexed by layer."""
    return next(df.value for df in at.dataframe if column in df.value.columns).set_index("layer")


def criteria(at: AppTest) -> list[str]:
    return [option.split(" — ")[0] for option in at.selectbox(key="prune.criterion").options]


def test_opens_on_the_demo_with_its_layers_and_a_preview(prune):
    assert not prune.error
    assert [t.value for t in prune.title] == ["Prune"]
    settings = table(prune, "prune")
    assert list(settings.index) == ["conv1", "conv2", "fc1", "fc2"]
    assert list(settings["prune"]) == [True, True, True, False]  # the classifier is left alone by default
    assert list(settings["ratio"]) == [0.5] * 4  # each cell holds the ratio the layer gets (no blank "None")
    assert "layers: {}" in prune.code[0].value  # ... and none of them is an override
    assert prune.slider(key="prune.sparsity").value == 0.5
    assert len(prune.get("plotly_chart")) == 1  # the mask overlay of the first layer
    overlay = json.loads(prune.get("plotly_chart")[0].proto.spec)
    assert overlay["layout"]["title"]["text"].startswith("conv1: L2 norm of the kept weights")


def test_criteria_offered_follow_the_granularity(prune):
    assert "wanda" in criteria(prune) and "apoz" not in criteria(prune)
    at = prune.selectbox(key="prune.granularity").set_value("channel").run()
    assert not at.exception and not at.error
    assert {"apoz", "bn_scale", "l1", "taylor"} <= set(criteria(at)) and "wanda" not in criteria(at)
    at = at.selectbox(key="prune.criterion").set_value("apoz").run()
    at = at.selectbox(key="prune.granularity").set_value("kernel").run()  # apoz cannot score kernels
    assert not at.exception and not at.error
    assert at.selectbox(key="prune.criterion").value == "l1"
    assert "apoz" not in criteria(at)


def test_unstructured_preview_removes_half_of_each_layer_but_the_classifier(prune):
    weights = {name: mod.weight for name, mod in load_model("demo:mnist-cnn").module.named_modules()
               if hasattr(mod, "weight") and name in ("conv1", "conv2", "fc1", "fc2")}
    preview = table(prune, "non-zero FLOPs")
    for name, w in weights.items():
        removed = preview.loc[name, "params before"] - preview.loc[name, "params after"]
        expected = 0 if name == "fc2" else round(0.5 * w.numel())
        assert removed == expected, name
        assert preview.loc[name, "FLOPs after (dense)"] == preview.loc[name, "FLOPs before"]  # masks keep dense shapes
    assert not preview.loc["fc2", "pruned"]
    metrics = {m.label: m.value for m in prune.metric}
    total = sum(round(0.5 * weights[n].numel()) for n in ("conv1", "conv2", "fc1"))
    assert metrics["Parameters removed"] == f"{total:,}"
    assert any("dense runtimes do not run it faster" in c.value for c in prune.caption)


def test_channel_preview_measures_fewer_flops(prune):
    at = prune.selectbox(key="prune.granularity").set_value("channel").run()
    assert not at.exception and not at.error
    preview = table(at, "channels after")
    assert list(preview["channels after"]) == [16, 32, 64, 10]  # 50% of the channels; the classes stay
    for name in ("conv1", "conv2", "fc1", "fc2"):  # fc2 loses its inputs, so its FLOPs drop too
        assert preview.loc[name, "FLOPs after"] < preview.loc[name, "FLOPs before"]
    metrics = {m.label: m.value for m in at.metric}
    assert "FLOPs / sample" in metrics and "Non-zero FLOPs / sample" not in metrics


def test_an_invalid_recipe_is_an_error_and_the_page_keeps_working(prune):
    at = prune.selectbox(key="prune.schedule").set_value("iterative").run()
    at = at.number_input(key="prune.epochs").set_value(0.0).run()
    assert not at.exception
    assert any("finetune.epochs" in e.value for e in at.error), [e.value for e in at.error]
    assert at.button(key="prune.run").disabled
    at = at.number_input(key="prune.epochs").set_value(1.0).run()
    assert not at.exception and not at.error
    assert not at.button(key="prune.run").disabled


def test_a_short_run_ends_as_a_saved_experiment(prune, runs_root):
    at = prune.number_input(key="prune.epochs").set_value(0.05).run()
    at = at.button(key="prune.run").click().run()
    assert not at.exception
    job = wait_for_job(at, "prune.job")
    assert job.state == "done", job.error
    assert any(job.result.id in s.value for s in at.success)
    runs = list_runs(runs_root)
    assert [r.status for r in runs] == ["done"]
    assert runs[0].path == job.result.path and runs[0].recipe.finetune.epochs == 0.05
    result = next(df.value for df in at.dataframe if "original" in df.value.columns).set_index("figure")
    assert result.loc["parameters", "original"] == result.loc["parameters", "pruned"]  # masks keep every weight
    assert result.loc["non-zero parameters", "pruned"] != result.loc["non-zero parameters", "original"]
    assert re.fullmatch(r"\d+\.\d\d×", result.loc["non-zero parameters", "change"])  # original ÷ pruned, as on Compare
    assert re.fullmatch(r"[+-]\d+\.\d\d pp", result.loc["test accuracy", "change"])
    assert any("dense runtimes do not run it faster" in i.value for i in at.info)
    at = at.button(key="prune.compare").click().run()
    assert not at.exception
    assert [t.value for t in at.title] == ["Compare"]
    shown = next(df.value for df in at.dataframe if "ONNX Runtime b64" in df.value.columns)
    assert list(shown["kind"]) == ["original", "masked"] and job.result.id in shown["model"].iloc[1]


def test_a_run_survives_leaving_the_page_and_can_be_cancelled(prune, runs_root):
    at = prune.number_input(key="prune.epochs").set_value(5.0).run()
    at = at.button(key="prune.run").click().run()
    assert not at.exception
    job = jobs.get(at.session_state["prune.job"])
    at.switch_page("pages/model.py").run()
    at.switch_page("pages/prune.py").run()
    assert not at.exception
    assert at.session_state["prune.job"] == job.id and job.running
    assert at.get("progress"), "the running job's progress bar is shown again"
    at = at.button(key="prune.cancel").click().run()
    job = wait_for_job(at, "prune.job")
    assert job.state == "cancelled"
    assert any("cancelled" in w.value for w in at.warning)
    assert [r.status for r in list_runs(runs_root)] == ["cancelled"]


def test_the_cost_of_a_run_is_said_before_it_starts_and_follows_the_recipe(prune):
    def cost(at):
        return next(c.value for c in at.main.caption if c.value.startswith("Estimated cost:"))

    assert cost(prune).startswith("Estimated cost: 63 fine-tuning steps of batch 64 at ")  # 1 epoch of 4,000 images
    assert cost(prune).endswith("It can be cancelled at any step.")
    at = prune.number_input(key="prune.epochs").set_value(10.0).run()
    assert cost(at).startswith("Estimated cost: 630 fine-tuning steps")
    at = at.number_input(key="prune.epochs").set_value(0.0).run()
    assert cost(at).startswith("Estimated cost: no fine-tuning")


def test_changing_what_a_ratio_means_clears_the_per_layer_ratios_and_says_so(prune):
    from pages._prune_state import prune_widget_state
    from pruner_core.pruning.recipe import Recipe

    recipe = Recipe.from_dict({"granularity": "channel", "sparsity": 0.0, "layers": {"conv1": 0.25, "conv2": 0.5}})
    for key, value in prune_widget_state(recipe).items():  # what "Open in Prune" (show_in_prune) leaves
        prune.session_state[key] = value
    prune.session_state["prune.granularity_was"] = "channel"
    prune.session_state["prune.overrides"] = {"layers": dict(recipe.layers), "exclude": None}
    at = prune.run()
    assert table(at, "prune").loc["conv2", "ratio"] == 0.5
    at = at.selectbox(key="prune.granularity").set_value("kernel").run()  # fractions of channels -> of kernels
    assert any("Cleared 2 per-layer ratio(s) (conv1, conv2): they were fractions of output channels under channel"
               in w.value for w in at.warning)
    kernel = table(at, "prune")
    assert list(kernel["ratio"]) == [0.0] * 4  # the slider's (0) where kernels apply, 0 where they do not
    assert list(kernel["prune"]) == [False, True, False, False]  # conv1 is depthwise, fc1 and fc2 are 2-D
    assert "layers: {}" in at.code[0].value  # the recipe shown (and run) has no stale ratios
    at = at.selectbox(key="prune.granularity").set_value("unstructured").run()  # kernels -> weights: same meaning
    assert not at.warning


def test_one_slider_per_prunable_unit_sets_its_ratio_and_the_preview_follows(prune):
    sliders = [s for s in prune.slider if s.key.startswith("prune.slider.")]
    assert [s.key.removeprefix("prune.slider.") for s in sliders] == ["conv1", "conv2", "fc1"]  # fc2: the classes
    assert all(s.value == 0.5 for s in sliders)  # the global slider's value, until one is moved
    before = table(prune, "non-zero FLOPs").loc["conv2", "params after"]
    at = prune.slider(key="prune.slider.conv2").set_value(0.9).run()
    assert not at.exception and not at.error
    assert table(at, "prune").loc["conv2", "ratio"] == 0.9  # the table holds it
    after = table(at, "non-zero FLOPs").loc["conv2", "params after"]
    assert after < before  # the preview follows
    assert "conv2: 0.9" in at.code[0].value and "conv1" not in at.code[0].value  # and the recipe, only it
    at = at.slider(key="prune.sparsity").set_value(0.3).run()
    assert at.slider(key="prune.slider.conv1").value == 0.3 and at.slider(key="prune.slider.conv2").value == 0.9
    assert list(table(at, "prune")["ratio"]) == [0.3, 0.9, 0.3, 0.3]  # the others follow the slider
    at = at.selectbox(key="prune.granularity").set_value("nm").run()  # N:M has no ratio per layer: it says so
    assert not [s for s in at.slider if s.key.startswith("prune.slider.")]
    assert any("there is no ratio per layer to set" in c.value for c in at.caption)


def test_channel_sliders_are_one_per_coupled_group_on_resnet20(app):
    app.selectbox(key="model.demo").set_value("resnet20")
    at = app.button(key="model.load").click().run()
    at = at.switch_page("pages/prune.py").run()
    at = at.selectbox(key="prune.granularity").set_value("channel").run()
    assert not at.exception
    labels = [s.label for s in at.slider if s.key.startswith("prune.slider.")]
    layers = table(at, "prune")
    open_layers = layers[layers["prune"] & (layers["note"] == "")]
    assert len(labels) < len(open_layers)  # residual stages share one slider
    assert any("coupled:" in label for label in labels)


def test_a_recipe_shown_in_prune_keeps_the_settings_no_widget_shows(prune):
    """An uploaded or recommended recipe with batch_size 32 and 10 checks an epoch ran with 64 and 5: no widget
    holds them, and the widgets made the recipe again."""
    from pages._prune_state import prune_widget_state
    from pruner_core.pruning.recipe import Recipe

    recipe = Recipe.from_dict({"finetune": {"batch_size": 32, "checks_per_epoch": 10, "temperature": 2.0, "epochs": 2}})
    for key, value in prune_widget_state(recipe).items():  # what show_in_prune leaves, with what no widget shows
        prune.session_state[key] = value
    prune.session_state["prune.finetune_rest"] = {"batch_size": 32, "checks_per_epoch": 10, "temperature": 2.0,
                                                  "alpha": 0.5}
    at = prune.run()
    shown = Recipe.from_yaml(at.code[0].value)
    assert (shown.finetune.batch_size, shown.finetune.checks_per_epoch, shown.finetune.temperature) == (32, 10, 2.0)
    assert shown.finetune.epochs == 2


def test_a_layer_the_granularity_skips_says_why_in_a_few_words_and_in_full_below(prune):
    at = prune.selectbox(key="prune.granularity").set_value("kernel").run()
    assert not at.exception
    notes = table(at, "prune")["note"]
    assert notes["conv1"] == "depthwise" and notes["fc1"] == "2-D weight" and notes["conv2"] == ""  # the cell fits
    legend = next(c.value for c in at.caption if c.value.startswith("Not applicable because"))
    assert "**depthwise**: each filter reads one input channel (a depthwise or single-channel convolution)" in legend
    assert "**2-D weight**: Linear weights have no kernels (use unstructured, nm or channel) — `fc1`, `fc2`" in legend


def test_under_n_m_each_ratio_cell_holds_n_m_share_and_is_no_override(prune):
    at = prune.selectbox(key="prune.granularity").set_value("nm").run()
    assert not at.exception
    settings = table(at, "prune")
    assert list(settings["ratio"]) == [0.0, 0.5, 0.5, 0.5]  # 2:4 removes half; conv1 (1 input channel) is not prunable
    assert list(settings["prune"]) == [False, True, True, False]  # it does not look prunable; fc2 is the classifier
    assert "layers: {}\nexclude: null" in at.code[0].value  # no override, and the default exclusion (portable)
    editor = next(e for e in at.data_editor if "prune" in e.value.columns)
    assert json.loads(editor.proto.columns)["ratio"]["disabled"] is True  # N:M has no ratio per layer to set


def test_tables_localize_counts_fix_percentages_and_pin_whole_layer_names(app):
    app.selectbox(key="model.demo").set_value("resnet20")
    at = app.button(key="model.load").click().run()
    at = at.switch_page("pages/prune.py").run()
    assert not at.exception
    preview = next(df for df in at.dataframe if "non-zero FLOPs" in df.value.columns)
    config = json.loads(preview.proto.columns)
    for column in ("params before", "params after", "FLOPs before", "FLOPs after (dense)", "non-zero FLOPs"):
        assert config[column]["type_config"]["format"] == "localized", column  # 18,496 as on the Model page
    assert config["removed"]["type_config"]["format"] == "%.1f%%"  # 45.0% and 49.8%, not 45% beside 49.83%
    assert config["layer"]["pinned"] is True and config["layer"]["width"] == "medium"  # layer2.0.shortcut.0 whole
    removed = preview.value.set_index("layer")["removed"]
    assert 40 < removed["layer1.0.conv1"] < 60  # in percent, as the format writes it
    editor = json.loads(next(e for e in at.data_editor if "prune" in e.value.columns).proto.columns)
    assert editor["layer"]["pinned"] is True and editor["params"]["type_config"]["format"] == "localized"
    assert at.code[0].proto.wrap_lines  # the recipe wraps instead of scrolling sideways


def test_pickers_show_the_short_name_with_the_descriptions_in_their_help(prune):
    from pruner_core.config.options import OPTIMIZERS
    from pruner_core.pruning.granularities import GRANULARITIES

    granularity = prune.selectbox(key="prune.granularity")
    assert granularity.options == list(GRANULARITIES)  # "kernel", not "kernel — whole k x k kernels W[o, i, :, ...…"
    assert "- **kernel**: whole k x k kernels W[o, i, :, :]" in granularity.help
    assert all(" — " not in o for key in ("prune.criterion", "prune.optimizer", "prune.augment")
               for o in prune.selectbox(key=key).options)
    assert "**l1**: L1 norm of the weights in each group" in prune.selectbox(key="prune.criterion").help
    assert all(f"**{name}**: {text}" in prune.selectbox(key="prune.optimizer").help for name, text in OPTIMIZERS.items())


def test_the_int8_toggle_puts_the_quantize_section_in_the_recipe_and_a_loaded_one_is_kept(prune):
    from pages._prune_state import prune_widget_state
    from pruner_core.pruning.recipe import Recipe

    assert Recipe.from_yaml(prune.code[0].value).quantize.kind == "none"
    at = prune.toggle(key="prune.int8").set_value(True).run()
    assert not at.exception
    assert Recipe.from_yaml(at.code[0].value).quantize.kind == "int8_static"  # the run will end with INT8
    recipe = Recipe.from_dict({"quantize": {"kind": "int8_dynamic", "exclude": ["fc2"], "method": "entropy"}})
    for key, value in prune_widget_state(recipe).items():  # what show_in_prune leaves
        at.session_state[key] = value
    at.session_state["prune.quantize_rest"] = recipe.to_dict()["quantize"]
    shown = Recipe.from_yaml(at.run().code[0].value).quantize
    assert (shown.kind, shown.exclude, shown.method) == ("int8_dynamic", ["fc2"], "entropy")


def test_a_run_started_with_an_mlflow_uri_is_logged_there_too(prune, runs_root, tmp_path, monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path)  # the sqlite store keeps its artifacts in ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    prune.number_input(key="prune.epochs").set_value(0.05)
    at = prune.text_input(key="prune.mlflow").set_value(uri).run()
    at = at.button(key="prune.run").click().run()
    job = wait_for_job(at, "prune.job")
    assert job.state == "done", job.error
    mlflow.set_tracking_uri(uri)
    found = mlflow.search_runs(experiment_names=["pruning-explorer"])
    assert len(found) == 1
    row = found.iloc[0]
    assert row["tags.pruner.run_folder"] == str(job.result.path) and row["params.finetune.epochs"] == "0.05"
    assert row["params.base.data"] == "demo:mnist5k" and row["metrics.final.accuracy"] == job.result.metrics["accuracy"]
