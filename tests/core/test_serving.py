"""What a browser visitor may ask of the server: factory specs only from allowed modules, paths only when safe."""

from __future__ import annotations

import sys

import pytest
from torch import nn

from pruner_core.errors import SpecError
from pruner_core.frontends.serving import SHARED_UPLOAD_MB, Exposure, is_loopback, parse_modules
from pruner_core.io.models import allow_factories, load_model
from pruner_core.pipeline.replay import load_run_model
from pruner_core.pipeline.runs import create_run, finish_run
from pruner_core.pruning.recipe import Recipe


@pytest.mark.parametrize(("address", "loopback"), [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True), ("localhost", True), ("LOCALHOST", True),
    ("0.0.0.0", False), ("::", False), ("", False), (None, False), ("192.168.1.5", False), ("myhost.example", False),
])
def test_loopback_is_only_this_machine(address, loopback):
    assert is_loopback(address) is loopback
    assert Exposure(address).shared is not loopback


def test_factory_module_list_is_parsed_and_checked():
    assert parse_modules("a.models, b  a.models,c") == ("a.models", "b", "c")
    assert parse_modules(None) == parse_modules("  ") == ()
    with pytest.raises(SpecError, match=r"'os:abort' in PRUNER_FACTORIES is not a module name"):
        parse_modules("mypkg os:abort")


@pytest.mark.parametrize("spec", ["os:getcwd", "os:abort", "_thread:interrupt_main", "this:x"])
def test_a_narrowed_process_refuses_other_factories_before_importing(spec, probe):
    name, marker = probe
    allow_factories([name])
    with pytest.raises(SpecError, match=rf"factory '{spec}' is not allowed here: this app calls factories only from {name}"):
        load_model(spec)
    allow_factories(())
    with pytest.raises(SpecError, match=rf"'{probe[0]}:make' is not allowed here: .* from no module; to allow '{name}'"):
        load_model(f"{name}:make")
    assert not marker.exists()  # refused without importing
    assert name not in sys.modules


def test_an_allowed_factory_module_loads(probe):
    name, marker = probe
    allow_factories([name])
    model = load_model(f"{name}:make")
    assert model.fmt == "factory" and isinstance(model.module, nn.Module)
    assert marker.exists()
    allow_factories(None)  # the library default: any (the command line is its user's own)
    assert load_model("pruner_core.io.archs:LeNet300").fmt == "factory"


def test_a_run_folder_cannot_bring_a_factory_past_the_allow_list(tmp_path, probe):
    name, marker = probe
    module = load_model(f"{name}:make").module
    marker.unlink()
    sys.modules.pop(name, None)
    run = create_run(tmp_path, {"spec": f"{name}:make", "input_shape": [1, 28, 28]}, Recipe())
    finish_run(run, state_dict=module.state_dict(), metrics={})
    assert load_run_model(run.path).fmt == "run"  # fine for the command line
    marker.unlink()
    sys.modules.pop(name, None)
    allow_factories(())
    with pytest.raises(SpecError, match=rf"factory '{name}:make' is not allowed here"):
        load_run_model(run.path)
    with pytest.raises(SpecError, match="not allowed here"):
        load_model(str(run.path))
    assert not marker.exists()


def test_paths_are_taken_as_typed_on_loopback_and_off_when_shared_without_a_folder(tmp_path):
    assert Exposure("127.0.0.1").paths_allowed
    assert Exposure("127.0.0.1").resolve_path(" /etc/passwd ") == "/etc/passwd"
    shared = Exposure("0.0.0.0")
    assert not shared.paths_allowed
    with pytest.raises(SpecError, match=r"paths on the server are off: .*make run PATHS=DIR"):
        shared.resolve_path(str(tmp_path))


def test_a_shared_app_reads_only_under_its_folder(tmp_path):
    root = tmp_path / "served"
    (root / "models").mkdir(parents=True)
    (root / "models" / "m.pt").write_bytes(b"x")
    outside = tmp_path / "secret.pt"
    outside.write_bytes(b"s")
    (root / "escape.pt").symlink_to(outside)
    shared = Exposure.from_env("0.0.0.0", env={"PRUNER_PATH_ROOT": str(root)})
    assert shared.paths_allowed and shared.path_root == root.resolve()
    assert shared.resolve_path("models/m.pt") == str(root.resolve() / "models" / "m.pt")
    assert shared.resolve_path(str(root / "models" / "m.pt")) == str(root.resolve() / "models" / "m.pt")
    for bad in ("../secret.pt", str(outside), "escape.pt", "/etc/passwd", "models/../../secret.pt"):
        with pytest.raises(SpecError, match=rf"'{bad}' is outside the folder this app serves; give a path under"):
            shared.resolve_path(bad)


def test_start_up_settings_are_checked(tmp_path):
    with pytest.raises(SpecError, match=r"PRUNER_PATH_ROOT='.*nowhere' is not a folder"):
        Exposure.from_env("0.0.0.0", env={"PRUNER_PATH_ROOT": str(tmp_path / "nowhere")})
    exp = Exposure.from_env("127.0.0.1", env={"PRUNER_FACTORIES": "mypkg.models"})
    assert exp.factories == ("mypkg.models",) and exp.path_root is None


def test_a_shared_app_has_the_smaller_upload_limit():
    assert Exposure("127.0.0.1", server_upload_mb=1024).upload_mb == 1024
    assert Exposure("0.0.0.0", server_upload_mb=1024).upload_mb == SHARED_UPLOAD_MB == 200
    assert Exposure("0.0.0.0", server_upload_mb=50).upload_mb == 50
    Exposure("0.0.0.0", server_upload_mb=1).check_upload("ok.npz", 2**20)
    with pytest.raises(SpecError, match=r"'big.npz' is 1.5 MB; this app accepts uploads up to 1 MB"):
        Exposure("0.0.0.0", server_upload_mb=1).check_upload("big.npz", 3 * 2**19)

