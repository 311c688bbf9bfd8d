"""The Compare page in a real browser: two runs beside the original, the table, a Pareto plot, and the HTML report
downloaded and opened with no network."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.e2e.conftest import UI_MS, open_model_page, pick_runs, save_demo_run, save_screenshot, wait_until_idle

MEASURE_MS = 120_000  # the first visit measures every model: accuracy, sizes, ONNX export, latency in two runtimes


def make_runs(root: Path) -> list[str]:
    """A masked and a channel-pruned run of the demo, saved where the e2e server looks for runs: their ids."""
    recipes = ({"sparsity": 0.5}, {"granularity": "channel", "criterion": "l2", "sparsity": 0.5})
    return [save_demo_run(root, recipe, latency_runs=(2, 1)).id for recipe in recipes]


def test_compare_page_shows_the_table_a_pareto_plot_and_an_offline_report(
    page: Page, app_url: str, e2e_runs_root: Path, screenshot_dir: Path, tmp_path: Path,
) -> None:
    ids = make_runs(e2e_runs_root)
    open_model_page(page, app_url)
    page.get_by_role("link", name="Compare", exact=True).click()
    expect(page.get_by_role("heading", name="Compare", exact=True)).to_be_visible(timeout=UI_MS)
    pick_runs(page, "Runs", ids, timeout=MEASURE_MS)  # these two only: other tests save runs to the same folder

    table = page.locator('[data-testid="stDataFrame"]').first
    expect(table).to_be_visible(timeout=MEASURE_MS)
    for header in ("model", "accuracy", "ONNX Runtime b1", "FLOPs"):  # the grid draws only the columns in view
        expect(table.locator('th[role="columnheader"]', has_text=header)).to_have_count(1, timeout=UI_MS)
    scroller = table.locator(".dvn-scroller")  # the default columns fit 1440 px: no scrolling sideways
    assert scroller.evaluate("e => e.scrollWidth - e.clientWidth") <= 2
    box = page.locator('[data-testid="stMultiSelect"]').filter(has=page.get_by_role("combobox", name="Columns"))
    box.get_by_role("combobox", name="Columns").click()
    page.get_by_role("option", name="latency PyTorch").click()  # a reader adds a group of columns
    page.keyboard.press("Escape")
    expect(table.locator('th[role="columnheader"]', has_text="PyTorch b1")).to_have_count(1, timeout=UI_MS)
    pareto = page.locator(".js-plotly-plot", has_text="Accuracy against latency").first
    expect(pareto).to_be_visible(timeout=UI_MS)
    expect(pareto.locator(".scatterlayer .trace .point")).not_to_have_count(0)  # the models as points
    expect(pareto).to_contain_text("Pareto front")
    expect(page.get_by_text("do not run them faster").first).to_be_visible()
    expect(page.get_by_text(re.compile(r"^channel l2 layerwise 50% of channels, [^:]*: [\d.]+× fewer FLOPs"))).to_be_visible()
    expect(page.locator('[data-testid="stException"]')).to_have_count(0)
    save_screenshot(page, screenshot_dir / "compare-page.png")

    with page.expect_download(timeout=MEASURE_MS) as download:
        page.get_by_role("button", name=re.compile("Report")).click()
    report = tmp_path / "report.html"
    download.value.save_as(report)

    requests: list[str] = []
    viewer = page.context.new_page()
    viewer.on("request", lambda r: requests.append(r.url))
    viewer.goto(report.as_uri())
    expect(viewer.locator("#comparison tbody tr")).to_have_count(3, timeout=UI_MS)  # the original and two runs
    expect(viewer.locator("#comparison tr.channel")).to_contain_text(re.compile(r"\((3\.9\d|4\.0\d)×\)"))  # a quarter
    plots = viewer.locator(".js-plotly-plot")
    expect(plots).to_have_count(4, timeout=UI_MS)  # two Pareto plots, per-layer sparsity, per-class change
    expect(plots.first.locator(".scatterlayer .trace .point")).not_to_have_count(0)
    expect(viewer.get_by_text("granularity: channel")).to_be_visible()
    expect(viewer.locator("ul.headlines li")).to_have_count(2)  # one line per run, its figures measured here
    expect(viewer.locator("ul.headlines li").filter(has_text="of channels")).to_contain_text("fewer FLOPs")
    assert [u for u in requests if not u.startswith(("file:", "data:", "blob:"))] == []
    save_screenshot(viewer, screenshot_dir / "compare-report.png")


def test_a_second_browser_context_sees_only_its_own_models_runs_by_default(
    page: Page, new_context, app_url: str, e2e_runs_root: Path,
) -> None:
    """Two people on one server: runs of the demo model are chosen for the demo's session, never for a session on
    another model, which sees them only when it asks, labelled as another model's."""
    from tests.e2e.conftest import NOT_LOOPBACK, switch_demo_model

    ids = make_runs(e2e_runs_root)
    other = new_context()
    other.route(NOT_LOOPBACK, lambda route: route.abort())
    theirs = other.new_page()
    open_model_page(theirs, app_url)
    switch_demo_model(theirs, "resnet20")
    theirs.get_by_role("link", name="Compare", exact=True).click()
    box = theirs.locator('[data-testid="stMultiSelect"]').filter(has=theirs.get_by_role("combobox", name="Runs"))
    expect(box).to_have_count(1, timeout=MEASURE_MS)
    for run_id in ids:  # not chosen, not even offered
        expect(box.locator("[data-tag]", has_text=run_id)).to_have_count(0)
    theirs.get_by_text(re.compile(r"^Also offer runs of other models or data")).click()
    box.get_by_role("combobox", name="Runs").fill(ids[0])
    expect(theirs.get_by_role("option", name=re.compile(rf"^{re.escape(ids[0])} .*other model or data \(demo:mnist-cnn"))
           ).to_have_count(1, timeout=UI_MS)

    open_model_page(page, app_url)  # the demo's session: its model's runs are chosen, none labelled another's
    page.get_by_role("link", name="Compare", exact=True).click()
    tags = page.locator('[data-testid="stMultiSelect"]').filter(has=page.get_by_role("combobox", name="Runs")).locator("[data-tag]")
    expect(tags).not_to_have_count(0, timeout=MEASURE_MS)
    expect(tags.filter(has_text="other model or data")).to_have_count(0)
    expect(theirs.get_by_text(re.compile(r"^demo:resnet20 \(the original\)"))).to_be_visible()  # each its own model
    expect(page.get_by_text(re.compile(r"^demo:mnist-cnn \(the original\)"))).to_be_visible()
    other.close()


