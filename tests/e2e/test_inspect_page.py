"""The Inspect page in a real browser: reached from the navigation, its heatmaps drawn, its table filled."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.e2e.conftest import UI_MS, open_model_page, save_screenshot

ANALYSIS_MS = 120_000  # the first visit analyses the demo (APoZ over 256 calibration samples)
PLOTS = 5  # kernel heatmap, weight histogram, magnitude / APoZ / BN-scale channel heatmaps


def test_inspect_page_draws_heatmaps_of_the_demo(page: Page, app_url: str, screenshot_dir: Path) -> None:
    open_model_page(page, app_url)

    page.get_by_role("link", name="Inspect").click()
    expect(page.get_by_role("heading", name="Inspect", exact=True)).to_be_visible(timeout=UI_MS)
    plots = page.locator('[data-testid="stPlotlyChart"] .js-plotly-plot')
    expect(plots).to_have_count(PLOTS, timeout=ANALYSIS_MS)
    for i in range(PLOTS):
        expect(plots.nth(i).locator(".main-svg").first).to_be_visible(timeout=UI_MS)
    # Heatmaps draw their cells as images; the histogram draws bars.
    expect(plots.first.locator(".hm image, .heatmaplayer image")).not_to_have_count(0, timeout=UI_MS)
    expect(plots.nth(1).locator(".bars path").first).to_be_attached(timeout=UI_MS)
    expect(plots.first).to_contain_text("conv1: L2 norm of each kernel")
    expect(page.get_by_text(re.compile(r"n/a: fc2"))).not_to_have_count(0)  # APoZ of the logits: n/a, not 0

    table = page.locator('[data-testid="stDataFrame"]').first
    expect(table.locator('th[role="columnheader"]').first).to_have_text("layer", timeout=UI_MS)
    for layer in ("conv1", "conv2", "fc1", "fc2"):
        expect(table.locator('td[role="gridcell"][aria-colindex="1"]', has_text=re.compile(f"^{layer}$"))).to_have_count(1)
    expect(page.locator('[data-testid="stException"]')).to_have_count(0)
    expect(page.locator('[data-testid="stAlertContentError"]')).to_have_count(0)

    save_screenshot(page, screenshot_dir / "inspect-page.png")


def test_inspect_page_redraws_for_another_layer_and_norm(page: Page, app_url: str) -> None:
    open_model_page(page, app_url)  # on a fresh server, the app's own Inspect link only once app.py has run
    page.get_by_role("link", name="Inspect", exact=True).click()
    plots = page.locator('[data-testid="stPlotlyChart"] .js-plotly-plot')
    expect(plots).to_have_count(PLOTS, timeout=ANALYSIS_MS)

    page.get_by_role("combobox", name="Layer").click()
    page.get_by_role("option", name="conv2", exact=True).click()
    expect(plots.first).to_contain_text("conv2: L2 norm of each kernel (64 out x 32 in)", timeout=UI_MS)
    page.get_by_role("radiogroup", name="Norm").get_by_text("L1", exact=True).click()
    expect(plots.first).to_contain_text("conv2: L1 norm", timeout=UI_MS)
    expect(plots).to_have_count(PLOTS)
    expect(page.locator('[data-testid="stException"]')).to_have_count(0)
