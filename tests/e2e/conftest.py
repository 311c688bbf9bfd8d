"""Browser tests: Playwright driving Debian's Chromium against a real ``streamlit run`` on a loopback port.

Every test here is marked ``e2e``. One Streamlit server is shared by the session (``app_url``); every
test gets its own browser context and page, in which every non-loopback request is blocked.
Screenshots go to ``test-output/e2e/`` (``screenshot_dir``).

No test may rely on what an earlier test did with the shared server: each one opens the app in its own
context (a fresh session: the demo model and data active), loads any other model itself, and saves the runs
it needs itself (``save_demo_run``), picking them by id since other tests save runs to the same folder.

The helpers the test modules share (page openers, locators, uploads, screenshots, run pickers) are plain
functions below: import them with ``from tests.e2e.conftest import ...``. No test module imports another.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from pruner_core.frontends.serving import free_port, stop_server, wait_until_healthy
from pruner_core.io.data import load_data
from pruner_core.io.models import load_model
from pruner_core.pipeline.run import run_experiment
from pruner_core.pipeline.runs import Run
from pruner_core.pruning.recipe import Recipe
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
FIRST_LOAD_MS = 120_000  # the first visit measures latency (tens of runs at batch 1 and 64)
MODEL_LOAD_MS = 120_000  # a newly loaded model is measured too
UI_MS = 20_000


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
    """A fresh browser context per test in which every request not to the loopback server is aborted, and, once the
    test is over, found to have asked for none: offline means offline, on every page a test visits."""
    ctx = new_context()
    outside: list[str] = []
    ctx.route(NOT_LOOPBACK, lambda route: (outside.append(route.request.url), route.abort()))
    yield ctx
    assert not outside, f"the app asked outside this machine: {sorted(set(outside))[:5]}"


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
    port = free_port()
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
            why = wait_until_healthy(proc, port, SERVER_START_TIMEOUT_S)
            if why is not None:
                log.flush()
                pytest.fail(f"the Streamlit server {why}; its output:\n{log_path.read_text(errors='replace')}")
            yield f"http://127.0.0.1:{port}"
        finally:
            stop_server(proc)


# ---------------------------------------------------------------- helpers shared by the test modules


def metric(page: Page, label: str) -> Locator:
    """The value of the st.metric whose label is ``label``."""
    return (
        page.locator('[data-testid="stMetric"]')
        .filter(has=page.locator('[data-testid="stMetricLabel"]', has_text=re.compile(rf"^{re.escape(label)}$")))
        .locator('[data-testid="stMetricValue"]')
    )


def sidebar(page: Page) -> Locator:
    return page.locator('[data-testid="stSidebar"]')


def open_model_page(page: Page, app_url: str) -> None:
    """Open the app and wait until the default model's vital signs and layer table are drawn.

    Every test starts here (or goes through here to its page): until a fresh server's first run has called
    st.navigation, Streamlit lists the files of pages/ as pages of their own (links that skip app.py and its
    session state), so a test that ran first and went straight to a page's link would not see the app's.
    """
    page.goto(app_url)
    expect(metric(page, "Test accuracy")).to_have_text(re.compile(r"^\s*\d+\.\d+%\s*$"), timeout=FIRST_LOAD_MS)
    expect(page.locator('[data-testid="stDataFrame"] canvas').first).to_be_visible(timeout=UI_MS)
    expect(page.locator('[data-testid="stException"]')).to_have_count(0)


def save_screenshot(page: Page, path: Path) -> None:
    """A screenshot of the whole page. Streamlit scrolls inside its main container, not the document, so
    ``full_page`` alone stops at the viewport: grow the viewport to the content's height first."""
    size = page.viewport_size or {"width": 1440, "height": 1000}
    height = page.evaluate(
        "() => Math.max(...[document.querySelector('[data-testid=\"stMain\"]'),"
        " document.querySelector('[data-testid=\"stAppViewContainer\"]'), document.documentElement]"
        ".filter(Boolean).map(e => e.scrollHeight))"
    )
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], int(height))})
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(size)


