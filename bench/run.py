"""Benchmarks: measured figures written to bench/results.json (never asserted in tests).

    python bench/run.py [--only NAME[,NAME...]] [--json PATH]

``BENCHMARKS`` is the registry: a name maps to a function returning ``{figure_key: value}``.
Each figure key is written once at the top level of the JSON, next to ``machine`` and ``date``.
With ``--only``, figures of the benchmarks not run are kept from the previous file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench.int8 import bench_int8  # noqa: E402
from bench.scale import bench_ddp, bench_sensitivity_resnet50, bench_stream  # noqa: E402
from bench.ui import bench_idle_server_cpu, bench_page_first_paint  # noqa: E402
from pruner_core.io.archs import ARCHITECTURES  # noqa: E402
from pruner_core.io.data import Dataset, load_data  # noqa: E402
from pruner_core.io.models import load_model  # noqa: E402
from pruner_core.measure.analysis import analyze  # noqa: E402
from pruner_core.measure.metrics import device_name, vital_signs  # noqa: E402


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def bench_vitals() -> dict:
    """Vital signs of every demo model on demo:mnist5k, plus load and measurement times."""
    figures: dict = {}
    data = load_data("demo:mnist5k")
    for name in ARCHITECTURES:
        start = time.perf_counter()
        model = load_model(f"demo:{name}")
        loaded = time.perf_counter()
        signs = vital_signs(model, data, latency_runs=(100, 30), warmup=10)
        done = time.perf_counter()
        prefix = f"vitals.{name}"
        figures |= {
            f"{prefix}.params": signs.params,
            f"{prefix}.nonzero_params": signs.nonzero_params,
            f"{prefix}.flops": signs.flops,
            f"{prefix}.size_bytes": signs.size_bytes,
            f"{prefix}.accuracy": signs.accuracy,
            f"{prefix}.card_accuracy": signs.card_accuracy,
            f"{prefix}.latency_ms.batch1": round(signs.latency_ms["batch1"], 4),
            f"{prefix}.latency_ms.batch64": round(signs.latency_ms["batch64"], 4),
            f"{prefix}.latency_iqr_ms.batch1": [round(getattr(signs.latency["batch1"], k), 4) for k in ("p25_ms", "p75_ms")],
            f"{prefix}.latency_iqr_ms.batch64": [round(getattr(signs.latency["batch64"], k), 4) for k in ("p25_ms", "p75_ms")],
            f"{prefix}.load_seconds": round(loaded - start, 3),
            f"{prefix}.vital_signs_seconds": round(done - loaded, 3),
        }
    figures["vitals.latency_how"] = signs.latency["batch1"].label.replace(", batch 1", "")
    return figures


def resnet50_model():
    """The ResNet-50-sized benchmark network (bench/resnet50.py) as a loaded factory model."""
    sys.path.insert(0, str(ROOT / "bench"))
    from resnet50 import INPUT_SHAPE

    return load_model("resnet50:resnet50"), INPUT_SHAPE


def random_data(shape: tuple[int, ...], n: int, classes: int = 1000, seed: int = 0) -> Dataset:
    """``n`` seeded random samples of ``shape`` (timing only: their labels mean nothing)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *shape, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return Dataset("random", x, y, x[:8], y[:8], [str(c) for c in range(classes)], "random")


def _overhead(model, data: Dataset, samples: int, repeats: int, batch_size: int = 64) -> dict:
    """Analysis time over ``samples`` calibration samples / one plain forward over the same samples.

    ``ratio``: as the Inspect page runs it, the model's description (FLOPs, coupled groups: per model, not per
    sample) already cached; ``ratio_cold``: the description made too, as ``pruner analyze`` runs it.
    """
    from pruner_core.pruning.describe import describe_model

    x = data.x_train[:samples]
    start = time.perf_counter()
    layers = describe_model(model, tuple(x.shape[1:]))
    describe_s = time.perf_counter() - start

    def plain() -> None:
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                model.module(x[i : i + batch_size])

    plain()  # warm-up (allocator, kernels)
    forward, warm, cold = [], [], []
    for _ in range(repeats):  # interleaved so drift in the machine's speed hits both alike
        start = time.perf_counter()
        plain()
        forward.append(time.perf_counter() - start)
        start = time.perf_counter()
        analyze(model, data, samples=samples, batch_size=batch_size, layers=layers)
        warm.append(time.perf_counter() - start)
        start = time.perf_counter()
        analyze(model, data, samples=samples, batch_size=batch_size)
        cold.append(time.perf_counter() - start)
    f, a, c = _median(forward), _median(warm), _median(cold)
    return {"ratio": round(a / f, 3), "ratio_cold": round(c / f, 3), "analysis_s": round(a, 3),
            "analysis_cold_s": round(c, 3), "forward_s": round(f, 3), "describe_s": round(describe_s, 3)}


