"""The recommendation decided by measurement earns its place (issue: sensitivity, done when): without fine-tuning,
at 50% and 70% parameter sparsity on both demo CNNs, the searched allocation is at least as accurate as one uniform
ratio and one global threshold, measured on test images neither the scan nor the search used; the accuracy the page
shows for it (measured on the held-out images) is within 3 points of that; and it never leaves [0, 1]."""

from __future__ import annotations

import pytest

from pruner_core.io.models import load_model
from pruner_core.sensitivity.allocate import global_baseline, recommend
from pruner_core.sensitivity.measured import held_out, measured_search
from pruner_core.sensitivity.refine import apply_and_measure
from pruner_core.sensitivity.scan import scan
from tests.zoo.cells import single_thread

SAMPLES = 500  # the first half of the 1,000 demo test images: the scan's and the search's figure; the rest report
RATIOS = (0.1, 0.3, 0.5, 0.7, 0.8, 0.9)


@pytest.fixture(scope="module", params=["mnist-cnn", "resnet20"])
def scanned(request, demo_data):
    model = load_model(f"demo:{request.param}")
    search, _ = held_out(demo_data, SAMPLES)
    return request.param, model, scan(model, search, ratios=RATIOS, samples=SAMPLES)


@pytest.mark.parametrize("target", [0.5, 0.7])
def test_the_searched_allocation_is_at_least_as_accurate_as_uniform_and_global_on_unseen_images(scanned, demo_data,
                                                                                               target):
    name, model, sens = scanned
    with single_thread():
        rec = recommend(sens, "sparsity", target)
        searched = measured_search(model, demo_data, sens, rec, samples=SAMPLES)
        _, report = held_out(demo_data, SAMPLES)
        ours = apply_and_measure(model, report, searched.recommendation.recipe)
        uniform = apply_and_measure(model, report, rec.uniform["recipe"])
        threshold = apply_and_measure(model, report, global_baseline(sens, "sparsity", target))
    assert report.y_test.shape[0] == 500 and ours.samples == 500
    assert ours.param_sparsity == pytest.approx(target, abs=2e-3)
    figures = f"{name} at {target:.0%}: searched {ours.accuracy:.3f}, uniform {uniform.accuracy:.3f}, global {threshold.accuracy:.3f}"
    assert ours.accuracy >= uniform.accuracy, figures
    assert ours.accuracy >= threshold.accuracy, figures
    shown = searched.recommendation.predicted["accuracy"]
    assert 0 <= shown <= 1 and abs(shown - ours.accuracy) <= 0.03, f"{figures}; shown {shown:.3f}"
