"""The Sensitivity page in a real browser: scan the demo, see the curves, open the recommendation in Prune."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.e2e.conftest import UI_MS, open_model_page, save_screenshot

SCAN_MS = 90_000  # the demo's four layers x 9 ratios on 1,000 test images: a few seconds on two idle cores


def test_sensitivity_scan_shows_curves_and_opens_the_recommendation_in_prune(
    page: Page, app_url: str, screenshot_dir: Path,
) -> None:
    open_model_page(page, app_url)
    page.get_by_role("link", name="Sensitivity", exact=True).click()
    expect(page.get_by_role("heading", name="Sensitivity", exact=True)).to_be_visible(timeout=UI_MS)
    page.get_by_role("button", name=re.compile(r"Run scan$")).click()

    curves = page.locator(".js-plotly-plot", has_text="Sensitivity: accuracy")
    expect(curves).to_be_visible(timeout=SCAN_MS)
    expect(curves.locator(".scatterlayer .trace")).to_have_count(4)  # conv1, conv2, fc1, fc2
    expect(page.locator(".js-plotly-plot", has_text="Accuracy drop")).to_be_visible()
    expect(page.get_by_text(re.compile(r"Scanned in \d+\.\d s"))).to_be_visible()
    expect(page.locator('[data-testid="stMetric"]', has_text="Parameter sparsity")).to_contain_text("70.0%")
    expect(page.locator(".js-plotly-plot", has_text="Ratio removed per layer")).to_be_visible()
    expect(page.locator('[data-testid="stException"]')).to_have_count(0)
    save_screenshot(page, screenshot_dir / "sensitivity-page.png")

    page.get_by_role("button", name=re.compile(r"Open in Prune$")).click()
    expect(page.get_by_role("heading", name="Prune", exact=True)).to_be_visible(timeout=UI_MS)
    expect(page.get_by_text("Previewed in")).to_be_visible(timeout=SCAN_MS)
    expect(page.locator("code").filter(has_text="fc1:")).not_to_have_count(0)  # the recipe shows per-layer ratios
