"""Netron servers of real ONNX files: loopback HTTP, one server per file, ports freed, a taken port avoided."""

from __future__ import annotations

import os
import re
import shutil
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from torch import nn

from pruner_core.config.text import format_bytes
from pruner_core.errors import PrunerError
from pruner_core.frontends import netron_server as netron_view
from pruner_core.io.export import OPSET, ensure_onnx
from pruner_core.io.models import load_model


@pytest.fixture(scope="module")
def cnn_onnx(tmp_path_factory) -> Path:
    """The demo mnist-cnn exported as ONNX, as the Graph page exports it."""
    cnn = load_model("demo:mnist-cnn")
    return ensure_onnx(cnn.module, cnn.input_shape, tmp_path_factory.mktemp("cnn"))


@pytest.fixture(scope="module")
def mlp_onnx(tmp_path_factory) -> Path:
    """Another model, also saved as ``model.onnx``, so that two servers must tell their files apart."""
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(16, 4), nn.ReLU(), nn.Linear(4, 2))
    return ensure_onnx(mlp, (16,), tmp_path_factory.mktemp("mlp"))


@pytest.fixture(autouse=True)
def no_servers_left():
    """Every test starts and ends with no Netron server running."""
    netron_view.stop_all()
    yield
    netron_view.stop_all()


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200
        return r.read()


