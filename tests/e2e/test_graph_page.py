"""The Graph page in a real browser: Netron draws the original and a channel-pruned run offline, side by side."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import FrameLocator, Page, expect

from pruner_core.pipeline.runs import Run
from tests.e2e.conftest import UI_MS, open_model_page, save_demo_run, save_screenshot

EXPORT_MS = 60_000  # the first visit exports both models to ONNX
DRAW_MS = 60_000  # Netron loads its web app and the model, then lays the graph out


def channel_run(root: Path) -> Run:
    """A channel-pruned run of the demo, saved where the e2e server looks for runs (no fine-tuning: quick)."""
    return save_demo_run(root, {"granularity": "channel", "criterion": "l1", "sparsity": 0.5}, latency_runs=(3, 2))


def netron_draws(frame: FrameLocator) -> None:
    """Wait for a Conv node of the graph: no cookie prompt comes first (it is served with its consent and
    telemetry off: a prompt in the way fails here)."""
    node = frame.locator("#canvas g.node", has_text=re.compile(r"^\s*Conv"))
    expect(node.first).to_be_visible(timeout=DRAW_MS)
    expect(frame.get_by_text("This app uses cookies")).to_have_count(0)


def test_graph_page_draws_the_original_and_the_pruned_model_offline(
    page: Page, app_url: str, e2e_runs_root: Path, screenshot_dir: Path,
) -> None:
    run = channel_run(e2e_runs_root)
    requests: list[str] = []  # every request of the page and its Netron frames (the context aborts outside ones)
    page.context.on("request", lambda r: requests.append(r.url))
    open_model_page(page, app_url)
    page.get_by_role("link", name="Graph", exact=True).click()
    expect(page.get_by_role("heading", name="Graph", exact=True)).to_be_visible(timeout=UI_MS)
    picker = page.get_by_role("combobox", name="Pruned run")
    expect(picker).to_be_visible(timeout=EXPORT_MS)
    if run.id not in (picker.input_value() or ""):  # other tests save runs to the same folder: pick ours
        picker.click()
        page.get_by_role("option", name=re.compile(re.escape(run.id))).click()

    frames = page.locator('iframe[src^="http://127.0.0.1:"]')
    expect(frames).to_have_count(2, timeout=EXPORT_MS)
    caption = rf"run {re.escape(run.id)} · model\.onnx, [\d.]+ [kM]B, opset 17, \d+% of the original's"
    expect(page.get_by_text(re.compile(caption))).to_be_visible()
    expect(page.get_by_text(re.compile(r"Netron serves each file from this machine on 127\.0\.0\.1:\d+"))).to_be_visible()
    original, pruned = frames.nth(0).content_frame, frames.nth(1).content_frame
    for frame in (original, pruned):
        netron_draws(frame)
    # half the channels removed: the first Conv's weight is 32x1x3x3 in the original, 16x1x3x3 in the pruned model
    expect(original.locator("#canvas g.node", has_text="32×1×3×3")).to_have_count(1)
    expect(pruned.locator("#canvas g.node", has_text="16×1×3×3")).to_have_count(1)
    expect(page.locator("[data-testid='stException']")).to_have_count(0)
    expect(page.get_by_role("link", name=re.compile("Open in a new tab"))).to_have_count(2)
    save_screenshot(page, screenshot_dir / "graph-page.png")
    page.wait_for_timeout(2_000)  # Netron's deferred work (its cookie banner's geo-IP lookup, analytics) runs late
    outside = [u for u in requests if not re.match(r"^(https?://127\.0\.0\.1[:/]|data:|blob:|about:)", u)]
    assert outside == [], f"the Graph page asked outside this machine: {sorted(set(outside))[:5]}"
    assert any(":" in u and "/browser.js" in u for u in requests)  # Netron's own app was loaded (and checked)