def choose_radio(page: Page, group: str, option: str) -> None:
    page.get_by_role("radiogroup", name=group).get_by_text(option, exact=True).click()
    expect(page.get_by_role("radiogroup", name=group).get_by_role("radio", name=option)).to_be_checked()


def wait_until_idle(page: Page, timeout: float = UI_MS) -> None:
    """Wait until the app has finished its rerun (Streamlit's running icon in the header has gone)."""
    expect(page.locator('[data-testid="stStatusWidgetRunningIcon"]')).to_have_count(0, timeout=timeout)


def upload(page: Page, label: str, name: str, payload: bytes, mime: str = "application/octet-stream") -> None:
    """Put a file into the st.file_uploader labelled ``label`` and wait until the app shows it."""
    uploader = page.locator('[data-testid="stFileUploader"]').filter(has=page.get_by_text(label, exact=True))
    expect(uploader).to_have_count(1, timeout=UI_MS)
    uploader.locator('input[type="file"]').set_input_files({"name": name, "mimeType": mime, "buffer": payload})
    expect(uploader.get_by_text(name, exact=True)).to_be_visible(timeout=UI_MS)


def click_load(page: Page) -> None:
    page.get_by_role("button", name="Load", exact=True).click()


def switch_demo_model(page: Page, name: str) -> None:
    """Pick demo model ``name`` in the selectbox, press Load and wait until its vital signs are drawn.

    The model becomes active in this page's session only: another test's page still starts on the demo.
    """
    page.get_by_role("combobox", name="Demo model").click()
    page.get_by_role("option", name=re.compile(rf"^{re.escape(name)}\b")).click()
    expect(page.get_by_role("combobox", name="Demo model")).to_have_value(re.compile(rf"^{re.escape(name)}\b"))
    click_load(page)
    expect(page.locator('[data-testid="stAlertContentSuccess"]')).to_contain_text("Loaded", timeout=MODEL_LOAD_MS)
    expect(page.get_by_role("heading", name=f"demo:{name}")).to_be_visible(timeout=MODEL_LOAD_MS)


def save_demo_run(root: Path, recipe: dict, latency_runs: tuple[int, int] = (2, 1)) -> Run:
    """A run of the demo (mnist-cnn on demo:mnist5k) with ``recipe`` and no fine-tuning, saved under ``root``
    (give it ``e2e_runs_root``: where the e2e server looks for runs). Other tests save runs there too: find
    this one by its ``id``, never as "the newest"."""
    return run_experiment(
        load_model("demo:mnist-cnn"), load_data("demo:mnist5k"), Recipe.from_dict({**recipe, "finetune": {"epochs": 0}}),
        data_spec="demo:mnist5k", root=root, latency_runs=latency_runs,
    )


def pick_runs(page: Page, label: str, run_ids: list[str], timeout: float = UI_MS) -> None:
    """Make the st.multiselect labelled ``label`` hold exactly the runs ``run_ids`` (in that order): clear what it
    picked by default (the newest runs of the shared folder, perhaps other tests'), then choose each by its id."""
    box = page.locator('[data-testid="stMultiSelect"]').filter(has=page.get_by_role("combobox", name=label))
    expect(box).to_have_count(1, timeout=timeout)
    tags = box.locator("[data-tag]")
    clear = box.get_by_role("button", name="Clear all")
    if tags.count():
        clear.click()
    expect(tags).to_have_count(0, timeout=timeout)
    for run_id in run_ids:
        field = box.get_by_role("combobox", name=label)
        field.fill(run_id)
        page.get_by_role("option", name=re.compile(rf"^{re.escape(run_id)} ")).click()
        expect(tags.filter(has_text=re.compile(rf"^{re.escape(run_id)} "))).to_have_count(1, timeout=timeout)
    expect(tags).to_have_count(len(run_ids), timeout=timeout)
    page.keyboard.press("Escape")  # close the option list