def bench_analysis() -> dict:
    """``analysis_overhead`` (target <= 1.3) on resnet20 and a ResNet-50-sized net; ``analysis_seconds`` per demo.

    The analysis is everything the Inspect page computes: weight statistics at every granularity, histograms,
    measured FLOPs, coupled groups (torch-pruning's dependency graph), and one calibration pass that counts
    APoZ, mean activations and per-layer time.
    """
    figures: dict = {}
    data = load_data("demo:mnist5k")
    samples = 256
    for name in ARCHITECTURES:
        model = load_model(f"demo:{name}")
        analyze(model, data, samples=samples)  # warm-up
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            analyze(model, data, samples=samples)
            runs.append(time.perf_counter() - start)
        figures[f"analysis_seconds.{name}"] = round(sorted(runs)[1], 3)
    shares = {la.name: la.time_share for la in analyze(load_model("demo:mnist-cnn"), data, samples=64).layers}
    # once asserted in tests/core/test_analysis.py (conv2: 7 M FLOPs, fc2: 2,560): a timing, so measured here
    figures["analysis_time_share.mnist-cnn"] = {k: round(v, 4) for k, v in shares.items()}
    o = _overhead(load_model("demo:resnet20"), data, samples, repeats=5)
    figures |= {f"analysis_overhead.resnet20.{k}": v for k, v in o.items()}
    big, shape = resnet50_model()
    o = _overhead(big, random_data(shape, samples), samples, repeats=3)
    figures |= {f"analysis_overhead.resnet50.{k}": v for k, v in o.items()}
    figures["analysis_overhead.samples"] = samples
    figures["analysis_overhead.resnet50.input_shape"] = list(shape)
    return figures