def refused(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_serves_the_file_and_netrons_web_app_on_loopback(cnn_onnx):
    server = netron_view.serve(cnn_onnx)
    assert server.host == "127.0.0.1" and server.url == f"http://127.0.0.1:{server.port}"
    assert server.alive
    page = get(server.url).decode()
    assert '<meta name="file" content="/data/model.onnx">' in page  # netron opens this file on load
    assert get(f"{server.url}/data/model.onnx") == cnn_onnx.read_bytes()
    # offline: every script and stylesheet of the web app comes from this server, none from a CDN
    sources = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', page)
    assert sources and not [s for s in sources if re.match(r"^(https?:)?//", s)]
    for source in sources:
        assert get(f"{server.url}/{source.lstrip('./')}")


def test_the_same_file_gets_the_same_server(cnn_onnx):
    first = netron_view.serve(cnn_onnx)
    spelled_otherwise = cnn_onnx.parent / ".." / cnn_onnx.parent.name / cnn_onnx.name
    assert netron_view.serve(spelled_otherwise) is first
    assert netron_view.serve(str(cnn_onnx), port=first.port + 1) is first  # a port is only a preference
    assert netron_view.running() == [first]


def test_two_files_get_two_servers_each_serving_its_own(cnn_onnx, mlp_onnx):
    cnn, mlp = netron_view.serve(cnn_onnx), netron_view.serve(mlp_onnx)
    assert cnn.port != mlp.port
    assert get(f"{cnn.url}/data/model.onnx") == cnn_onnx.read_bytes()
    assert get(f"{mlp.url}/data/model.onnx") == mlp_onnx.read_bytes()


def test_a_file_changed_on_disk_gets_a_fresh_server(tmp_path, mlp_onnx):
    path = tmp_path / "model.onnx"
    shutil.copyfile(mlp_onnx, path)
    old = netron_view.serve(path)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    new = netron_view.serve(path)
    assert new is not old and new.alive and not old.alive
    assert netron_view.running() == [new]


def test_stop_frees_the_port(cnn_onnx):
    server = netron_view.serve(cnn_onnx)
    assert netron_view.stop(cnn_onnx) is True
    assert not server.alive and refused(server.port)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", server.port))  # free for anyone again
    assert netron_view.stop(cnn_onnx) is False
    assert netron_view.server_of(cnn_onnx) is None
    assert netron_view.serve(cnn_onnx) is not server  # asked again: a new server


def test_a_taken_port_makes_it_pick_another(cnn_onnx):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = netron_view.serve(cnn_onnx, port=port)
        assert server.port != port
        assert get(f"{server.url}/data/model.onnx") == cnn_onnx.read_bytes()


def test_a_free_port_asked_for_is_used(cnn_onnx):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert netron_view.serve(cnn_onnx, port=port).port == port


def test_release_stops_only_the_servers_no_owner_shows(cnn_onnx, mlp_onnx):
    cnn = netron_view.serve(cnn_onnx, owner="a")
    netron_view.serve(cnn_onnx, owner="b")
    mlp = netron_view.serve(mlp_onnx, owner="a")
    assert netron_view.release("a", keep=[mlp_onnx]) == []  # b still shows the cnn
    assert cnn.alive and cnn.owners == {"b"}
    assert netron_view.release("b") == [cnn_onnx.resolve()]
    assert not cnn.alive and refused(cnn.port)
    assert mlp.alive and mlp.owners == {"a"}
    assert netron_view.release("a") == [mlp_onnx.resolve()]
    assert netron_view.running() == []


def test_servers_without_owners_wait_for_stop(cnn_onnx):
    server = netron_view.serve(cnn_onnx)
    assert netron_view.release("anyone") == []
    assert server.alive


def test_stop_all_stops_every_server(cnn_onnx, mlp_onnx):
    servers = [netron_view.serve(cnn_onnx), netron_view.serve(mlp_onnx, owner="x")]
    assert netron_view.stop_all() == 2
    assert netron_view.running() == []
    assert all(not s.alive and refused(s.port) for s in servers)
    assert netron_view.stop_all() == 0


def test_servers_beyond_the_limit_are_stopped_unclaimed_and_oldest_first(tmp_path, mlp_onnx, monkeypatch):
    monkeypatch.setattr(netron_view, "MAX_SERVERS", 2)
    paths = []
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
        paths.append(Path(shutil.copy(mlp_onnx, tmp_path / name / "model.onnx")))
    claimed = netron_view.serve(paths[0], owner="x")
    unclaimed = netron_view.serve(paths[1])
    newest = netron_view.serve(paths[2])
    assert not unclaimed.alive
    assert netron_view.running() == [claimed, newest]


def test_a_missing_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(PrunerError, match=r"nothing\.onnx"):
        netron_view.serve(tmp_path / "nothing.onnx")
    with pytest.raises(PrunerError, match="not a file"):
        netron_view.serve(tmp_path)
    assert netron_view.running() == []


def test_onnx_file_reads_size_and_opset(cnn_onnx, tmp_path):
    info = netron_view.onnx_file(cnn_onnx)
    assert info.bytes == cnn_onnx.stat().st_size
    assert info.opset == OPSET
    assert info.caption == f"model.onnx, {format_bytes(info.bytes)}, opset {OPSET}"
    (tmp_path / "junk.onnx").write_bytes(b"\x00not onnx at all" * 10)
    with pytest.raises(PrunerError, match="junk.onnx' is not an ONNX model"):
        netron_view.onnx_file(tmp_path / "junk.onnx")
    with pytest.raises(PrunerError, match="missing.onnx"):
        netron_view.onnx_file(tmp_path / "missing.onnx")


@pytest.mark.parametrize(("n", "text"), [(0, "0 B"), (999, "999 B"), (1000, "1.0 kB"), (1_688_117, "1.7 MB"),
                                         (3 * 10**9, "3.0 GB")])
def test_human_bytes(n, text):
    assert format_bytes(n) == text


def test_urls_are_not_reachable_after_stop(cnn_onnx):
    server = netron_view.serve(cnn_onnx)
    netron_view.stop_all()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(server.url, timeout=2)


def test_netron_is_served_with_its_outside_requests_turned_off():
    """Netron asks ipinfo.io for a cookie banner, sends Google Analytics beacons and, months after its release,
    opens github.com to nag for an update: each patch must still apply to the installed netron."""
    import netron

    from pruner_core.frontends.netron_server import OFFLINE_PATCHES, offline_script

    folder = Path(netron.__file__).parent
    for path, patches in OFFLINE_PATCHES.items():
        original = (folder / path.lstrip("/")).read_text(encoding="utf-8")
        served = offline_script(path).decode("utf-8")
        for old, new in patches:
            assert old in original, f"netron {netron.__version__} changed {path}: the patch for {old[:40]!r} is stale"
            assert old not in served and new in served
    assert "sendBeacon(" not in offline_script("/base.js").decode()


def test_the_served_scripts_are_the_patched_ones(tmp_path):
    import urllib.request

    from pruner_core.frontends import netron_server

    model = tmp_path / "m.onnx"
    model.write_bytes(b"\x08\x07")  # any bytes: only the scripts are fetched here
    view = netron_server.serve(model)
    try:
        with urllib.request.urlopen(f"{view.url}/base.js", timeout=10) as response:
            assert b"void url, void body;" in response.read()
            assert response.headers["Content-Type"] == "text/javascript"
        with urllib.request.urlopen(f"{view.url}/index.html", timeout=10) as response:
            assert b"<html" in response.read()[:500].lower()
    finally:
        netron_server.stop(model)
