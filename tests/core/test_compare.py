"""The comparison: measured figures equal what an independent computation or the files on disk say; cached per run."""

from __future__ import annotations

import dataclasses
import gzip
import json
import re
import shutil

import onnx
import pytest
import torch

from pruner_core.compare import compare as cmp
from pruner_core.compare.result import ModelFigures, Sizes
from pruner_core.errors import PrunerError
from pruner_core.io.export import onnx_max_diff
from pruner_core.io.models import load_model
from pruner_core.measure.metrics import Latency
from pruner_core.pipeline.replay import load_run_masks, load_run_model
from pruner_core.pipeline.run import run_experiment
from pruner_core.pipeline.runs import list_runs
from pruner_core.present.compare_table import comparison_table, display_table, pareto_front
from pruner_core.present.report import html_report
from pruner_core.pruning.recipe import Recipe

FAST = {"latency_runs": (3, 2)}


@pytest.fixture(scope="module")
def mnist_cnn():
    return load_model("demo:mnist-cnn")


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory, mnist_cnn, demo_data):
    """A runs folder with a masked (50% unstructured, 0.1 epoch) and a channel-pruned (50%) run of mnist-cnn."""
    root = tmp_path_factory.mktemp("runs")
    for recipe in (
        {"sparsity": 0.5, "finetune": {"epochs": 0.1}},
        {"granularity": "channel", "criterion": "l2", "sparsity": 0.5, "finetune": {"epochs": 0}},
    ):
        run_experiment(mnist_cnn, demo_data, Recipe.from_dict(recipe), data_spec="demo:mnist5k", root=root,
                       latency_runs=(2, 1))
    return root


@pytest.fixture(scope="module")
def entries(runs_root, mnist_cnn, demo_data):
    runs = list_runs(runs_root)
    return cmp.compare(mnist_cnn, demo_data, runs, data_spec="demo:mnist5k", root=runs_root, **FAST)


def by_kind(entries, kind):
    return next(e for e in entries if e.kind == kind)


def test_the_original_comes_first_then_each_run_with_its_kind(entries):
    assert [e.kind for e in entries] == ["original", "channel", "masked"]  # newest run first
    assert all(e.figures and not e.error and not e.warnings for e in entries)


def test_sizes_equal_the_bytes_of_the_files_written(entries, runs_root):
    for e in entries:
        folder = cmp.original_cache_dir(load_model("demo:mnist-cnn"), runs_root) if e.kind == "original" else (
            runs_root / e.key / "compare")
        sizes = e.figures.sizes
        dense = (folder / "weights.safetensors").read_bytes()
        assert sizes.dense_bytes == len(dense)
        assert sizes.gzip_bytes == (folder / "weights.safetensors.gz").stat().st_size
        assert gzip.decompress((folder / "weights.safetensors.gz").read_bytes()) == dense
        assert sizes.onnx_bytes == (folder / "model.onnx").stat().st_size


