"""The Model page as a visitor from elsewhere would drive it: no factory runs unless allowed, paths only when safe."""

from __future__ import annotations

import sys

import pytest
import torch
from streamlit import config
from streamlit.testing.v1 import AppTest

from pages._common import DEFAULT_MODEL
from pruner_core.io.archs import ARCHITECTURES
from tests.pages.conftest import APP
from tests.pages.helpers import errors, load_path, metric

PATH = "Path on this machine"


@pytest.fixture
def listening_on():
    """Make the app believe it listens on an address (as ``--server.address`` would); restored afterwards."""
    before = config.get_option("server.address")

    def set_address(address: str) -> None:
        config.set_option("server.address", address)

    yield set_address
    config.set_option("server.address", before)


def open_app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception
    return at


@pytest.mark.parametrize("spec", ["os:getcwd", "os:abort", "_thread:interrupt_main", "this:x", "probe"])
def test_a_factory_typed_into_the_path_box_is_refused_without_importing(app, probe, spec):
    name, marker = probe
    spec = f"{name}:make" if spec == "probe" else spec
    load_path(app, spec)
    assert not app.exception
    assert f"factory '{spec}' is not allowed here" in errors(app) and "FACTORIES=" in errors(app)
    assert not marker.exists() and name not in sys.modules
    assert app.session_state["active.model"] == DEFAULT_MODEL  # nothing lost
    assert metric(app, "Parameters") == "421,834"


def test_a_factory_from_a_module_named_at_start_up_loads(probe, monkeypatch):
    name, marker = probe
    monkeypatch.setenv("PRUNER_FACTORIES", name)
    at = open_app()
    load_path(at, f"{name}:make")
    assert not at.exception and not at.error
    assert marker.exists()
    assert at.session_state["active.model"]["spec"] == f"{name}:make"
    assert metric(at, "Parameters") == f"{784 * 10 + 10:,}"
    load_path(at, "os:getcwd")  # still only that module
    assert f"only from {name}" in errors(at)


def test_the_app_listens_on_loopback_unless_told_otherwise(app):
    assert config.get_option("server.address") == "127.0.0.1"  # .streamlit/config.toml, for any streamlit run
    assert PATH in app.radio(key="model.source").options
    assert not any("This app is shared" in c.value for c in app.caption)


def test_a_shared_app_offers_no_server_paths(listening_on):
    listening_on("0.0.0.0")
    at = open_app()
    assert PATH not in at.radio(key="model.source").options
    assert PATH not in at.radio(key="model.data_source").options
    shared = next(c.value for c in at.caption if "This app is shared" in c.value)
    assert "0.0.0.0" in shared and "paths on the server are off" in shared and "uploads up to 200 MB" in shared
    at.radio(key="model.source").set_value("Upload a file").run()
    assert "up to 200 MB" in at.get("file_uploader")[0].proto.help


def test_a_shared_app_with_a_folder_reads_only_under_it(listening_on, monkeypatch, tmp_path, user_files):
    served = tmp_path / "served"
    served.mkdir()
    torch.save(ARCHITECTURES["mnist-cnn"].build().state_dict(), served / "mine.pt")
    monkeypatch.setenv("PRUNER_PATH_ROOT", str(served))
    listening_on("0.0.0.0")
    at = open_app()
    assert PATH in at.radio(key="model.source").options
    assert f"paths are read only under {served.resolve()}" in next(c.value for c in at.caption if "shared" in c.value)
    load_path(at, user_files["state_dict"], arch="mnist-cnn")  # exists, but outside the folder
    assert "is outside the folder this app serves" in errors(at)
    assert at.session_state["active.model"] == DEFAULT_MODEL
    load_path(at, "../" + user_files["state_dict"].name, arch="mnist-cnn")
    assert "is outside the folder" in errors(at)
    load_path(at, "mine.pt", arch="mnist-cnn")  # relative to the folder
    assert not at.error and not at.exception
    assert at.session_state["active.model"]["weights"] == str(served.resolve() / "mine.pt")
    at.radio(key="model.data_source").set_value(PATH).run()
    at.text_input(key="model.data_path").set_value("/etc/passwd")
    at.button(key="model.load").click().run()
    assert "'/etc/passwd' is outside the folder" in errors(at)
    assert at.session_state["active.data"] == "demo:mnist5k"


def test_a_bad_start_up_setting_stops_the_app_with_its_name(monkeypatch, tmp_path):
    monkeypatch.setenv("PRUNER_FACTORIES", "mypkg os:abort")
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception
    assert "started with a bad setting" in errors(at) and "'os:abort' in PRUNER_FACTORIES" in errors(at)
    assert not at.metric
