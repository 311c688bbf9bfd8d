"""The Prune page in a real browser: its preview and mask overlay, a short run to its result, a bad recipe upload."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.e2e.conftest import UI_MS, open_model_page, save_screenshot, wait_until_idle

PREVIEW_MS = 60_000  # the first visit describes the model and previews the default recipe
RUN_MS = 180_000  # pruning, a fifth of an epoch of fine-tuning, then accuracy, size and latency measured


def open_prune_page(page: Page, app_url: str) -> None:
    """Open the app, go to Prune from the navigation and wait for the preview table and the overlay heatmap.

    The Model page is waited for first: until a fresh server's first run has called st.navigation, Streamlit
    lists the files of pages/ as pages of their own (a "prune" link that skips app.py and its session state).
    """
    open_model_page(page, app_url)
    page.get_by_role("link", name="Prune", exact=True).click()
    expect(page.get_by_role("heading", name="Prune", exact=True)).to_be_visible(timeout=UI_MS)
    expect(page.get_by_text("Previewed in")).to_be_visible(timeout=PREVIEW_MS)
    overlay = page.locator('[data-testid="stPlotlyChart"] .js-plotly-plot').first
    expect(overlay.locator(".hm image, .heatmaplayer image")).not_to_have_count(0, timeout=UI_MS)
    expect(overlay).to_contain_text("conv1: L2 norm of the kept weights")


def test_prune_page_previews_runs_and_shows_the_result(page: Page, app_url: str, screenshot_dir: Path) -> None:
    open_prune_page(page, app_url)
    tables = page.locator('[data-testid="stDataFrame"]')
    expect(tables).to_have_count(2, timeout=UI_MS)  # the layer settings and the preview
    expect(tables.nth(1).locator('th[role="columnheader"]', has_text="non-zero FLOPs")).to_have_count(1)
    expect(page.get_by_text("dense runtimes do not run it faster").first).to_be_visible()

    epochs = page.get_by_label("Fine-tune epochs")
    epochs.fill("0.20")
    epochs.press("Enter")
    expect(page.get_by_text("1 epoch fine-tune")).to_have_count(0, timeout=UI_MS)  # the recipe now says 0.2
    page.get_by_role("button", name=re.compile(r"Run$")).click()
    expect(page.locator('[data-testid="stProgress"]')).to_be_visible(timeout=UI_MS)
    expect(page.get_by_text("Saved run")).to_be_visible(timeout=RUN_MS)
    result = page.locator('[data-testid="stDataFrame"]').last
    expect(result.locator('th[role="columnheader"]', has_text="original")).to_have_count(1, timeout=UI_MS)
    expect(page.locator('[data-testid="stProgress"]')).to_have_count(0)
    expect(page.locator('[data-testid="stSidebar"]')).to_contain_text("done")
    expect(page.locator('[data-testid="stException"]')).to_have_count(0)
    save_screenshot(page, screenshot_dir / "prune-page.png")


def test_a_bad_recipe_upload_names_the_key_and_keeps_the_settings(page: Page, app_url: str) -> None:
    open_prune_page(page, app_url)
    upload = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
    # while a rerun is still drawing, the old copy of the page's elements can stand beside the new one
    expect(upload).to_have_count(1, timeout=UI_MS)
    upload.set_input_files(files=[{"name": "bad.yaml", "mimeType": "application/x-yaml",
                                   "buffer": b"granularity: channel\nsparsty: 0.3\n"}])
    expect(page.get_by_text(re.compile(r"bad\.yaml: unknown key 'sparsty'"))).to_be_visible(timeout=UI_MS)
    expect(page.locator('[data-testid="stException"]')).to_have_count(0)
    expect(page.get_by_text("Previewed in")).to_be_visible()
    expect(page.get_by_text("non-zero FLOPs").first).to_be_attached()  # still unstructured, not channel

    page.locator('[data-testid="stFileChipDeleteBtn"]').click()
    expect(page.locator('[data-testid="stFileChip"]')).to_have_count(0, timeout=UI_MS)
    # the rerun after the removal no longer shows the message: it is over, and the next upload is not lost in it
    expect(page.get_by_text(re.compile(r"unknown key 'sparsty'"))).to_have_count(0, timeout=UI_MS)
    wait_until_idle(page)
    expect(upload).to_have_count(1, timeout=UI_MS)
    upload.set_input_files(files=[{"name": "good.yaml", "mimeType": "application/x-yaml",
                                   "buffer": b"granularity: channel\ncriterion: l2\nsparsity: 0.25\n"
                                             b"finetune: {batch_size: 32, checks_per_epoch: 10}\n"}])
    expect(page.get_by_text("Loaded good.yaml: channel l2 layerwise 25% of channels")).to_be_visible(timeout=UI_MS)
    expect(page.get_by_text("FLOPs are measured")).to_be_visible(timeout=PREVIEW_MS)
    expect(page.get_by_role("combobox", name="Granularity")).to_have_value(re.compile(r"^channel"))
    expect(page.get_by_role("slider", name=re.compile("^Sparsity: fraction of output channels removed"))).to_have_value("0.25")
    code = page.locator('[data-testid="stCode"]').first  # the recipe shown, and run: nothing it set is lost
    expect(code).to_contain_text("batch_size: 32", timeout=UI_MS)
    expect(code).to_contain_text("checks_per_epoch: 10")
    expect(page.locator('[data-testid="stException"]')).to_have_count(0)


def test_one_slider_per_layer_moves_the_preview(page: Page, app_url: str) -> None:
    open_prune_page(page, app_url)
    sliders = page.get_by_role("slider", name=re.compile(r"^(conv1|conv2|fc1|fc2): fraction of weights removed"))
    expect(sliders).to_have_count(3, timeout=UI_MS)  # conv1, conv2, fc1: fc2 gives the classes
    removed = page.locator('[data-testid="stMetric"]').filter(has_text="Parameters removed").locator(
        '[data-testid="stMetricValue"]')
    before = removed.inner_text()
    slider = page.get_by_role("slider", name=re.compile(r"^fc1: fraction of weights removed"))
    for _ in range(40):  # 0.50 -> 0.60; a press sent while the page reruns can be lost: press until it says 0.6
        if round(float(slider.input_value()), 2) >= 0.6:
            break
        slider.focus()
        page.keyboard.press("ArrowRight")
    expect(slider).to_have_value("0.6")
    expect(removed).not_to_have_text(before, timeout=UI_MS)
    expect(page.get_by_text("fc1: 0.6").first).to_be_attached(timeout=UI_MS)  # the recipe shown
    wait_until_idle(page)


def test_every_ratio_cell_holds_a_ratio_and_one_typed_in_is_the_only_override(page: Page, app_url: str) -> None:
    """The Layers table showed a grey "None" in every unset ratio cell; now each holds the ratio the layer gets, and
    only a ratio set on purpose reaches the recipe's layers."""
    open_prune_page(page, app_url)
    grid = page.locator('[data-testid="stDataFrame"]').first
    grid.scroll_into_view_if_needed()
    cells = grid.locator('td[role="gridcell"][aria-colindex="5"]')  # the ratio column, as the canvas mirrors it
    expect(cells).to_have_count(4, timeout=UI_MS)
    assert cells.all_text_contents() == ["0.5"] * 4  # the slider's, no blank
    code = page.locator('[data-testid="stCode"]').first
    expect(code).to_contain_text("layers: {}")
    box = grid.bounding_box()
    page.mouse.click(box["x"] + 40, box["y"] + 36 + 35 + 17)  # conv2's name (header 36 px, rows 35 px)
    for _ in range(4):
        page.keyboard.press("ArrowRight")  # to its ratio
    page.keyboard.press("Enter")
    editor = page.locator("#portal input, #portal textarea").first
    expect(editor).to_be_visible(timeout=UI_MS)
    editor.fill("0.7")
    page.keyboard.press("Enter")
    expect(code).to_contain_text("layers: {conv2: 0.7}", timeout=UI_MS)  # that one alone
    wait_until_idle(page)