def test_sparse_size_is_bitmask_plus_nonzero_values(entries, runs_root):
    masked = by_kind(entries, "masked")
    module = load_run_model(runs_root / masked.key).module
    tensors = module.state_dict().values()
    expected = sum((t.numel() + 7) // 8 + int(torch.count_nonzero(t)) * t.element_size() for t in tensors)
    assert masked.figures.sizes.sparse_bytes == expected
    assert masked.figures.sizes.sparse_bytes < 0.6 * masked.figures.sizes.dense_bytes
    assert masked.figures.sizes.dense_bytes == entries[0].figures.sizes.dense_bytes  # masks keep shapes


def test_channel_run_is_physically_smaller_and_its_onnx_matches_pytorch(entries, runs_root, demo_data):
    channel, original = by_kind(entries, "channel"), entries[0]
    assert channel.figures.params < 0.3 * original.figures.params
    assert channel.figures.sizes.onnx_bytes < 0.3 * original.figures.sizes.onnx_bytes
    assert channel.figures.flops < original.figures.flops
    path = runs_root / channel.key / "compare" / "model.onnx"
    onnx.checker.check_model(str(path), full_check=True)
    assert onnx.load(str(path)).opset_import[0].version >= 17
    assert onnx_max_diff(path, load_run_model(runs_root / channel.key).module, demo_data.x_test) <= 1e-4


def test_accuracy_per_class_agrees_with_an_independent_count(entries, runs_root, demo_data):
    masked = by_kind(entries, "masked")
    module = load_run_model(runs_root / masked.key).module
    with torch.no_grad():
        predicted = module(demo_data.x_test).argmax(1)
    for c in range(10):
        of_c = demo_data.y_test == c
        assert masked.figures.per_class[c] == pytest.approx(float((predicted[of_c] == c).float().mean()))
    assert masked.figures.accuracy == pytest.approx(float((predicted == demo_data.y_test).float().mean()))
    assert masked.figures.accuracy == pytest.approx(json.loads((runs_root / masked.key / "metrics.json").read_text())["accuracy"])


def test_per_layer_sparsity_equals_the_runs_masks(entries, runs_root):
    masked = by_kind(entries, "masked")
    masks = load_run_masks(runs_root / masked.key)
    for name, mask in masks.items():
        assert masked.figures.sparsity[name] == pytest.approx(1 - float(mask.float().mean()))


def test_latency_is_measured_for_both_runtimes_at_batch_1_and_64_and_labelled(entries):
    for e in entries:
        for runtime in ("pytorch", "onnxruntime"):
            for batch in (1, 64):
                lat = e.figures.latency[runtime][f"batch{batch}"]
                assert lat.batch == batch and lat.median_ms > 0 and lat.p25_ms <= lat.median_ms <= lat.p75_ms
                assert f"batch {batch}" in lat.label and "thread" in lat.label and "CPU" in lat.label
    assert "ONNX Runtime" in entries[0].figures.latency["onnxruntime"]["batch1"].runtime


def test_second_comparison_reads_the_cache_without_measuring(entries, runs_root, mnist_cnn, demo_data, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("measured again although cached")

    monkeypatch.setattr(cmp, "measure_static", fail)
    monkeypatch.setattr(cmp, "time_together", fail)
    again = cmp.compare(mnist_cnn, demo_data, list_runs(runs_root), data_spec="demo:mnist5k", root=runs_root, **FAST)
    assert [e.figures for e in again] == [e.figures for e in entries]


def test_a_new_model_is_measured_and_every_model_timed_again_together(entries, runs_root, mnist_cnn, demo_data,
                                                                       monkeypatch):
    runs = list_runs(runs_root)
    cmp.forget(runs_root / runs[0].id / "compare")
    statics, timed = [], []
    measure_static, time_together = cmp.measure_static, cmp.time_together
    monkeypatch.setattr(cmp, "measure_static", lambda *a, **k: statics.append(a[2]) or measure_static(*a, **k))
    monkeypatch.setattr(cmp, "time_together", lambda subjects, **k: timed.append(len(subjects)) or time_together(subjects, **k))
    again = cmp.compare(mnist_cnn, demo_data, runs, data_spec="demo:mnist5k", root=runs_root, **FAST)
    assert len(statics) == 1 and timed == [3]  # one model measured; all three timed in one sitting
    assert len({e.figures.measured for e in again}) == 1
    assert again[0].figures.accuracy == entries[0].figures.accuracy
    cached = cmp.read_cached(cmp.original_cache_dir(mnist_cnn, runs_root), demo_data)
    assert cached.latency == again[0].figures.latency  # the original's new timing is cached too


def test_time_together_interleaves_the_models():
    calls = []

    class Probe(torch.nn.Module):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def forward(self, x):
            calls.append(self.name)
            return x

    got = cmp.time_together([cmp.Subject(Probe("a"), (2,)), cmp.Subject(Probe("b"), (2,))], latency_runs=(3, 2), warmup=1)
    # batch 1: one warm-up each, then 3 rounds in turn; batch 64: the same with 2 rounds
    assert calls == ["a", "b", "a", "b", "a", "b", "a", "b"] + ["a", "b", "a", "b", "a", "b"]
    assert got[0]["pytorch"]["batch1"].runs == 3 and got[1]["pytorch"]["batch64"].runs == 2
    assert "onnxruntime" not in got[0]


def test_cache_is_per_data_set_and_forget_measures_again(entries, runs_root, mnist_cnn, demo_data):
    run = list_runs(runs_root)[0]
    half = dataclasses.replace(demo_data, x_test=demo_data.x_test[:500], y_test=demo_data.y_test[:500])
    other = cmp.compare(mnist_cnn, half, [run], root=runs_root, **FAST)
    assert other[1].figures.how["accuracy"].startswith("top-1 on the 500 test samples")
    assert len(json.loads((runs_root / run.id / "compare" / "compare.json").read_text())) == 2
    cmp.forget(runs_root / run.id / "compare")
    assert not (runs_root / run.id / "compare" / "compare.json").exists()


def test_runs_of_another_base_model_or_data_are_measured_and_marked(runs_root, mnist_cnn, demo_data):
    other = dataclasses.replace(mnist_cnn, module=load_model("demo:mnist-cnn").module)
    with torch.no_grad():
        other.module.fc2.bias.add_(0.01)  # other weights: another fingerprint
    got = cmp.compare(other, demo_data, list_runs(runs_root), data_spec="other.npz", root=runs_root, **FAST)
    for e in got[1:]:
        assert e.figures is not None
        assert any("another base model" in w for w in e.warnings)
        assert any("other data (demo:mnist5k)" in w for w in e.warnings)
    notes = comparison_table(got)["notes"]
    assert notes.iloc[1:].str.contains("another base model").all()


def test_damaged_and_unfinished_runs_are_listed_with_the_reason_and_never_raise(runs_root, mnist_cnn, demo_data, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(runs_root, root)
    good, broken = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
    (root / broken / "weights.safetensors").write_bytes(b"\x00garbage")
    shutil.rmtree(root / broken / "compare", ignore_errors=True)
    (root / "half").mkdir()
    (root / "half" / "status.json").write_text("{not json")
    runs = list_runs(root)
    got = cmp.compare(mnist_cnn, demo_data, runs, root=root, **FAST)
    errors = {e.key: e.error for e in got[1:]}
    assert "damaged" in errors["half"] and "status.json" in errors["half"]
    assert errors[broken] and "weights.safetensors" in errors[broken]
    assert errors[good] is None
    table = comparison_table(got)
    assert len(table) == 4
    notes = dict(zip([e.key for e in got], table["notes"], strict=True))
    assert "status.json" in notes["half"] and "weights.safetensors" in notes[broken]
    shown = display_table(table)
    assert (shown["accuracy"] == "—").sum() == 2


def test_comparison_table_deltas(entries):
    table = comparison_table(entries).set_index("kind")
    original, channel = entries[0].figures, by_kind(entries, "channel").figures
    assert table.loc["original", "Δ accuracy (pp)"] == 0
    assert table.loc["channel", "Δ accuracy (pp)"] == pytest.approx((channel.accuracy - original.accuracy) * 100)
    assert table.loc["channel", "FLOP reduction"] == pytest.approx(original.flops / channel.flops)
    speedup = original.latency_at("onnxruntime", 64).median_ms / channel.latency_at("onnxruntime", 64).median_ms
    assert table.loc["channel", "ORT b64 speed-up"] == pytest.approx(speedup)
    assert table.loc["masked", "dense size ratio"] == 1.0
    assert "dense runtimes do not run it faster" in table.loc["masked", "notes"]
    shown = display_table(comparison_table(entries))
    assert re.fullmatch(r"\d+\.\d\d% \([+-]\d+\.\d pp\)", shown["accuracy"].iloc[1])
    assert re.search(r"^[\d.]+ ±[\d.e-]+ ms \(\d+\.\d\d×\)$", shown["ONNX Runtime b64"].iloc[1])
    lat = channel.latency["pytorch"]["batch1"]
    assert table.loc["channel", "PyTorch b1 IQR ms"] == pytest.approx(lat.p75_ms - lat.p25_ms)


def test_pareto_front():
    points = [(1.0, 0.90), (2.0, 0.95), (3.0, 0.94), (0.5, 0.80), (2.0, 0.95)]
    assert pareto_front(points) == [0, 1, 3, 4]  # (3, .94) is beaten by (2, .95); equal points both stay


def test_report_is_self_contained_with_table_plots_recipes_and_how(entries):
    page = html_report(entries, title="Demo report", data_label="demo:mnist5k")
    assert page.startswith("<!DOCTYPE html>") and "<title>Demo report</title>" in page
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=[\"']https?://", page)  # nothing fetched from a network
    assert "Plotly.newPlot" in page and page.count("plotly.js v") >= 1  # plotly.js embedded, figures drawn with it
    assert 'id="comparison"' in page and page.count("<tr class=") == len(entries)
    assert "granularity: channel" in page and "granularity: unstructured" in page  # each run's recipe
    assert "ONNX Runtime" in page and "thread(s)" in page  # how latency was measured
    notes = page[page.index("<ul class='notes'>"):].split("</ul>")[0]  # each model's notes, below the table
    assert "masked: zeros are stored and computed; dense runtimes do not run it faster" in notes
    assert len(page) > 3_000_000  # plotly.js itself is several MB


def test_runtimes_are_timed_in_phases_and_onnx_sessions_do_not_spin(entries, runs_root, monkeypatch):
    from pruner_core.io import export

    made, order = [], []
    real = export.session

    class Counted:
        def __init__(self, sess):
            self.sess = sess

        def run(self, *args):
            order.append("onnxruntime")
            return self.sess.run(*args)

    def counted(*a, **k):
        made.append(real(*a, **k))
        return Counted(made[-1])

    monkeypatch.setattr(export, "session", counted)

    class Probe(torch.nn.Module):
        def forward(self, x):
            order.append("pytorch")
            return x

    onnx_file = runs_root / by_kind(entries, "channel").key / "compare" / "model.onnx"
    got = cmp.time_together([cmp.Subject(Probe(), (1, 28, 28), onnx_file)], latency_runs=(2, 2), warmup=0)
    assert order == ["pytorch"] * 4 + ["onnxruntime"] * 4  # 2 batches x 2 runs each: PyTorch's phase first
    assert [s.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") for s in made] == ["0"]
    assert "not spinning" in got[0]["onnxruntime"]["batch1"].label


def _fake(median: float, spread: float) -> ModelFigures:
    lat = Latency(1, median, median - spread / 2, median + spread / 2, median - spread, 10, 1, 1, "CPU (test)", "PyTorch")
    return ModelFigures(accuracy=0.9, per_class=[], params=10, nonzero_params=5, flops=10, sizes=Sizes(100, 90, 60),
                        sparsity={}, how={}, latency={"pytorch": {"batch1": lat, "batch64": lat}})


def test_a_difference_within_the_spread_is_never_shown_as_a_speed_up():
    entries = [cmp.Entry("original", "original", "original", _fake(1.00, 0.10)),
               cmp.Entry("masked", "masked run", "masked", _fake(0.96, 0.10)),
               cmp.Entry("channel", "channel run", "channel", _fake(0.50, 0.10))]
    shown = display_table(comparison_table(entries)).set_index("kind")
    assert shown.loc["masked", "PyTorch b1"] == "0.96 ±0.05 ms (≈1×)"  # the notes below the table say what ≈1× means
    assert shown.loc["channel", "PyTorch b1"] == "0.50 ±0.05 ms (2.00×)"  # fixed decimals, not "0.5" beside "0.96"
    assert shown.loc["original", "PyTorch b1"] == "1.00 ±0.05 ms (1.00×)"


def test_latencies_from_different_sittings_are_timed_again_together(entries, runs_root, mnist_cnn, demo_data,
                                                                     monkeypatch):
    runs = list_runs(runs_root)
    folder = runs_root / runs[0].id / "compare"
    figures = cmp.read_cached(folder, demo_data)
    cmp.write_cached(folder, demo_data, dataclasses.replace(figures, measured="2020-01-01T00:00:00+00:00"))  # another sitting
    timed = []
    time_together = cmp.time_together
    monkeypatch.setattr(cmp, "measure_static", lambda *a, **k: pytest.fail("static figures are cached"))
    monkeypatch.setattr(cmp, "time_together", lambda subjects, **k: timed.append(len(subjects)) or time_together(subjects, **k))
    again = cmp.compare(mnist_cnn, demo_data, runs, data_spec="demo:mnist5k", root=runs_root, **FAST)
    assert timed == [3] and len({e.figures.measured for e in again}) == 1


def test_cached_figures_are_not_reused_on_another_thread_count(entries, runs_root, demo_data):
    threads = torch.get_num_threads()
    key = cmp._cache_key(demo_data)
    try:
        torch.set_num_threads(1 if threads > 1 else 2)
        assert cmp._cache_key(demo_data) != key
        assert cmp.read_cached(runs_root / list_runs(runs_root)[0].id / "compare", demo_data) is None
    finally:
        torch.set_num_threads(threads)


def test_a_run_folder_removed_while_comparing_is_an_error_and_is_not_recreated(runs_root, mnist_cnn, demo_data, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(runs_root, root)
    runs = list_runs(root)
    gone = runs[0]
    shutil.rmtree(gone.path / "compare")
    listed = list_runs(root)
    shutil.rmtree(gone.path)  # deleted after the listing, before measuring
    got = cmp.compare(mnist_cnn, demo_data, listed, root=root, **FAST)
    errors = {e.key: e.error for e in got}
    assert errors[gone.id] and errors["original"] is None
    assert not gone.path.exists()


def test_figures_read_back_from_json_equal_the_measured_ones(entries):
    for e in entries:
        data = json.loads(json.dumps(e.figures.to_json()))  # through text, as compare.json and --json hold it
        assert ModelFigures.from_json(data) == e.figures
        assert list(data) == ["accuracy", "per_class", "params", "nonzero_params", "flops", "sizes", "sparsity",
                              "onnx_error", "how", "latency", "measured"]  # the keys compare.json has always held
        assert list(data["sizes"]) == ["dense_bytes", "gzip_bytes", "sparse_bytes", "onnx_bytes"]
        assert data["latency"]["pytorch"]["batch1"]["label"] == e.figures.latency["pytorch"]["batch1"].label


def _damaged(figures: dict, damage: str) -> object:
    if damage == "not an object":
        return [figures]
    if damage == "accuracy":
        return {k: v for k, v in figures.items() if k != "accuracy"}
    if damage == "per_class":
        return figures | {"per_class": {"0": 0.9}}
    if damage == "sizes.gzip_bytes":
        return figures | {"sizes": figures["sizes"] | {"gzip_bytes": "90"}}
    if damage == "how.accuracy":
        return figures | {"how": {"accuracy": 3}}
    if damage == "latency.pytorch.batch1.median_ms":
        latency = figures["latency"]
        return figures | {"latency": latency | {"pytorch": latency["pytorch"] | {"batch1": {"median_ms": "fast"}}}}
    raise AssertionError(damage)


@pytest.mark.parametrize("damage, message", [
    ("not an object", "'the figures' must be an object; got list"),
    ("accuracy", "'accuracy' must be a number; got nothing"),
    ("per_class", "'per_class' must be a list"),
    ("sizes.gzip_bytes", "'sizes.gzip_bytes' must be a whole number, at least 0; got str '90'"),
    ("how.accuracy", "'how.accuracy' must be text"),
    ("latency.pytorch.batch1.median_ms", "'latency.pytorch.batch1.median_ms' must be a number; got str 'fast'"),
])
def test_malformed_figures_are_refused_naming_the_field(entries, damage, message):
    with pytest.raises(PrunerError, match=re.escape(message)):
        ModelFigures.from_json(_damaged(entries[0].figures.to_json(), damage))


def test_a_damaged_cache_entry_is_measured_again_not_a_crash(runs_root, mnist_cnn, demo_data, tmp_path, monkeypatch):
    root = tmp_path / "runs"
    shutil.copytree(runs_root, root)  # the original's cache (root/.cache) comes along: only the damaged run is new
    runs = list_runs(root)
    path = runs[0].path / "compare" / "compare.json"
    stored = json.loads(path.read_text())
    path.write_text(json.dumps({k: _damaged(v, "latency.pytorch.batch1.median_ms") for k, v in stored.items()}))
    assert cmp.read_cached(path.parent, demo_data) is None
    statics = []
    measure_static = cmp.measure_static
    monkeypatch.setattr(cmp, "measure_static", lambda *a, **k: statics.append(a[3]) or measure_static(*a, **k))
    got = cmp.compare(mnist_cnn, demo_data, runs, root=root, **FAST)
    assert statics == [runs[0].path / "compare"]  # the damaged entry, and only it, measured again
    assert all(e.error is None and e.figures is not None for e in got)
    assert len(comparison_table(got)) == 3
    assert cmp.read_cached(path.parent, demo_data) == got[1].figures  # and cached again, readable


def _figures(accuracy: float, flops: int, dense: int, sparse: int, ort_ms: float, spread: float = 0.02) -> ModelFigures:
    def lat(runtime):
        return Latency(1, ort_ms, ort_ms - spread / 2, ort_ms + spread / 2, ort_ms - spread, 10, 1, 1, "CPU (test)", runtime)
    return ModelFigures(accuracy=accuracy, per_class=[], params=100, nonzero_params=50, flops=flops,
                        sizes=Sizes(dense, dense // 2, sparse), sparsity={}, how={},
                        latency={"pytorch": {"batch1": lat("PyTorch")}, "onnxruntime": {"batch1": lat("ORT")}})


def test_each_run_gets_a_headline_of_measured_paired_figures():
    from pruner_core.present.compare_table import headlines

    entries = [cmp.Entry("original", "original · demo:mnist-cnn", "original", _figures(0.99, 3800, 4000, 4000, 1.9)),
               cmp.Entry("a", "a · channel l2 layerwise 50% of channels", "channel", _figures(0.981, 1000, 1000, 1000, 1.0)),
               cmp.Entry("b", "b · unstructured l1 layerwise 50%", "masked", _figures(0.99, 3800, 4000, 2000, 1.9)),
               cmp.Entry("c", "c · broken", "channel", None, error="damaged")]
    assert headlines(comparison_table(entries)) == [
        "channel l2 layerwise 50% of channels: 3.80× fewer FLOPs, 4.00× smaller (dense file), 1.90× faster in ONNX "
        "Runtime at batch 1, -0.9 pp accuracy",  # the table's convention: N.NN× = original ÷ this, accuracy in pp
        "unstructured l1 layerwise 50%: the same FLOPs, 2.00× smaller stored sparse (the dense file is not), no "
        "faster in ONNX Runtime at batch 1 (within the timings' spread), +0.0 pp accuracy",
    ]


def test_each_column_of_the_shown_table_keeps_one_unit_and_fixed_decimals():
    entries = [cmp.Entry("original", "original · demo:mnist-cnn", "original", _figures(0.99, 3800, 1_690_000, 1_690_000, 1.0)),
               cmp.Entry("a", "a · channel l2 layerwise 50% of channels", "channel",
                         _figures(0.98, 1000, 836_890, 836_890, 0.25))]
    shown = display_table(comparison_table(entries))
    assert list(shown["dense size"]) == ["1.69 MB (1.00×)", "0.84 MB (2.02×)"]  # not "836.89 kB" beside "1.69 MB"
    assert list(shown["ONNX Runtime b1"]) == ["1.00 ±0.01 ms (1.00×)", "0.25 ±0.01 ms (4.00×)"]


def test_the_shown_table_names_each_model_by_its_id_shows_the_groups_asked_for_and_notes_below():
    """The headlines say what each run pruned: the grid names it by id, its notes go below it, and a reader picks
    the column groups, so the table fits a 1440 px screen without scrolling sideways."""
    from pruner_core.present.compare_table import COLUMN_GROUPS, table_notes

    entries = [cmp.Entry("original", "original · demo:mnist-cnn", "original", _figures(0.99, 3800, 4000, 4000, 1.0)),
               cmp.Entry("20260101-a", "20260101-a · unstructured l1 layerwise 50%", "masked",
                         _figures(0.99, 3800, 4000, 2000, 1.0), warnings=["made from another base model"]),
               cmp.Entry("c", "c · broken", "channel", None, error="damaged")]
    table = comparison_table(entries)
    shown = display_table(table)
    assert list(shown["model"]) == ["original", "20260101-a", "c"]  # not the recipe again
    assert "notes" not in shown.columns
    assert list(shown.columns) == ["model", "kind", *(c for cols in COLUMN_GROUPS.values() for c in cols)]
    assert list(display_table(table, ["accuracy", "latency ONNX Runtime"]).columns) == [
        "model", "kind", "accuracy", "ONNX Runtime b1", "ONNX Runtime b64"]
    assert list(display_table(table, ["FLOPs / params", "accuracy"]).columns)[2:] == [  # in the table's order
        "accuracy", "FLOPs", "non-zero / total params"]
    assert table_notes(table) == [
        "20260101-a: masked: zeros are stored and computed; dense runtimes do not run it faster; made from another "
        "base model",
        "c: damaged",
    ]
