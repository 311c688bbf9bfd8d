"""UI benchmarks: a real ``streamlit run app.py`` (started as ``make run`` starts it) driven by headless Chromium.

- :func:`bench_idle_server_cpu`: the server's CPU while a browser tab sits idle on the loaded demo.
- :func:`bench_page_first_paint`: how long each page takes, warm, from navigation to its first script run done.

The server runs on a free loopback port with the repository's ``.streamlit/config.toml`` (no file watcher), its
runs folder (``$PRUNER_RUNS``) a temporary directory removed afterwards; the browser may reach only 127.0.0.1.
Nothing here imports the test suite (its conftest registers pytest fixtures): the few launch settings the browser
tests use are repeated below.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pruner_core.frontends.serving import free_port, stop_server, wait_until_healthy

ROOT = Path(__file__).resolve().parents[1]
SERVER_START_TIMEOUT_S = 90
FIRST_LOAD_MS = 180_000  # the demo's first visit measures its vital signs (tens of latency runs)
PAGE_MS = 120_000  # a page's warm-up visit may compute its caches (analysis, ONNX export, comparison)
IDLE_SECONDS_ENV = "PRUNER_BENCH_IDLE_SECONDS"  # shorten the idle window for a quick try (default 30)
VISITS_ENV = "PRUNER_BENCH_PAINT_VISITS"  # measured visits per page (default 5)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic",  # as tests/e2e/conftest.py launches it
                 # offline: no host resolves but 127.0.0.1 and localhost. Not Playwright's context.route, as the
                 # tests block requests: routing turns the browser's HTTP cache off, and every visit would fetch
                 # Streamlit's frontend again (66 files, 2.7 MB), which a visitor's browser keeps (immutable assets)
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"]
VIEWPORT = {"width": 1440, "height": 1000}
# app.py's pages: URL path (st.Page's default, from the file name; the default page is the root) and st.title
PAGES = {"model": ("", "Model"), "inspect": ("inspect", "Inspect"), "sensitivity": ("sensitivity", "Sensitivity"),
         "prune": ("prune", "Prune"), "compare": ("compare", "Compare"), "graph": ("graph", "Graph")}
# the active model and data as pages/_common.py's restore_from_url reads them from the address (URL_KEYS)
DEMO_QUERY = "?model=demo:mnist-cnn&data=demo:mnist5k"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# True once the page's first script run is over: the app says "notRunning" (data-test-script-state, which starts
# at "initial" on a fresh document), Streamlit's running icon is gone and the page's title (h1) is on screen.
RENDERED_JS = """title => {
    const app = document.querySelector('[data-testid="stApp"]');
    if (!app || app.dataset.testScriptState !== 'notRunning') return false;
    if (document.querySelector('[data-testid="stStatusWidgetRunningIcon"]')) return false;
    return [...document.querySelectorAll('h1')].some(h => h.textContent.trim() === title && h.offsetParent !== null);
}"""
# what a page shows when it did not get there: for the error message
SEEN_JS = """() => ({state: document.querySelector('[data-testid="stApp"]')?.dataset.testScriptState,
    running: !!document.querySelector('[data-testid="stStatusWidgetRunningIcon"]'),
    h1: [...document.querySelectorAll('h1')].map(h => h.textContent.trim()),
    exceptions: [...document.querySelectorAll('[data-testid="stException"]')].map(e => e.textContent.slice(0, 300))})"""
# the Model page's vital signs: the test-accuracy metric holds a percentage
DEMO_SIGNS_JS = """() => [...document.querySelectorAll('[data-testid="stMetric"]')].some(m =>
    m.querySelector('[data-testid="stMetricLabel"]')?.textContent.trim() === 'Test accuracy'
    && /^\\s*\\d+\\.\\d+%\\s*$/.test(m.querySelector('[data-testid="stMetricValue"]')?.textContent ?? ''))"""


def _chromium() -> str:
    for found in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if found and os.access(found, os.X_OK):
            return found
    raise RuntimeError("the UI benchmarks need Chromium (apt-get install chromium, or make chromium)")


@contextmanager
def streamlit_server(runs_root: Path, log_path: Path, app_dir: Path = ROOT) -> Iterator[tuple[str, int]]:
    """``streamlit run app.py`` (in ``app_dir``, with its .streamlit/config.toml) as ``make run`` starts it, on a free
    loopback port: yields (URL, pid) once healthy, and always stops it (terminate, then kill)."""
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
           "--server.address", "127.0.0.1", "--server.port", str(port)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PRUNER_RUNS": str(runs_root), "PRUNER_FACTORIES": ""}
    with log_path.open("w+b") as log:
        proc = subprocess.Popen(cmd, cwd=app_dir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        try:
            why = wait_until_healthy(proc, port, SERVER_START_TIMEOUT_S)
            if why is not None:
                log.flush()
                raise RuntimeError(f"the Streamlit server {why}; its output:\n{log_path.read_text(errors='replace')}")
            yield f"http://127.0.0.1:{port}", proc.pid
        finally:
            stop_server(proc)


@contextmanager
def browser_page() -> Iterator:
    """A headless Chromium tab (the browser tests' window size) that reaches nothing beyond this machine."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser.new_context(viewport=VIEWPORT).new_page()
        finally:
            browser.close()


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (field 3, state, is index 0), or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid``, all its threads and its descendants, the ones that
    have ended and been waited for included (cutime + cstime of the process that waited)."""
    stats = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            stats[int(entry.name)] = fields
    children: dict[int, list[int]] = {}
    for p, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(p)  # index 1: ppid
    if pid not in stats:
        raise RuntimeError(f"process {pid} has gone")
    ticks, todo = 0, [pid]
    while todo:
        p = todo.pop()
        ticks += sum(int(v) for v in stats[p][11:15])  # utime, stime, cutime, cstime
        todo += children.get(p, [])
    return ticks / CLK_TCK


def wait_rendered(page, title: str, timeout_ms: float) -> None:
    """Wait (polling every animation frame) until the page's first script run is over and its title is shown."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(RENDERED_JS, arg=title, polling="raf", timeout=timeout_ms)
    except PlaywrightTimeout:
        seen = page.evaluate(SEEN_JS)
        raise RuntimeError(f"{page.url} did not finish with its title {title!r} on screen within {timeout_ms / 1000:.0f} s:"
                           f" {seen}") from None


def open_demo(page, url: str) -> None:
    """Open the app's first page and wait until the demo's vital signs are drawn and the script run is over."""
    page.goto(url, wait_until="commit")
    page.wait_for_function(DEMO_SIGNS_JS, polling=100, timeout=FIRST_LOAD_MS)
    wait_rendered(page, PAGES["model"][1], FIRST_LOAD_MS)
    errors = page.locator('[data-testid="stException"]').count()
    if errors:
        raise RuntimeError(f"the Model page shows {errors} exception(s)")


def _env_number(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    return float(value) if value else default


def bench_idle_server_cpu() -> dict:
    """``idle_server_cpu`` (target <= 3% of one core): the Streamlit server's CPU (the process, its threads and child
    processes, from /proc) over 30 s (``$PRUNER_BENCH_IDLE_SECONDS`` to shorten it) while one headless Chromium tab
    stays open and connected on the Model page, after the demo (mnist-cnn on demo:mnist5k) has finished loading.
    Also the CPU of the start-up and of the demo's first load, as context, the busiest second of the window, and the
    machine's 1-minute load average before and after (other work on the machine slows the load, not the idle figure)."""
    seconds = _env_number(IDLE_SECONDS_ENV, 30.0)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="pruner-bench-ui-") as tmp:
        start = time.perf_counter()
        with streamlit_server(Path(tmp) / "runs", Path(tmp) / "server.log") as (url, pid):
            healthy = time.perf_counter()
            with browser_page() as page:
                started, started_cpu = time.perf_counter(), tree_cpu_seconds(pid)
                open_demo(page, url)
                loaded, loaded_cpu = time.perf_counter(), tree_cpu_seconds(pid)
                samples, last_t, last_cpu = [], loaded, loaded_cpu
                end = loaded + seconds
                while (now := time.perf_counter()) < end:
                    time.sleep(min(1.0, end - now))
                    t, cpu = time.perf_counter(), tree_cpu_seconds(pid)
                    samples.append((cpu - last_cpu) / (t - last_t))
                    last_t, last_cpu = t, cpu
                idle_cpu, idle_s = last_cpu - loaded_cpu, last_t - loaded
                state = page.evaluate("() => document.querySelector('[data-testid=\"stApp\"]')?.dataset.testConnectionState")
    prefix = "idle_server_cpu"
    return {
        f"{prefix}.percent": round(100 * idle_cpu / idle_s, 2),
        f"{prefix}.seconds": round(idle_s, 1),
        f"{prefix}.cpu_seconds": round(idle_cpu, 2),
        f"{prefix}.max_1s_percent": round(100 * max(samples, default=0.0), 1),
        f"{prefix}.connection_at_end": state,
        f"{prefix}.startup_seconds": round(healthy - start, 2),
        f"{prefix}.browser_start_seconds": round(started - healthy, 2),
        f"{prefix}.startup_cpu_seconds": round(started_cpu, 2),
        f"{prefix}.load_seconds": round(loaded - started, 2),
        f"{prefix}.load_cpu_seconds": round(loaded_cpu - started_cpu, 2),
        f"{prefix}.load_percent": round(100 * (loaded_cpu - started_cpu) / (loaded - started), 1),
        f"{prefix}.machine_loadavg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def _save_demo_run(root: Path) -> str:
    """A run of the demo (50% unstructured L1, no fine-tuning) saved under ``root``, so Compare and Graph have one."""
    from pruner_core.io.data import load_data
    from pruner_core.io.models import load_model
    from pruner_core.pipeline.run import run_experiment
    from pruner_core.pruning.recipe import Recipe

    run = run_experiment(load_model("demo:mnist-cnn"), load_data("demo:mnist5k"),
                         Recipe.from_dict({"sparsity": 0.5, "finetune": {"epochs": 0}}), data_spec="demo:mnist5k",
                         root=root, latency_runs=(2, 1))
    return run.id


def _visit(page, url: str, title: str, timeout_ms: float = PAGE_MS) -> float:
    """Seconds from ``page.goto(url)`` until the page's first script run is over with ``title`` on screen."""
    start = time.perf_counter()
    page.goto(url, wait_until="commit")
    wait_rendered(page, title, timeout_ms)
    return round(time.perf_counter() - start, 3)


def streamlit_floor(tmp: Path, visits: int) -> float:
    """The same measure on a one-line app (``st.title``) with this repository's config: what Streamlit itself takes
    on this machine (its frontend, a new session, one script run), median of ``visits`` after two warm-up visits."""
    app = tmp / "hello"
    (app / ".streamlit").mkdir(parents=True)
    shutil.copy(ROOT / ".streamlit" / "config.toml", app / ".streamlit" / "config.toml")
    (app / "app.py").write_text('import streamlit as st\n\nst.title("Hello")\n')
    with streamlit_server(tmp / "hello-runs", tmp / "hello.log", app_dir=app) as (url, _), browser_page() as page:
        times = [_visit(page, url, "Hello") for _ in range(2 + visits)][2:]
    return round(statistics.median(times), 3)


def bench_page_first_paint() -> dict:
    """``page_first_paint_seconds`` (target <= 1.5 s per page), warm: for every page of the app on the demo
    (mnist-cnn on demo:mnist5k, named in the address as a shared link names it; one saved run, 50% unstructured
    without fine-tuning, for Compare and Graph to show), the time from ``page.goto`` of the page's URL until its
    first script run is over (the app's script state "notRunning", no running icon) with its title on screen.
    Each page is visited once first (caches warmed: analysis, ONNX export, comparison), then the median of 5 visits
    (``$PRUNER_BENCH_PAINT_VISITS``) is taken; each visit is a new browser session, as a refresh or a link is.
    ``page_first_paint_floor_seconds``: the same measure on a one-line Streamlit app, as context; and the machine's
    1-minute load average before and after (the browser and the server share its cores with whatever else runs)."""
    visits = int(_env_number(VISITS_ENV, 5))
    load_before = os.getloadavg()[0]
    each: dict[str, list[float]] = {name: [] for name in PAGES}
    warmup: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="pruner-bench-ui-") as tmp:
        runs = Path(tmp) / "runs"
        _save_demo_run(runs)
        with streamlit_server(runs, Path(tmp) / "server.log") as (url, _), browser_page() as page:
            open_demo(page, url)  # a fresh server lists pages/ as pages until app.py's first run
            for name, (path, title) in PAGES.items():
                warmup[name] = _visit(page, f"{url}/{path}{DEMO_QUERY}", title)
            for _ in range(visits):  # round-robin, so drift in the machine's speed hits every page alike
                for name, (path, title) in PAGES.items():
                    each[name].append(_visit(page, f"{url}/{path}{DEMO_QUERY}", title))
                    if page.locator('[data-testid="stException"]').count():
                        raise RuntimeError(f"the {title} page shows an exception")
        floor = streamlit_floor(Path(tmp), visits)
    medians = {name: round(statistics.median(v), 3) for name, v in each.items()}
    prefix = "page_first_paint_seconds"
    return {
        **{f"{prefix}.{name}": v for name, v in medians.items()},
        f"{prefix}.max": max(medians.values()),
        f"{prefix}.slowest": max(medians, key=medians.get),
        f"{prefix}.visits": visits,
        f"{prefix}.each": each,
        f"{prefix}.warmup": warmup,
        "page_first_paint_floor_seconds": floor,
        f"{prefix}.machine_loadavg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
