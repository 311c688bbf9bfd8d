"""INT8 on the pages, in a real browser: a run quantized on Compare appears as its own row, "+ INT8", timed with the
other models, with its speed against its own FP32 run said below the table and its file offered for download; the
Sensitivity page measures each layer alone in INT8."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.e2e.conftest import UI_MS, open_model_page, pick_runs, save_demo_run

MEASURE_MS = 180_000  # measuring the run, then quantizing, then timing every model again


def test_a_run_quantized_from_the_page_gets_an_int8_row(page: Page, app_url: str, e2e_runs_root: Path) -> None:
    run = save_demo_run(e2e_runs_root, {"granularity": "channel", "sparsity": 0.25}, latency_runs=(2, 1))
    open_model_page(page, app_url)
    page.get_by_role("link", name="Compare", exact=True).click()
    pick_runs(page, "Runs", [run.id], timeout=MEASURE_MS)
    table = page.locator('[data-testid="stDataFrame"]').first
    expect(table).to_be_visible(timeout=MEASURE_MS)
    page.get_by_role("button", name="Quantize to INT8").click()
    expect(page.get_by_text(re.compile(rf"{run.id}`?: INT8 (pays|does not pay everywhere)"))).to_be_visible(
        timeout=MEASURE_MS)
    expect(page.get_by_text(re.compile(rf"^{run.id}\+int8: INT8 in ONNX Runtime only .*against its own FP32 run: "
                                       r"[\d.]+× at batch 1"))).to_be_visible(timeout=MEASURE_MS)
    expect(page.get_by_text(re.compile(r"\+ INT8: .*smaller ONNX file"))).to_be_visible(timeout=UI_MS)
    expect(page.get_by_role("button", name="INT8 ONNX")).to_be_visible(timeout=UI_MS)
    expect(page.locator('[data-testid="stException"]')).to_have_count(0)
    from_page = (run.path / "model.int8.onnx").read_bytes()
    subprocess.run([sys.executable, "-m", "pruner_core.frontends.cli", "quantize", str(run.path)], check=True,
                   capture_output=True)  # the same settings from the command line: the same file
    assert (run.path / "model.int8.onnx").read_bytes() == from_page


def test_the_sensitivity_page_measures_each_layer_alone_in_int8(page: Page, app_url: str) -> None:
    open_model_page(page, app_url)
    page.get_by_role("link", name="Sensitivity", exact=True).click()
    expect(page.get_by_role("heading", name="INT8 per layer")).to_be_visible(timeout=UI_MS)
    page.get_by_role("button", name="Scan INT8 per layer").click()
    bars = page.locator(".js-plotly-plot", has_text="Accuracy lost per layer alone in INT8").first
    expect(bars).to_be_visible(timeout=MEASURE_MS)
    expect(bars).to_contain_text("every layer in INT8")
    expect(page.get_by_text(re.compile(r"every layer in INT8 \d+\.\d+%; most sensitive alone: "))).to_be_visible()
    expect(page.locator('[data-testid="stException"]')).to_have_count(0)


def test_the_graph_page_draws_a_runs_int8_file(page: Page, app_url: str, e2e_runs_root: Path) -> None:
    from pruner_core.io.data import load_data
    from pruner_core.pipeline.quantize import quantize_run
    from pruner_core.pruning.recipe import Quantize

    run = save_demo_run(e2e_runs_root, {"granularity": "channel", "sparsity": 0.5}, latency_runs=(2, 1))
    quantize_run(run, load_data("demo:mnist5k"), Quantize(kind="int8_static"), latency_runs=(2, 1))
    open_model_page(page, app_url)
    page.get_by_role("link", name="Graph", exact=True).click()
    picker = page.get_by_role("combobox", name="Pruned run")
    expect(picker).to_be_visible(timeout=MEASURE_MS)
    if run.id not in (picker.input_value() or ""):  # other tests save runs to the same folder: pick ours
        picker.click()
        page.get_by_role("option", name=re.compile(re.escape(run.id))).click()
    page.get_by_text("Its INT8 file (model.int8.onnx)").click()
    expect(page.get_by_text(re.compile(rf"run {re.escape(run.id)} \+ INT8 · model\.int8\.onnx"))).to_be_visible(
        timeout=MEASURE_MS)
    frame = page.locator('iframe[src^="http://127.0.0.1:"]').nth(1).content_frame
    expect(frame.locator("#canvas g.node", has_text=re.compile(r"^\s*QuantizeLinear")).first).to_be_visible(
        timeout=MEASURE_MS)
    expect(page.locator("[data-testid='stException']")).to_have_count(0)
