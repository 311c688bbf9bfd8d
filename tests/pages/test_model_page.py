"""The Model page, driven as a user would: demo vital signs, switching models, bad files."""

from __future__ import annotations

import json

from pages._common import DEFAULT_MODEL
from pruner_core.io.data import ASSETS
from pruner_core.io.models import MODELS_DIR
from tests.pages.helpers import errors, load_path, metric, table


def test_sidebar_names_active_model_and_data(app):
    # AppTest drops the sidebar on reruns under st.navigation; the browser test checks it after a switch.
    assert [m.value for m in app.sidebar.markdown] == ["**demo:mnist-cnn**", "**demo:mnist5k**"]


def test_opens_on_demo_with_measured_vital_signs(app):
    card = json.loads((MODELS_DIR / "mnist-cnn.json").read_text())
    assert app.session_state["active.model"] == DEFAULT_MODEL
    assert metric(app, "Parameters") == "421,834"  # the classic 421,642 + 192 BatchNorm
    assert metric(app, "Test accuracy") == f"{card['test_accuracy']:.2%}"
    assert card["test_accuracy"] >= 0.985
    how = next(c.value for c in app.main.caption if c.value.startswith("Measured:"))
    assert "runs" in how and "thread" in how and "CPU" in how  # latency says how it was measured
    layers = table(app, "parameters")
    assert list(layers["layer"]) == ["conv1", "conv2", "fc1", "fc2"]
    assert list(layers["parameters"]) == [320, 18496, 401536, 1290]
    assert layers["FLOPs"].tolist()[1] == 2 * 64 * 32 * 3 * 3 * 14 * 14  # conv2 runs on 14x14 after pooling
    prun = table(app, "unstructured").set_index("layer")
    assert prun.loc["conv2", "channel"] == "yes"
    assert prun.loc["fc2", "channel"] == "no: output layer"  # short cells; each reason in full below the table
    assert prun.loc["conv1", "kernel"] == "no: depthwise" and prun.loc["conv1", "nm"] == "no: not a multiple of 4"
    legend = next(m.value for m in app.main.markdown if "**no: depthwise** (kernel)" in m.value)
    assert "removing it removes the output channel (use channel or unstructured) — `conv1`" in legend
    assert "**no: output layer** (channel): its outputs are the model's outputs (the classes) — `fc2`" in legend
    assert "1 input channels is not a multiple of M=4" in legend
    reach = next(c.value for c in app.main.caption if c.value.startswith("Pruning reaches"))
    assert reach.startswith("Pruning reaches 421,408 of the 421,834 parameters (99.9%)")  # conv and fc weights
    assert "Biases and norm parameters (426, 0.1%) are never pruned" in reach
    assert not app.error


def test_switching_demo_model_updates_figures_and_sidebar(app):
    app.selectbox(key="model.demo").set_value("resnet20")
    app.button(key="model.load").click().run()
    assert not app.exception and not app.error
    assert app.session_state["active.model"]["spec"] == "demo:resnet20"
    assert metric(app, "Parameters") == "272,186"
    groups = table(app, "size")
    stage1 = groups[groups["layers"].str.contains("layer1.0.conv2")].iloc[0]["layers"].split(", ")
    assert set(stage1) == {"conv1", "layer1.0.conv2", "layer1.1.conv2", "layer1.2.conv2"}


def test_corrupt_model_file_is_refused_and_nothing_is_lost(app, user_files):
    load_path(app, user_files["corrupt_model"])
    assert not app.exception
    assert "broken.pt" in errors(app)
    assert app.session_state["active.model"] == DEFAULT_MODEL  # the previous model stays active
    assert metric(app, "Parameters") == "421,834"


def test_state_dict_with_architecture_loads(app, user_files):
    load_path(app, user_files["state_dict"], arch="mnist-cnn")
    assert not app.exception and not app.error
    assert app.session_state["active.model"] == {
        "spec": "demo:mnist-cnn", "weights": str(user_files["state_dict"]), "trust": False,
    }
    assert metric(app, "Parameters") == "421,834"


def test_state_dict_with_wrong_architecture_names_key_and_shapes(app, user_files):
    load_path(app, user_files["state_dict"], arch="lenet300")
    msg = errors(app)
    assert "lenet300" in msg and "fc1.weight" in msg and "(300, 784)" in msg


def test_state_dict_without_architecture_says_how(app, user_files):
    load_path(app, user_files["state_dict"])
    assert "demo:NAME" in errors(app)


def test_pickled_module_needs_trust(app, user_files):
    load_path(app, user_files["pickled"])
    assert "trust" in errors(app).lower()
    assert app.session_state["active.model"] == DEFAULT_MODEL
    load_path(app, user_files["pickled"], trust=True)
    assert not app.error and not app.exception
    assert app.warning  # trusting shows a warning
    assert app.session_state["active.model"]["spec"] == str(user_files["pickled"])
    assert metric(app, "Parameters") == "421,834"


def test_torchscript_is_mask_only(app, user_files):
    load_path(app, user_files["torchscript"])
    assert not app.error and not app.exception
    assert any("cannot be physically removed" in i.value for i in app.info)
    prun = table(app, "unstructured").set_index("layer")
    assert (prun["channel"] == "no: program (mask only)").all()
    assert any("TorchScript / torch.export programs cannot have channels physically removed" in m.value
               for m in app.main.markdown)
    assert (prun["unstructured"] == "yes").all()