def bench_apply() -> dict:
    """``apply_speedup`` (target >= 10): a global 50% unstructured L1 prune of the ResNet-50-sized net,
    ``torch.nn.utils.prune.global_unstructured`` time / ours (compute_masks + apply_masks), same run."""
    import copy

    from torch import nn
    from torch.nn.utils import prune as tprune

    from pruner_core.graph.layers import prunable_layers
    from pruner_core.pruning.select import apply_masks, compute_masks
    from pruner_core.pruning.target import Target

    big, _ = resnet50_model()
    names = [name for name, _, _ in prunable_layers(big.module)]
    target = Target("unstructured", "l1", "global", {name: 0.5 for name in names})
    ours, theirs = [], []
    for _ in range(3):
        work = copy.deepcopy(big.module)
        start = time.perf_counter()
        apply_masks(work, compute_masks(work, target))
        ours.append(time.perf_counter() - start)
        work = copy.deepcopy(big.module)
        params = [(m, "weight") for m in work.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
        start = time.perf_counter()
        tprune.global_unstructured(params, pruning_method=tprune.L1Unstructured, amount=0.5)
        theirs.append(time.perf_counter() - start)
        del work, params
    o, t = _median(ours), _median(theirs)
    return {"apply_speedup.ratio": round(t / o, 2), "apply_speedup.ours_s": round(o, 3), "apply_speedup.torch_s": round(t, 3),
            "apply_speedup.params": sum(p.numel() for p in big.module.parameters())}


def bench_global_threshold() -> dict:
    """``global_threshold_speedup`` (target >= 5; once asserted in tests/core/test_methods.py, now measured here):
    a global 50% unstructured L1 prune of five seeded 1000x1000 Linear layers (the test's net),
    ``torch.nn.utils.prune.global_unstructured`` / ours (compute_masks + apply_masks), medians of 5 interleaved runs.
    ``ratio`` is in CPU time (``time.process_time``, as the test measured it), ``ratio_wall`` in wall time."""
    import copy

    from torch import nn
    from torch.nn.utils import prune as tprune

    from pruner_core.pruning.select import apply_masks, compute_masks
    from pruner_core.pruning.target import Target

    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = nn.Sequential(*[nn.Linear(1000, 1000, bias=False) for _ in range(5)]).eval()
    target = Target("unstructured", "l1", "global", {str(i): 0.5 for i in range(5)})
    ours, theirs, ours_wall, theirs_wall = [], [], [], []
    for _ in range(5):  # interleaved so drift in the machine's speed hits both alike
        work = copy.deepcopy(net)
        cpu, wall = time.process_time(), time.perf_counter()
        apply_masks(work, compute_masks(work, target))
        ours.append(time.process_time() - cpu)
        ours_wall.append(time.perf_counter() - wall)
        zeros = sum(int((m.weight == 0).sum()) for m in work)
        work = copy.deepcopy(net)
        cpu, wall = time.process_time(), time.perf_counter()
        tprune.global_unstructured([(m, "weight") for m in work], pruning_method=tprune.L1Unstructured, amount=0.5)
        theirs.append(time.process_time() - cpu)
        theirs_wall.append(time.perf_counter() - wall)
        del work
    o, t, ow, tw = _median(ours), _median(theirs), _median(ours_wall), _median(theirs_wall)
    prefix = "global_threshold_speedup.linear5x1000"
    return {f"{prefix}.ratio": round(t / o, 2), f"{prefix}.ours_cpu_s": round(o, 4), f"{prefix}.torch_cpu_s": round(t, 4),
            f"{prefix}.ratio_wall": round(tw / ow, 2), f"{prefix}.ours_s": round(ow, 4), f"{prefix}.torch_s": round(tw, 4),
            f"{prefix}.zeros": zeros}


def bench_finetune() -> dict:
    """``finetune_mask_overhead`` (target <= 1.10): median fine-tuning step on mnist-cnn with 50% masks / without;
    ``demo_prune_ft_seconds`` (target <= 10 s): 50% unstructured + 1 epoch on mnist-cnn, end to end."""
    from pruner_core.pipeline.finetune import finetune
    from pruner_core.pipeline.run import prune
    from pruner_core.pruning.recipe import Finetune, Recipe
    from pruner_core.pruning.select import compute_masks
    from pruner_core.pruning.target import Target

    data = load_data("demo:mnist5k")
    model = load_model("demo:mnist-cnn")
    masks = compute_masks(model.module, Target("unstructured", "l1", "layerwise", {"conv1": 0.5, "conv2": 0.5, "fc1": 0.5}))

    def step_times(with_masks: bool) -> list[float]:
        import copy

        work, stamps = copy.deepcopy(model.module), []
        finetune(work, data, Finetune(epochs=0.5), masks=masks if with_masks else None, augment=False,
                 callback=lambda p: stamps.append(time.perf_counter()))
        return [b - a for a, b in zip(stamps[1:-2], stamps[2:-1], strict=True)]  # no first step, no final eval

    plain, masked = [], []
    for _ in range(3):  # interleaved
        plain += step_times(False)
        masked += step_times(True)
    figures = {
        "finetune_mask_overhead.ratio": round(_median(masked) / _median(plain), 3),
        "finetune_mask_overhead.step_ms_masked": round(_median(masked) * 1000, 2),
        "finetune_mask_overhead.step_ms_plain": round(_median(plain) * 1000, 2),
    }
    recipe = Recipe(sparsity=0.5, finetune={"epochs": 1})
    runs = []
    for _ in range(2):
        start = time.perf_counter()
        pruned = prune(model, data, recipe)
        runs.append(time.perf_counter() - start)
    figures["demo_prune_ft_seconds"] = round(min(runs), 2)
    figures["demo_prune_ft_accuracy"] = pruned.history[-1].test_accuracy
    return figures


def _structured(model, shape: tuple[int, ...], runs: int) -> dict:
    """50% of channels (L1, layerwise, classifier kept) removed; latency at batch 64 and FLOPs, before and after."""
    import copy

    from pruner_core.graph.flops import layer_flops
    from pruner_core.graph.layers import prunable_layers
    from pruner_core.measure.metrics import measure_latency
    from pruner_core.pruning.channels import plan_channels, prune_channels
    from pruner_core.pruning.target import Target

    example = torch.zeros(1, *shape)
    names = [name for name, _, _ in prunable_layers(model.module)][:-1]
    target = Target("channel", "l1", "layerwise", {name: 0.5 for name in names})
    pruned = copy.deepcopy(model.module)
    prune_channels(pruned, plan_channels(model.module, target, example), example)
    flops = [layer_flops(m, example)[0] for m in (model.module, pruned)]
    reduction = flops[0] / flops[1]
    params = [sum(p.numel() for p in m.parameters()) for m in (model.module, pruned)]
    figures: dict = {"flop_reduction": round(reduction, 3), "flops": flops, "params": params}
    # PyTorch eager as the app measures; and frozen TorchScript, which folds BatchNorm into the convolutions
    # (what a deployment runs), so memory-bound BN passes no longer dilute the FLOP savings
    runtimes = {"": lambda m: m, "_frozen": lambda m: torch.jit.freeze(torch.jit.script(copy.deepcopy(m).eval()))}
    for suffix, convert in runtimes.items():
        lat = [measure_latency(convert(m), shape, 64, runs=runs, warmup=2).median_ms for m in (model.module, pruned)]
        speedup = lat[0] / lat[1]
        figures |= {f"efficiency{suffix}": round(speedup / reduction, 3), f"latency_speedup{suffix}": round(speedup, 3),
                    f"latency_ms_b64{suffix}": [round(v, 2) for v in lat]}
    return figures


def bench_structured() -> dict:
    """``structured_latency_efficiency`` (target >= 0.85 on the ResNet-50-sized net): measured latency speedup
    at batch 64 / FLOP reduction, for 50% of channels removed; resnet20's figure too. Measured in PyTorch eager
    (``efficiency``) and as frozen TorchScript with BatchNorm folded (``efficiency_frozen``)."""
    figures: dict = {}
    big, shape = resnet50_model()
    figures |= {f"structured_latency_efficiency.resnet50.{k}": v for k, v in _structured(big, shape, runs=5).items()}
    small = load_model("demo:resnet20")
    figures |= {f"structured_latency_efficiency.resnet20.{k}": v for k, v in _structured(small, (1, 28, 28), runs=20).items()}
    return figures


def bench_quality() -> dict:
    """The classic notebook's table on mnist-cnn, from the CLI: each recipe in bench/recipes/ run with
    ``pruner prune`` (accuracy after fine-tuning), and the same recipe without fine-tuning (accuracy before)."""
    import subprocess
    import tempfile

    from pruner_core.measure.metrics import accuracy
    from pruner_core.pipeline.run import prune
    from pruner_core.pruning.recipe import Recipe

    data = load_data("demo:mnist5k")
    model = load_model("demo:mnist-cnn")
    figures = {"quality.dense.accuracy": accuracy(model.module, data.x_test, data.y_test),
               "quality.dense.params": sum(p.numel() for p in model.module.parameters())}
    for path in sorted((ROOT / "bench" / "recipes").glob("*.yaml")):
        name = path.stem
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "run"
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "pruner_core.frontends.cli", "prune", "demo:mnist-cnn", "--recipe", str(path),
                            "--out", str(out), "--quiet"], check=True, cwd=ROOT)
            seconds = time.perf_counter() - start
            metrics = json.loads((out / "metrics.json").read_text())
        recipe = Recipe.load(path)
        no_finetune = recipe.replace(finetune={**recipe.to_dict()["finetune"], "epochs": 0},
                                     schedule={"kind": "oneshot", "steps": 1})
        before = prune(model, data, no_finetune)
        figures |= {
            f"quality.{name}.recipe": recipe.summary(),
            f"quality.{name}.accuracy_before_finetune": accuracy(before.module, data.x_test, data.y_test),
            f"quality.{name}.accuracy": metrics["accuracy"],
            f"quality.{name}.params": metrics["params"],
            f"quality.{name}.nonzero_params": metrics["nonzero_params"],
            f"quality.{name}.size_bytes": metrics["size_bytes"],
            f"quality.{name}.cli_seconds": round(seconds, 1),
        }
    return figures