def test_the_downloads_complete_after_the_page_reruns(page: Page, app_url: str, e2e_runs_root: Path, tmp_path: Path) -> None:
    """The ONNX download once spun forever after a rerun ("Deferred file ... not found" in the server log)."""
    run_id = save_demo_run(e2e_runs_root, {"granularity": "channel", "criterion": "l2", "sparsity": 0.5}).id
    open_model_page(page, app_url)
    page.get_by_role("link", name="Compare", exact=True).click()
    pick_runs(page, "Runs", [run_id], timeout=MEASURE_MS)
    onnx = page.get_by_role("button", name="ONNX")
    expect(onnx).to_be_visible(timeout=MEASURE_MS)
    for option in ("ONNX Runtime", "PyTorch eager", "ONNX Runtime"):  # reruns, each redrawing the page
        page.get_by_role("radiogroup", name="Latency").first.get_by_text(option, exact=True).click()
        page.wait_for_timeout(500)  # the rerun starts: a click while it draws hits a button being replaced
        wait_until_idle(page)
        latency = page.get_by_role("radiogroup", name="Latency")  # mid-rerun, the old group can still be drawn
        expect(latency).to_have_count(1, timeout=UI_MS)
        expect(latency.get_by_role("radio", name=option)).to_be_checked()
    for name, suffix in (("ONNX", ".onnx"), ("Weights", ".safetensors"), ("Recipe", ".yaml")):
        with page.expect_download(timeout=UI_MS) as download:
            page.get_by_role("button", name=name, exact=True).click()
        path = tmp_path / f"{name}{suffix}"
        assert download.value.failure() is None, f"the {name} download failed: {download.value.failure()}"
        download.value.save_as(path)
        assert path.stat().st_size > 0
    with page.expect_download(timeout=MEASURE_MS) as download:
        page.get_by_role("button", name=re.compile("Report")).click()
    download.value.save_as(tmp_path / "report.html")
    assert "<html" in (tmp_path / "report.html").read_text()[:2000].lower()
