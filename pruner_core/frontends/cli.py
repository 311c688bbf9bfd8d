"""The ``pruner`` command line: the same engine as the app, headless.

Every command that takes a MODEL accepts ``--weights``, ``--data`` and ``--trust``. Errors at
the boundary print one line and exit with status 2, never a traceback.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from pruner_core.config.text import parse_fractions
from pruner_core.errors import PrunerError
from pruner_core.pruning.criteria import CRITERIA
from pruner_core.pruning.granularities import GRANULARITIES


def load_any_model(spec: str, weights: str | None, trust: bool):
    """Load MODEL as every command does: any spec, run folders included (importing the pipeline registers them)."""
    import pruner_core.pipeline  # noqa: F401
    from pruner_core.io.models import load_model

    return load_model(spec, weights=weights, trust=trust)


def data_for(loaded, spec: str):
    """Load --data as every command does: arranged as the loaded model takes it (see :func:`pruner_core.io.fit.fit_data`)."""
    from pruner_core.io.data import load_data
    from pruner_core.io.fit import fit_data

    return fit_data(loaded, load_data(spec))


def data_spec(data: str, preprocess: str | None, size: int | None) -> str:
    """``--data`` with ``--preprocess`` and ``--size`` as one data spec (``SOURCE|TOKEN``), which a run records."""
    from pruner_core.io.preprocess import respec

    return respec(data, preprocess, size)


app = typer.Typer(add_completion=False, no_args_is_help=True, help="Pruning Explorer: inspect and prune PyTorch models.")

ModelArg = Annotated[str, typer.Argument(
    help="demo:NAME, package.module:factory, a .pt2/.pt/.pth/.ts file or a run folder", show_default=False)]
WeightsOpt = Annotated[
    Path | None, typer.Option("--weights", help="state_dict file (.safetensors/.pt/.pth) for the architecture")
]
DataOpt = Annotated[str, typer.Option("--data", help="demo:mnist5k, a .npz (x, y[, x_test, y_test]), an image folder "
                                      "(one sub-folder per class; streamed) or its .zip")]
PreprocessOpt = Annotated[str | None, typer.Option(
    "--preprocess", help="how pixels become inputs: a preset (unit, imagenet, inception, mnist), "
    "'imagenet,resize=256' or a YAML file (preset, size, resize, channels, mean, std)")]
SizeOpt = Annotated[int | None, typer.Option("--size", help="resize the shorter side and centre-crop to this side",
                                             min=1, max=4096)]
TrustOpt = Annotated[bool, typer.Option("--trust", help="allow unpickling a whole model (runs code from the file)")]
JsonOpt = Annotated[Path | None, typer.Option("--json", help="also write the figures as JSON to this path")]


def writable(path: Path | None, option: str) -> None:
    """Refuse an output path that cannot be written as a file, before any measuring (a folder, a missing parent)."""
    if path is None:
        return
    if path.is_dir():
        raise PrunerError(f"{option} '{path}' is a folder; name a file to write")
    if not path.parent.is_dir():
        raise PrunerError(f"{option} '{path}': its folder '{path.parent}' does not exist")


def user_errors(fn: Callable) -> Callable:
    """Turn a PrunerError into one line on stderr and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except PrunerError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None

    return wrapper