def bench_compare() -> dict:
    """The Compare page's table for mnist-cnn + 3 runs (masked 50%, 2:4, channel 50%), cold (every figure measured:
    accuracy, sizes, ONNX export, PyTorch + ONNX Runtime latency at batch 1 and 64) and warm (read from cache)."""
    import tempfile

    from pruner_core.compare.compare import compare
    from pruner_core.pipeline.run import run_experiment
    from pruner_core.pipeline.runs import list_runs
    from pruner_core.present.compare_table import comparison_table
    from pruner_core.pruning.recipe import Recipe

    data = load_data("demo:mnist5k")
    model = load_model("demo:mnist-cnn")
    figures: dict = {}
    with tempfile.TemporaryDirectory() as root:
        for recipe in ({"sparsity": 0.5}, {"granularity": "nm"}, {"granularity": "channel", "sparsity": 0.5}):
            run_experiment(model, data, Recipe.from_dict({**recipe, "finetune": {"epochs": 0}}), data_spec="demo:mnist5k",
                           root=root, latency_runs=(2, 1))
        runs = list_runs(root)
        start = time.perf_counter()
        entries = compare(model, data, runs, data_spec="demo:mnist5k", root=root)
        cold = time.perf_counter() - start
        start = time.perf_counter()
        compare(model, data, runs, data_spec="demo:mnist5k", root=root)
        warm = time.perf_counter() - start
    table = comparison_table(entries).set_index("kind")
    figures |= {"compare_seconds": round(cold, 2), "compare_seconds.warm": round(warm, 3)}
    for kind in ("masked", "channel"):
        row = table.loc[[kind]].iloc[0]
        for col in ("PyTorch b1 speed-up", "PyTorch b64 speed-up", "ORT b1 speed-up", "ORT b64 speed-up",
                    "dense size ratio", "gzip size ratio", "sparse size ratio", "ONNX size ratio"):
            figures[f"compare.{kind}.{col.replace(' ', '_')}"] = round(float(row[col]), 3)
    return figures


