"""Browser tests: Playwright driving Debian's Chromium against a real ``streamlit run`` on a loopback port.

Every test here is marked ``e2e``. One Streamlit server is shared by the session (``app_url``); every
test gets its own browser context and page, in which every non-loopback request is blocked.
Screenshots go to ``test-output/e2e/`` (``screenshot_dir``).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import write_probe

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
OUTPUT_DIR = REPO / "test-output" / "e2e"
SERVER_START_TIMEOUT_S = 90
NOT_LOOPBACK = re.compile(r"^https?://(?!127\.0\.0\.1|localhost)")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test collected from this folder (and only those) as ``e2e``."""
    for item in items:
        if Path(item.path).resolve().is_relative_to(HERE):
            item.add_marker(pytest.mark.e2e)


def find_chromium() -> str | None:
    """The system Chromium: /usr/bin/chromium, else whatever ``chromium``/``chromium-browser`` is on PATH."""
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    """pytest-playwright's launch options (``--headed``, ``--slowmo`` ...) plus the system Chromium."""
    executable = find_chromium()
    if executable is None:
        message = (
            "the browser tests need Chromium and none was found (/usr/bin/chromium, chromium, chromium-browser); "
            "install it with `apt-get install chromium` (or `make chromium`); `playwright install` cannot download"
            " browsers here"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return {**browser_type_launch_args, "executable_path": executable, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict) -> dict:
    """A window wide enough for the six vital-sign metrics of the wide layout in one row."""
    return {**browser_context_args, "viewport": {"width": 1440, "height": 1000}}


@pytest.fixture
def context(new_context):
    """A fresh browser context per test in which every request not to the loopback server is aborted."""
    ctx = new_context()
    ctx.route(NOT_LOOPBACK, lambda route: route.abort())
    return ctx


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200 and r.read().decode().strip() == "ok"
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    """``<repo>/test-output/e2e/``, created if missing."""
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    return OUTPUT_DIR


@pytest.fixture(scope="session")
def e2e_runs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The server's runs folder (``$PRUNER_RUNS``): tests may save runs here for the pages to find."""
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="session")
def server_probe(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A module importable by the server (on its ``PYTHONPATH``) that leaves a marker file when imported:
    (its name, the marker's path). The server is started with no factory allowed, so it must never appear."""
    folder = tmp_path_factory.mktemp("probe")
    name = write_probe(folder)
    return name, folder / f"{name}.imported"


@pytest.fixture(scope="session")
def app_url(screenshot_dir: Path, e2e_runs_root: Path, server_probe: tuple[str, Path]) -> Iterator[str]:
    """Start ``streamlit run app.py`` on a free loopback port, wait until healthy, yield its URL, stop it.

    Its pruning runs go to a temporary folder (``$PRUNER_RUNS``, see ``e2e_runs_root``), never to the
    repository's ``runs/``. Its ``PYTHONPATH`` holds ``server_probe``'s module; no factory is allowed.
    """
    port = _free_port()
    log_path = screenshot_dir / "streamlit-server.log"
    cmd = [
        sys.executable, "-m", "streamlit", "run", "app.py",
        "--server.headless", "true",
        "--server.address", "127.0.0.1",
        "--server.port", str(port),
        "--browser.gatherUsageStats", "false",
        # Others may edit the sources while the tests run: no "source changed" banners or reruns.
        "--server.fileWatcherType", "none",
    ]
    probe_dir = str(server_probe[1].parent)
    python_path = os.pathsep.join(p for p in (probe_dir, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PRUNER_RUNS": str(e2e_runs_root), "PYTHONPATH": python_path}
    env.pop("PRUNER_FACTORIES", None)
    with log_path.open("w+b") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        try:
            health = f"http://127.0.0.1:{port}/_stcore/health"
            deadline = time.monotonic() + SERVER_START_TIMEOUT_S
            while not _healthy(health):
                if proc.poll() is not None or time.monotonic() > deadline:
                    why = f"exited with code {proc.returncode}" if proc.poll() is not None else (
                        f"did not answer 'ok' at {health} within {SERVER_START_TIMEOUT_S} s")
                    log.flush()
                    pytest.fail(f"the Streamlit server {why}; its output:\n{log_path.read_text(errors='replace')}")
                time.sleep(0.25)  # polling a server, not waiting on UI state
            yield f"http://127.0.0.1:{port}"
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=15)