@app.command()
@user_errors
def info(
    model: ModelArg,
    weights: WeightsOpt = None,
    data: Annotated[str | None, typer.Option("--data", help="as for prune; default: a run's own data, else demo:mnist5k")] = None,
    preprocess: PreprocessOpt = None,
    size: SizeOpt = None,
    trust: TrustOpt = False,
    json_path: JsonOpt = None,
    runs: Annotated[int, typer.Option(help="timed runs at batch 1 (batch 64 uses a third)", min=1, max=10_000)] = 30,
) -> None:
    """Measure and print a model's vital signs: parameters, FLOPs, size, accuracy, latency, layers."""
    from pruner_core.measure.metrics import vital_signs
    from pruner_core.present.tables import info_lines

    writable(json_path, "--json")
    loaded = load_any_model(model, weights, trust)
    data = data_spec(data or _run_data(model) or "demo:mnist5k", preprocess, size)
    signs = vital_signs(loaded, data_for(loaded, data), latency_runs=(runs, max(3, runs // 3)))
    typer.echo(info_lines(signs))
    if json_path:
        json_path.write_text(json.dumps(signs.to_json(), indent=2) + "\n")
        typer.echo(f"\nwrote {json_path}")


def _run_data(spec: str) -> str | None:
    """The data a run folder was pruned with, when ``spec`` is one."""
    from pruner_core.pipeline.runs import load_run

    if not Path(spec).is_dir():
        return None
    return load_run(spec).base.get("data")


@app.command()
@user_errors
def prune(
    model: ModelArg,
    recipe: Annotated[Path, typer.Option("--recipe", help="the recipe (YAML) to apply")],
    out: Annotated[Path, typer.Option("--out", help="the run folder to create (must not exist or be empty)")],
    weights: WeightsOpt = None,
    data: DataOpt = "demo:mnist5k",
    preprocess: PreprocessOpt = None,
    size: SizeOpt = None,
    trust: TrustOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="no progress lines")] = False,
    device: Annotated[str, typer.Option("--device", help="where fine-tuning runs: cpu, cuda (under torchrun each "
                                        "rank's GPU, NCCL) or cuda:N")] = "cpu",
    mlflow: Annotated[str | None, typer.Option("--mlflow", help="also log the run to this MLflow tracking URI, e.g. "
                                               "sqlite:///mlruns.db or http://host:5000 (the run folder stays the "
                                               "record)")] = None,
) -> None:
    """Prune and fine-tune MODEL with a recipe; write the experiment folder (weights, masks, metrics, history)."""
    from pruner_core.pipeline.estimate import estimate
    from pruner_core.pipeline.run import run_experiment
    from pruner_core.pruning.recipe import Recipe

    plan = Recipe.load(recipe)
    data = data_spec(data, preprocess, size)
    loaded = load_any_model(model, weights, trust)
    dataset = data_for(loaded, data)
    last = [""]

    def show(update) -> None:
        line = update.message if update.progress is None else f"fine-tuning epoch {update.progress.epoch:.2f}"
        if update.progress is not None and update.progress.test_accuracy is not None:
            line += f": test accuracy {update.progress.test_accuracy:.2%}"
        elif update.progress is not None:
            return  # one line per epoch, not per step
        if not quiet and line != last[0]:
            typer.echo(line)
            last[0] = line

    from pruner_core.pipeline import distributed

    on = distributed.training_device(device)
    if distributed.init_from_env(on):  # under torchrun: every rank prunes and fine-tunes; rank 0 writes the folder
        rank, size = distributed.world()
        if rank != 0:
            from pruner_core.pipeline.run import prune as prune_model

            done = prune_model(loaded, dataset, plan, device=on)
            typer.echo(f"rank {rank} of {size}: pruned {distributed.digest(done.masks, done.structure)}")
            distributed.close()
            return
    if not quiet:
        typer.echo(estimate(loaded, dataset, plan).sentence().replace("cancelled at any step", "stopped with Ctrl-C"))
    run = run_experiment(loaded, dataset, plan, data_spec=data, folder=out, callback=show, device=on)
    rank, size = distributed.world()
    if size > 1:
        from pruner_core.pipeline.replay import load_run_masks

        typer.echo(f"rank 0 of {size}: pruned {distributed.digest(load_run_masks(run), run.structure)}")
        distributed.close()
    m = run.signs
    typer.echo(
        f"done: accuracy {m.accuracy:.2%}, {m.nonzero_params:,} of {m.params:,} parameters non-zero, "
        f"{m.flops:,} FLOPs, latency {m.latency_ms['batch1']:.3f} ms (batch 1) / {m.latency_ms['batch64']:.3f} ms (batch 64)"
    )
    typer.echo(f"wrote {run.path}")
    if mlflow:
        import tempfile

        from pruner_core.frontends.tracking import log_run

        with tempfile.TemporaryDirectory(prefix="pruner-report-") as tmp:
            report = _write_comparison([run.path], Path(tmp) / "report.html", None, None)
            typer.echo(f"mlflow   run {log_run(run, mlflow, report=report)} in {mlflow}")


@app.command()
@user_errors
def export(
    run: Annotated[Path, typer.Argument(help="a finished run folder (from pruner prune or the Prune page)")],
    out: Annotated[Path, typer.Option("--out", help="folder to write the weights, recipe, ONNX and report into")],
    onnx: Annotated[bool, typer.Option("--onnx/--no-onnx", help="also write model.onnx (checked against PyTorch)")] = True,
    report: Annotated[bool, typer.Option("--report/--no-report", help="also write report.html: this run against its "
                                         "base model, measured here (opens offline)")] = False,
) -> None:
    """Export a run: pruned weights (safetensors, + gzip), the recipe that reproduces it, ONNX (opset 17), a report."""
    from pruner_core.io.data import load_data
    from pruner_core.pipeline.export import export_run
    from pruner_core.pipeline.runs import load_run

    data = load_run(run).base.get("data")
    written = export_run(run, out, onnx_file=onnx, test_data=load_data(data) if data else None)
    sizes = written["sizes"]
    typer.echo(f"weights  {written['weights']} ({sizes['dense_bytes']:,} bytes; gzip {sizes['gzip_bytes']:,}; "
               f"sparse encoding {sizes['sparse_bytes']:,})")
    typer.echo(f"recipe   {written['recipe']}")
    if "onnx" in written:
        diff = written.get("onnx_max_diff")
        check = f"; max |ONNX Runtime - PyTorch| = {diff:.2e} on the test data" if diff is not None else ""
        typer.echo(f"onnx     {written['onnx']} ({written['onnx_bytes']:,} bytes, passes onnx.checker{check})")
    if "huggingface" in written:
        diff = written.get("huggingface_max_diff")
        check = f"; from_pretrained reloads it, max |difference| = {diff:.2e} on the test data" if diff is not None else ""
        typer.echo(f"hf       {written['huggingface']} (config.json + model.safetensors{check})")
    if "huggingface_refused" in written:
        typer.echo(f"hf       not written: {written['huggingface_refused']}")
    if report:
        path = _write_comparison([run], out / "report.html", None, None)
        typer.echo(f"report   {path}")


def _write_comparison(runs: list[Path], report: Path | None, json_path: Path | None, data: str | None) -> Path | None:
    """Compare run folders against the first one's base model; print the table; write the report / JSON."""
    writable(json_path, "--json")
    writable(report, "--report")
    from pruner_core.compare.compare import compare_saved
    from pruner_core.pipeline.runs import list_runs, load_run
    from pruner_core.present.compare_table import comparison_table, display_table, measurement_notes, table_notes
    from pruner_core.present.report import write_report

    loaded = []
    for path in runs:
        listed = {r.path.resolve(): r for r in list_runs(path.parent)}
        loaded.append(listed.get(path.resolve()) or load_run(path))  # a damaged run is listed, not raised
    entries, dataset = compare_saved(loaded, data_spec=data)
    for entry in entries:  # the table names each model by its id: what each is, first
        typer.echo(entry.label)
    table = comparison_table(entries)
    typer.echo(display_table(table).to_string(index=False))
    for line in [*table_notes(table), *measurement_notes(entries)]:
        typer.echo(f"  {line}")
    if json_path is not None:
        json_path.write_text(json.dumps([{"key": e.key, "label": e.label, "kind": e.kind,
                                          "figures": e.figures.to_json() if e.figures else None,
                                          "warnings": e.warnings, "error": e.error} for e in entries], indent=1))
    if report is None:
        return None
    return write_report(report, entries, title=f"Pruning report: {entries[0].label}", classes=dataset.classes,
                        data_label=dataset.name)


@app.command()
@user_errors
def quantize(
    run: Annotated[Path, typer.Argument(help="a finished run folder (from pruner prune or the Prune page)")],
    calibration: Annotated[int, typer.Option("--calibration", help="training images that set the INT8 activation "
                                             "ranges (static)")] = 256,
    dynamic: Annotated[bool, typer.Option("--dynamic", help="dynamic INT8: no calibration, ranges at run time")] = False,
    method: Annotated[str, typer.Option("--method", help="calibration: minmax, entropy or percentile")] = "minmax",
    per_tensor: Annotated[bool, typer.Option("--per-tensor", help="one weight scale per tensor, not per channel")] = False,
    fmt: Annotated[str, typer.Option("--format", help="qdq (QuantizeLinear/DequantizeLinear) or qoperator")] = "qdq",
    exclude: Annotated[list[str] | None, typer.Option("--exclude", help="a layer to keep in FP32 (repeat it)")] = None,
    data: Annotated[str | None, typer.Option("--data", help="calibrate and measure on this data (default: the "
                                             "run's)")] = None,
    json_out: JsonOpt = None,
) -> None:
    """INT8 in ONNX Runtime for a run: writes RUN/model.int8.onnx and measures it beside the run's own FP32 ONNX."""
    writable(json_out, "--json")
    from pruner_core.pipeline.quantize import quantize_run
    from pruner_core.pipeline.replay import load_run_model
    from pruner_core.pipeline.runs import load_run
    from pruner_core.present.tables import int8_lines
    from pruner_core.pruning.recipe import Quantize

    settings = Quantize(kind="int8_dynamic" if dynamic else "int8_static", calibration_samples=calibration,
                        per_channel=not per_tensor, format=fmt, method=method, exclude=list(exclude or []))
    loaded = load_run(run)
    spec = data or loaded.base.get("data")
    if not spec:
        raise PrunerError(f"run '{loaded.id}' does not record its data; pass --data")
    figures = quantize_run(loaded, data_for(load_run_model(loaded), spec), settings)
    for line in int8_lines(figures, run / "model.int8.onnx"):
        typer.echo(line)
    if json_out is not None:
        json_out.write_text(json.dumps(figures.to_json(), indent=1))


@app.command("compare")
@user_errors
def compare_cmd(
    runs: Annotated[list[Path], typer.Argument(help="run folders; the first one's base model is the original")],
    data: Annotated[str | None, typer.Option("--data", help="measure on this data (default: the first run's)")] = None,
    report: Annotated[Path | None, typer.Option("--report", help="write a self-contained HTML report here")] = None,
    json_out: JsonOpt = None,
) -> None:
    """Measure runs side by side with their original: accuracy, sizes, PyTorch and ONNX Runtime latency (cached)."""
    path = _write_comparison(runs, report, json_out, data)
    if path is not None:
        typer.echo(f"report   {path}")


@app.command()
@user_errors
def analyze(
    model: ModelArg,
    json_path: Annotated[Path, typer.Option("--json", help="write the per-layer statistics as JSON to this path")],
    weights: WeightsOpt = None,
    data: DataOpt = "demo:mnist5k",
    preprocess: PreprocessOpt = None,
    size: SizeOpt = None,
    trust: TrustOpt = False,
    samples: Annotated[int, typer.Option(help="calibration samples for APoZ and mean activation", min=1)] = 256,
) -> None:
    """Per-layer redundancy signals: channel L1/L2, kernel norms, APoZ, BN scale, coupled group."""
    writable(json_path, "--json")
    from pruner_core.measure.analysis import analyze as run_analysis

    data = data_spec(data, preprocess, size)
    loaded = load_any_model(model, weights, trust)
    dataset = data_for(loaded, data)
    result = run_analysis(loaded, dataset, samples=samples)
    json_path.write_text(json.dumps({"model": loaded.label, "data": dataset.name, "samples": result.samples,
                                     "forward_ms": result.forward_ms, "notes": result.notes,
                                     "layers": [la.to_dict() for la in result.layers],
                                     "heads": [ha.to_dict() for ha in result.heads]}) + "\n")
    for la in result.layers:
        apoz = f"{sum(la.apoz) / len(la.apoz):.1%}" if la.apoz else "n/a"
        share = f"{la.time_share:.1%}" if la.time_share is not None else "n/a"
        typer.echo(f"{la.name:<24} mean APoZ {apoz:>6}  BN {la.bn or 'n/a'}  group {la.group}  time {share:>6}")
    for ha in result.heads:
        typer.echo(f"{ha.attention:<24} {len(ha.l2)} heads, L2 " + " ".join(f"{v:.3g}" for v in ha.l2))
    typer.echo(f"wrote {json_path} ({result.samples} calibration samples, {result.seconds:.2f} s)")


GranularityOpt = Annotated[str, typer.Option("--granularity", help=", ".join(g for g in GRANULARITIES if g != "nm") + " (for channel a unit is a coupled group)")]
CriterionOpt = Annotated[str, typer.Option("--criterion", help=", ".join(CRITERIA) + " (must suit the granularity)")]
RatiosOpt = Annotated[str, typer.Option("--ratios", help="fractions to try, comma-separated (of weights; of output channels for channel)")]
SamplesOpt = Annotated[int, typer.Option("--samples", help="test images to evaluate on (the first N)", min=1)]


@app.command()
@user_errors
def sensitivity(
    model: ModelArg,
    json_path: Annotated[Path, typer.Option("--json", help="write the curves as JSON to this path")],
    weights: WeightsOpt = None,
    data: DataOpt = "demo:mnist5k",
    preprocess: PreprocessOpt = None,
    size: SizeOpt = None,
    trust: TrustOpt = False,
    granularity: GranularityOpt = "unstructured",
    criterion: CriterionOpt = "l1",
    ratios: RatiosOpt = "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9",
    samples: SamplesOpt = 1000,
    latency: Annotated[bool, typer.Option("--latency/--no-latency", help="channel: time each group against kept channels")] = True,
) -> None:
    """Prune each layer (or coupled group) alone at each ratio, no fine-tuning: accuracy and loss curves."""
    writable(json_path, "--json")
    from pruner_core.sensitivity.scan import scan

    data = data_spec(data, preprocess, size)
    loaded = load_any_model(model, weights, trust)
    result = scan(loaded, data_for(loaded, data), granularity=granularity, criterion=criterion, ratios=parse_fractions(ratios, "--ratios"),
                  samples=samples, latency=latency)
    result.save(json_path)
    typer.echo(f"dense accuracy {result.dense_accuracy:.2%}, loss {result.dense_loss:.4f} ({result.settings['samples']} test samples)")
    header = "".join(f"{r:>7.0%}" for r in result.settings["ratios"])
    typer.echo(f"{'accuracy at ratio':<28}{header}")
    for unit in result.units:
        label = unit.name + (f" (+{len(unit.layers) - 1})" if len(unit.layers) > 1 else "")
        typer.echo(f"{label:<28}" + "".join(f"{a:>7.1%}" for a in unit.accuracy))
    typer.echo(f"least sensitive first: {', '.join(result.least_sensitive())}")
    typer.echo(f"wrote {json_path} ({result.seconds:.1f} s)")


@app.command()
@user_errors
def recommend(
    model: ModelArg,
    out: Annotated[Path, typer.Option("--out", help="write the recommended recipe (YAML) here")],
    weights: WeightsOpt = None,
    data: DataOpt = "demo:mnist5k",
    preprocess: PreprocessOpt = None,
    size: SizeOpt = None,
    trust: TrustOpt = False,
    granularity: GranularityOpt = "unstructured",
    criterion: CriterionOpt = "l1",
    samples: SamplesOpt = 1000,
    target_sparsity: Annotated[float | None, typer.Option("--target-sparsity", help="fraction of the prunable weights to remove")] = None,
    target_flops: Annotated[float | None, typer.Option("--target-flops", help="fraction of the prunable layers' FLOPs to remove")] = None,
    max_drop: Annotated[float | None, typer.Option("--max-drop", help="largest accuracy drop allowed (predicted), e.g. 0.01")] = None,
    scan_path: Annotated[Path | None, typer.Option("--scan", help="curves from pruner sensitivity --json (else scanned now)")] = None,
    check: Annotated[bool, typer.Option("--check/--no-check", help="apply both recipes without fine-tuning and measure them")] = False,
    refine_: Annotated[bool, typer.Option("--search/--no-search", "--refine/--no-refine", help="sparsity or FLOP "
                                          "target: decide by measurement (candidates, then moves between units, each "
                                          "measured on the whole pruned network); --refine is the old name")] = False,
) -> None:
    """Per-layer ratios that meet a target, from sensitivity curves (sensitive layers keep more); writes a recipe."""
    from pruner_core.errors import SpecError
    from pruner_core.sensitivity.allocate import global_baseline
    from pruner_core.sensitivity.allocate import recommend as allocate
    from pruner_core.sensitivity.measured import held_out, measured_search
    from pruner_core.sensitivity.refine import apply_and_measure
    from pruner_core.sensitivity.result import Sensitivity
    from pruner_core.sensitivity.scan import scan

    given = [(k, v) for k, v in (("sparsity", target_sparsity), ("flops", target_flops), ("drop", max_drop)) if v is not None]
    if len(given) != 1:
        raise SpecError("give exactly one target: --target-sparsity S, --target-flops F or --max-drop D"
                        + (f"; got {len(given)}" if given else ""))
    data = data_spec(data, preprocess, size)
    loaded = load_any_model(model, weights, trust)
    dataset = data_for(loaded, data)
    if scan_path is not None:
        curves = Sensitivity.load(scan_path)
        if curves.fingerprint != loaded.fingerprint():
            raise SpecError(f"--scan '{scan_path}' was measured on other weights ({curves.model}); scan this model again")
        if curves.data != dataset.name:
            raise SpecError(f"--scan '{scan_path}' was measured on data '{curves.data}', not '{dataset.name}'; pass "
                            f"--data for that data set, or scan again")
        typer.echo(f"curves from {scan_path}: {curves.settings['granularity']} / {curves.settings['criterion']} "
                   "(--granularity and --criterion are the scan's)")
    else:
        curves = scan(loaded, dataset, granularity=granularity, criterion=criterion, samples=samples, latency=False)
    rec = allocate(curves, *given[0])
    if refine_:
        searched = measured_search(loaded, dataset, curves, rec, samples=curves.settings["samples"])
        for row in searched.candidates:
            mark = "  <- start" if row["name"] == searched.start else ""
            typer.echo(f"candidate {row['name']:<24} accuracy {row['accuracy']:.2%}, {row['target']:.1%} target{mark}")
        typer.echo(f"search: {searched.evaluations} evaluations in {searched.seconds:.1f} s, "
                   f"{sum(m['kept'] for m in searched.moves)} of {len(searched.moves)} moves kept; {searched.search}")
        rec = searched.recommendation
    rec.recipe.save(out)
    p, u = rec.predicted, rec.uniform["predicted"]
    for label, pred in (("recommended", p), (f"uniform {rec.uniform['ratio']:.3f}", u)):
        flops = f"{pred['flop_reduction']:.1%}" if pred["flop_reduction"] is not None else "n/a"
        how = (f"measured on {pred['measured_on']:,} held-out test images" if "measured_on" in pred
               else "per-layer drops compounded")
        typer.echo(f"{label:<20} predicted: {pred['param_sparsity']:.1%} sparsity, {flops} FLOP reduction, "
                   f"accuracy {pred['accuracy']:.2%} (drop {pred['accuracy_drop']:.2%}, {how})")
    if check:
        _, report = held_out(dataset, curves.settings["samples"])  # test images neither scan nor search saw
        for label, recipe in (("recommended", rec.recipe), ("uniform", rec.uniform["recipe"]),
                              ("global threshold", global_baseline(curves, *given[0]))):
            if recipe is None:
                continue
            m = apply_and_measure(loaded, report, recipe)
            flops = "FLOP" if curves.settings["granularity"] == "channel" else "non-zero FLOP"
            typer.echo(f"{label:<20} measured (no fine-tune): {m.param_sparsity:.1%} sparsity, {m.flop_reduction:.1%} "
                       f"{flops} reduction, accuracy {m.accuracy:.2%} on the last {m.samples:,} test images")
    typer.echo("ratios: " + ", ".join(f"{k} {v:.3f}" for k, v in rec.ratios.items()))
    typer.echo(f"wrote {out}")


@app.command("train-demo")
@user_errors
def train_demo_cmd(
    names: Annotated[list[str] | None, typer.Argument(help="demo models to train (default: all)")] = None,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    epochs: Annotated[int | None, typer.Option(help="epochs (default: each model's own)", min=1)] = None,
    out: Annotated[Path | None, typer.Option(help="output folder (default: assets/models)")] = None,
) -> None:
    """Train the demo models, seeded, on demo:mnist5k and write safetensors weights + a JSON card."""
    from pruner_core.errors import SpecError
    from pruner_core.io.archs import ARCHITECTURES
    from pruner_core.pipeline.train import MODELS_DIR, train_demo

    names = names or list(ARCHITECTURES)
    unknown = [n for n in names if n not in ARCHITECTURES]
    if unknown:
        raise SpecError(f"unknown demo model '{unknown[0]}'; available: {', '.join(ARCHITECTURES)}")
    cards = train_demo(
        names, seed=seed, epochs=epochs, out_dir=out or MODELS_DIR,
        progress=lambda n, e, loss: typer.echo(f"{n}: epoch {e} loss {loss:.4f}"),
    )
    for card in cards:
        typer.echo(f"{card['name']}: test accuracy {card['test_accuracy']:.2%} ({card['train_seconds']} s)")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