def bench_sensitivity() -> dict:
    """``sensitivity_seconds`` (targets <= 2 s mnist-cnn, <= 15 s resnet20, <= 10 s resnet20 channel): a full scan
    (every layer x 9 ratios, unstructured L1; channel without latency timing) as the Sensitivity page runs it by
    default: adaptive evaluation on the first half of the test split (500 of the 1,000 demo test images; the other
    half is kept for the checks), after a tiny warm-up scan (one-time imports). ``sensitivity_seconds_1000.*``: the
    same on all 1,000 test images, adaptive, and ``.full`` without adaptive evaluation, for comparison.

    The recommendation decided by measurement, at 50% and 70% parameter sparsity without fine-tuning: a scan of the
    first 500 test images, the measured search (choosing on 2,000 training images, its accuracy measured on those
    500), then every allocation measured on the other 500 test images, which neither used.
    ``recommend_vs_global.<model>.<target>``: searched minus one-global-threshold accuracy, points (target >= 0);
    ``prediction_error.<model>.<target>``: |accuracy shown - accuracy on the unseen images|, points (target <= 3)."""
    from pruner_core.measure.metrics import accuracy
    from pruner_core.sensitivity.allocate import global_baseline, recommend
    from pruner_core.sensitivity.measured import held_out, measured_search
    from pruner_core.sensitivity.refine import apply_and_measure
    from pruner_core.sensitivity.scan import scan

    data = load_data("demo:mnist5k")
    search, report = held_out(data, 500)
    figures: dict = {}
    for name in ("mnist-cnn", "resnet20"):
        model = load_model(f"demo:{name}")
        scan(model, data, ratios=[0.5], samples=10)
        for key, samples, adaptive in (("sensitivity_seconds", 500, True), ("sensitivity_seconds_1000", 1000, True),
                                       ("sensitivity_seconds_1000.full", 1000, False)):
            for granularity, suffix in (("unstructured", ""), ("channel", ".channel")):
                start = time.perf_counter()
                sens = scan(model, data, granularity=granularity, samples=samples, latency=False, adaptive=adaptive)
                figures[f"{key}.{name}{suffix}"] = round(time.perf_counter() - start, 2)
                figures[f"sensitivity_units.{name}{suffix}"] = len(sens.units)
                figures[f"sensitivity_samples_used.{name}{suffix}" + ("" if samples == 500 else f".{samples}")
                        + ("" if adaptive else ".full")] = sum(sum(u.samples) for u in sens.units)
        held = scan(model, search, samples=500)
        figures[f"recommend.{name}.dense_accuracy"] = accuracy(model.module.eval(), report.x_test, report.y_test)
        for target in (0.5, 0.7):
            pct = f"{target * 100:.0f}"
            rec = recommend(held, "sparsity", target)
            start = time.perf_counter()
            searched = measured_search(model, data, held, rec, samples=500)
            seconds = time.perf_counter() - start
            measured = {label: apply_and_measure(model, report, recipe) for label, recipe in (
                ("searched", searched.recommendation.recipe), ("curves", rec.recipe), ("uniform", rec.uniform["recipe"]),
                ("global_threshold", global_baseline(held, "sparsity", target)))}
            shown = searched.recommendation.predicted["accuracy"]
            figures |= {f"recommend.{name}.{pct}.{label}_accuracy": m.accuracy for label, m in measured.items()}
            figures |= {
                f"recommend.{name}.{pct}.searched_param_sparsity": round(measured["searched"].param_sparsity, 4),
                f"recommend.{name}.{pct}.shown_accuracy": round(shown, 4),
                f"recommend.{name}.{pct}.curves_predicted_accuracy": round(rec.predicted["accuracy"], 4),
                f"recommend.{name}.{pct}.search_start": searched.start,
                f"recommend.{name}.{pct}.search_evaluations": searched.evaluations,
                f"recommend.{name}.{pct}.search_seconds": round(seconds, 1),
                f"recommend_vs_global.{name}.{pct}": round(
                    (measured["searched"].accuracy - measured["global_threshold"].accuracy) * 100, 2),
                f"prediction_error.{name}.{pct}": round(abs(shown - measured["searched"].accuracy) * 100, 2),
            }
    return figures