def test_data_of_wrong_shape_is_refused(app, user_files):
    load_path(app, data_path=user_files["wrong_shape_data"])
    msg = errors(app)
    assert "(3, 32, 32)" in msg and "(1, 28, 28)" in msg
    assert app.session_state["active.data"] == "demo:mnist5k"


def test_labels_outside_model_classes_are_refused(app, user_files):
    load_path(app, data_path=user_files["bad_labels_data"])
    msg = errors(app)
    assert "label 12" in msg and "10 classes" in msg


def test_empty_zip_is_refused(app, user_files):
    load_path(app, data_path=user_files["empty_zip"])
    assert "holds no images" in errors(app)
    assert not app.exception


def test_missing_model_file_is_named(app, tmp_path):
    load_path(app, tmp_path / "nowhere.pt")
    assert "nowhere.pt" in errors(app) and "does not exist" in errors(app)


def test_the_active_model_is_kept_in_the_address_so_a_refresh_reopens_it(app):
    from streamlit.testing.v1 import AppTest

    from tests.pages.conftest import APP

    assert "model" not in app.query_params  # the demo: a clean address
    app.selectbox(key="model.demo").set_value("lenet300")
    at = app.button(key="model.load").click().run()
    assert at.query_params["model"] == "demo:lenet300" and at.query_params["data"] == "demo:mnist5k"
    refreshed = AppTest.from_file(APP, default_timeout=120)  # a new session at that address (a refresh, a link)
    refreshed.query_params.update({"model": "demo:lenet300", "data": "demo:mnist5k"})
    refreshed = refreshed.run()
    assert not refreshed.exception and not refreshed.error
    assert refreshed.session_state["active.model"]["spec"] == "demo:lenet300"
    assert metric(refreshed, "Parameters") == "266,610"


def test_an_address_naming_code_or_a_bad_file_keeps_the_demo_and_says_why(tmp_path):
    from streamlit.testing.v1 import AppTest

    from tests.pages.conftest import APP

    for spec, why in (("os:getcwd", "factory 'os:getcwd' is not allowed here"),
                      (str(tmp_path / "nowhere.pt"), "does not exist")):
        at = AppTest.from_file(APP, default_timeout=120)
        at.query_params.update({"model": spec})
        at = at.run()
        assert not at.exception
        assert at.session_state["active.model"] == DEFAULT_MODEL
        assert any("The address names a model this server cannot open" in e.value and why in e.value for e in at.error)


def test_the_demo_picker_shows_names_with_the_descriptions_in_its_help(app):
    from pruner_core.io.archs import ARCHITECTURES

    picker = app.selectbox(key="model.demo")
    assert picker.options == list(ARCHITECTURES)  # the name, not "resnet20 — ResNet-20 with BatchNorm and resi…"
    assert f"- **resnet20**: {ARCHITECTURES['resnet20'].description}" in picker.help


def test_an_image_folder_loads_with_the_preprocessing_picked_beside_it(app, tmp_path):
    """A folder of 32x32 colour digits fits the 28x28 grey demo CNN only once the picker says grey and 28."""
    import numpy as np
    from PIL import Image

    digits = np.load(ASSETS / "mnist5k.npz")
    for i in range(100):
        img = np.pad(digits["x"][i, 0], 2)[..., None] * np.array([1.0, 0.8, 0.6])
        folder = tmp_path / "colour" / str(int(digits["y"][i]))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.astype(np.uint8), "RGB").save(folder / f"{i}.png")
    load_path(app, data_path=tmp_path / "colour")
    assert "(3, 32, 32)" in errors(app) and "(1, 28, 28)" in errors(app)
    app.number_input(key="model.size").set_value(32)
    app.number_input(key="model.resize").set_value(16)
    app.button(key="model.load").click().run()
    assert "resize 16 is smaller than size 32" in errors(app)
    assert app.session_state["active.data"] == "demo:mnist5k"  # nothing lost
    app.number_input(key="model.size").set_value(28)
    app.number_input(key="model.resize").set_value(32)  # the centre, not resized: the digits as MNIST has them
    app.selectbox(key="model.channels").set_value("grey")
    app.button(key="model.load").click().run()
    assert not errors(app) and not app.exception
    assert app.session_state["active.data"] == f"{tmp_path / 'colour'}|size=28,resize=32,channels=grey"
    assert "with colour · size=28,resize=32,channels=grey." in " ".join(m.value for m in app.success)  # sidebar's name
    assert float(metric(app, "Test accuracy").rstrip("%")) > 50  # the digits, read as the demo CNN takes them


def test_an_address_carries_the_datas_preprocessing_and_load_keeps_a_custom_mean_the_picker_does_not_show():
    from streamlit.testing.v1 import AppTest

    from tests.pages.conftest import APP

    spec = "demo:mnist5k|mnist,mean=0.2"
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update({"model": "demo:mnist-cnn", "data": spec})
    at = at.run()
    assert not at.exception and not at.error
    assert at.session_state["active.data"] == spec
    assert at.selectbox(key="model.preset").value == "mnist"  # the picker starts from the active data's
    at = at.button(key="model.load").click().run()
    assert at.session_state["active.data"] == spec  # its mean survives a Load with the preset unchanged
    at.selectbox(key="model.preset").set_value("unit")
    at = at.button(key="model.load").click().run()
    assert at.session_state["active.data"] == "demo:mnist5k"  # another preset: its own mean and std