def bench_sensitivity_budget() -> dict:
    """``sensitivity_budget`` (once asserted, on this machine's speed, by tests/pages/test_sensitivity_page.py):
    resnet20 scanned at one ratio on up to 1,000 test images with a 2-second time budget, as that test sets the page:
    the samples the budget left (``samples``; the page test now checks the lowering on a scripted clock), and the
    scan's wall time against the budget (``ratio``: seconds / budget), medians of 3 after a warm-up scan."""
    from pruner_core.sensitivity.scan import scan

    data = load_data("demo:mnist5k")
    model = load_model("demo:resnet20")
    budget, requested = 2.0, 1000
    scan(model, data, ratios=[0.5], samples=10)
    seconds, samples = [], []
    for _ in range(3):
        start = time.perf_counter()
        sens = scan(model, data, ratios=[0.5], samples=requested, seconds=budget)
        seconds.append(time.perf_counter() - start)
        samples.append(sens.settings["samples"])
    s, n = _median(seconds), _median(samples)
    prefix = "sensitivity_budget.resnet20"
    return {f"{prefix}.budget_s": budget, f"{prefix}.samples_requested": requested, f"{prefix}.samples": n,
            f"{prefix}.seconds": round(s, 2), f"{prefix}.ratio": round(s / budget, 3)}


def bench_coverage() -> dict:
    """``coverage`` (target 1.0): the fraction of (architecture, step) cells of the test zoo (tests/zoo/: 18
    architectures x load, info, analyze, sensitivity, prune per granularity, ONNX export, reload, compare) that work
    or refuse up front naming the layer; the failing cells are listed."""
    import warnings

    from tests.zoo.coverage import coverage, run_all

    warnings.simplefilter("ignore")
    start = time.perf_counter()
    results = run_all()
    failing = sorted(f"{arch}/{step}" for (arch, step), r in results.items() if not r.passed)
    return {"coverage.fraction": round(coverage(results), 3), "coverage.cells": len(results),
            "coverage.failing": failing, "coverage.seconds": round(time.perf_counter() - start, 1)}


BENCHMARKS: dict[str, Callable[[], dict]] = {
    "vitals": bench_vitals,
    "analysis": bench_analysis,
    "apply": bench_apply,
    "global_threshold": bench_global_threshold,
    "finetune": bench_finetune,
    "structured": bench_structured,
    "quality": bench_quality,
    "compare": bench_compare,
    "sensitivity": bench_sensitivity,
    "sensitivity_budget": bench_sensitivity_budget,
    "sensitivity_resnet50": bench_sensitivity_resnet50,
    "int8": bench_int8,
    "ddp": bench_ddp,
    "stream": bench_stream,
    "coverage": bench_coverage,
    "idle_server_cpu": bench_idle_server_cpu,
    "page_first_paint": bench_page_first_paint,
}


def machine() -> dict:
    return {
        "cpu": device_name(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help=f"comma-separated benchmarks to run (of: {', '.join(BENCHMARKS)})")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results.json", help="output file")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark '{unknown[0]}'; available: {', '.join(BENCHMARKS)}")
    results = json.loads(args.json.read_text()) if args.only and args.json.is_file() else {}
    for name in names:
        print(f"[bench] {name} …", flush=True)
        start = time.perf_counter()
        figures = BENCHMARKS[name]()
        for key, value in figures.items():
            print(f"  {key} = {value}")
        results |= figures
        results[f"{name}.bench_seconds"] = round(time.perf_counter() - start, 2)
    results["machine"] = machine()
    results["date"] = datetime.now(UTC).isoformat(timespec="seconds")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"[bench] wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
