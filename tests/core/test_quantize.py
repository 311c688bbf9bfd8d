"""INT8 after pruning: a run's ONNX quantized by ONNX Runtime, calibrated on training images, measured beside its FP32.

Real runs of the shipped demo models, real ONNX files, real ONNX Runtime sessions: the INT8 file passes the checker,
holds quantized weights (counted), keeps accuracy within a point, keeps excluded layers in FP32, is the same file
from a recipe and from ``pruner quantize``, and bad settings are refused naming the valid values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from pruner_core.errors import SpecError
from pruner_core.frontends.cli import app
from pruner_core.io.models import load_model
from pruner_core.io.quantize import layer_of_node, quantize_onnx
from pruner_core.pipeline.quantize import INT8_FILE, quantize_run, read_int8
from pruner_core.pipeline.run import run_experiment
from pruner_core.pipeline.runs import run_cache_dir
from pruner_core.pruning.recipe import Quantize, Recipe, RecipeError

runner = CliRunner()
PRUNE = {"granularity": "unstructured", "sparsity": 0.3, "finetune": {"epochs": 0}}


@pytest.fixture(scope="module")
def runs(demo_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return {name: run_experiment(load_model(f"demo:{name}"), demo_data, Recipe.from_dict(PRUNE),
                                 data_spec="demo:mnist5k", root=root, latency_runs=(2, 1))
            for name in ("mnist-cnn", "resnet20")}


@pytest.mark.parametrize("name", ["mnist-cnn", "resnet20"])
def test_int8_file_is_checked_quantized_and_within_a_point_of_fp32(runs, demo_data, name):
    figures = quantize_run(runs[name], demo_data, Quantize(kind="int8_static"), latency_runs=(3, 2))
    path = runs[name].path / INT8_FILE
    onnx.checker.check_model(str(path), full_check=True)
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops.count("QuantizeLinear") > 0 and ops.count("DequantizeLinear") > ops.count("QuantizeLinear")
    assert figures.qdq_nodes == ops.count("QuantizeLinear") + ops.count("DequantizeLinear")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert sess.run(None, {"input": demo_data.x_test[:5].numpy()})[0].shape == (5, 10)
    assert abs(figures.accuracy_fp32 - figures.accuracy_int8) <= 0.01
    assert figures.int8_layers == len(figures.layers)  # every Conv/Gemm runs as an INT8 operator once fused
    assert figures.bytes_int8 < 0.45 * figures.bytes_fp32
    assert set(figures.latency_int8) == {"batch1", "batch64"} and figures.latency_int8["batch1"].runs == 3
    assert read_int8(runs[name]).accuracy_int8 == figures.accuracy_int8  # stored in int8.json
    assert figures.verdict().startswith(("INT8 pays", "INT8 does not pay everywhere"))


def test_excluded_layers_stay_fp32_in_the_graph(runs, demo_data):
    run = runs["resnet20"]
    figures = quantize_run(run, demo_data, Quantize(kind="int8_static", exclude=["conv1", "fc"]), latency_runs=(2, 1))
    assert figures.layers["conv1"] == {"op": "Conv", "int8": False}
    assert figures.layers["fc"]["int8"] is False and figures.layers["layer1.0.conv1"]["int8"] is True
    graph = onnx.load(str(run.path / INT8_FILE)).graph
    made_by = {out: node.op_type for node in graph.node for out in node.output}
    conv1 = next(n for n in graph.node if n.op_type == "Conv" and layer_of_node(n.name) == "conv1")
    assert all(made_by.get(i) != "DequantizeLinear" for i in conv1.input[1:])  # FP32 weights, no DQ in front
    other = next(n for n in graph.node if n.op_type == "Conv" and layer_of_node(n.name) == "layer1.0.conv1")
    assert made_by[other.input[1]] == "DequantizeLinear"


def test_a_recipe_with_quantize_and_pruner_quantize_write_the_same_int8_file(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("granularity: unstructured\nsparsity: 0.3\nfinetune: {epochs: 0}\n"
                      "quantize: {kind: int8_static, calibration_samples: 128}\n")
    out = tmp_path / "run"
    result = runner.invoke(app, ["prune", "demo:mnist-cnn", "--data", "demo:mnist5k", "--recipe", str(recipe),
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    first = (out / INT8_FILE).read_bytes()
    result = runner.invoke(app, ["quantize", str(out), "--calibration", "128"])
    assert result.exit_code == 0, result.output
    assert "accuracy FP32" in result.output and "run in INT8" in result.output
    assert (out / INT8_FILE).read_bytes() == first


def test_dynamic_int8_needs_no_calibration(runs, demo_data):
    figures = quantize_run(runs["mnist-cnn"], demo_data, Quantize(kind="int8_dynamic"), latency_runs=(2, 1))
    assert figures.calibration_samples == 0 and figures.how["calibration"].startswith("dynamic")
    assert abs(figures.accuracy_fp32 - figures.accuracy_int8) <= 0.02


def test_bad_settings_are_refused_naming_the_valid_values(runs):
    with pytest.raises(RecipeError, match=r"quantize.calibration_samples: input should be greater than or equal to 1"):
        Recipe.from_yaml("quantize: {kind: int8_static, calibration_samples: 0}")
    with pytest.raises(RecipeError, match=r"unknown quantize kind; valid: none, int8_static, int8_dynamic; got 'int4'"):
        Recipe.from_yaml("quantize: {kind: int4}")
    fp32 = run_cache_dir(runs["mnist-cnn"]) / "model.onnx"
    assert fp32.is_file()
    wrong = np.zeros((4, 1, 14, 14), dtype=np.float32)
    with pytest.raises(SpecError, match=r"calibration samples have shape \[1, 14, 14\], but the model's input is "
                                        r"\[1, 28, 28\]"):
        quantize_onnx(fp32, Path(fp32).parent / "x.onnx", calibration=wrong)
    with pytest.raises(SpecError, match=r"'nope' has no Conv/Gemm/MatMul operator in the ONNX graph; layers that do: "
                                        r"conv1, conv2"):
        quantize_onnx(fp32, Path(fp32).parent / "x.onnx", calibration=wrong[:, :, :0], exclude=["nope"])
    with pytest.raises(SpecError, match="quantize kind is none"):
        quantize_run(runs["mnist-cnn"], None, Quantize())


@pytest.mark.parametrize(("node", "layer"), [("/conv1/Conv", "conv1"), ("/layer1/layer1.0/conv1/Conv", "layer1.0.conv1"),
                                             ("/layer2/layer2.0/shortcut/shortcut.0/Conv", "layer2.0.shortcut.0"),
                                             ("/blocks/blocks.0/attn/qkv/MatMul", "blocks.0.attn.qkv")])
def test_exported_nodes_are_named_by_their_layer(node, layer):
    assert layer_of_node(node) == layer


def test_compare_shows_a_quantized_run_as_its_own_row_timed_in_onnx_runtime(runs, demo_data):
    from pruner_core.compare.compare import compare
    from pruner_core.present.compare_table import comparison_table, headlines, table_notes

    run = runs["mnist-cnn"]
    quantize_run(run, demo_data, Quantize(kind="int8_static"), latency_runs=(2, 1))
    entries = compare(load_model("demo:mnist-cnn"), demo_data, [run], root=run.path.parent, latency_runs=(3, 2))
    assert [e.kind for e in entries] == ["original", "masked", "int8"]
    int8 = entries[2]
    assert int8.key == f"{run.id}+int8" and int8.of == run.id and int8.label.endswith("+ INT8")
    assert set(int8.figures.latency) == {"onnxruntime"}  # INT8 runs in ONNX Runtime, never in PyTorch
    assert int8.figures.measured == entries[1].figures.measured  # timed in the same sitting as the others
    assert int8.figures.sizes.onnx_bytes == (run.path / INT8_FILE).stat().st_size
    assert abs(int8.figures.accuracy - entries[1].figures.accuracy) <= 0.01
    table = comparison_table(entries)
    assert any(line.startswith(f"{run.id}+int8: INT8 in ONNX Runtime only") and "against its own FP32 run" in line
               for line in table_notes(table))
    assert any("+ INT8: " in line and "smaller ONNX file" in line for line in headlines(table))


def test_each_layer_alone_in_int8_is_measured(demo_data):
    from pruner_core.sensitivity.int8 import int8_sensitivity

    seen = []
    result = int8_sensitivity(load_model("demo:mnist-cnn"), demo_data, samples=300,
                              callback=lambda done, total, what: seen.append((done, total, what)))
    assert list(result.layers) == ["conv1", "conv2", "fc1", "fc2"] and result.samples == 300
    assert all(0 <= a <= 1 for a in result.layers.values())
    assert abs(result.fp32_accuracy - result.int8_accuracy) <= 0.02
    assert all(abs(d) <= 2 for d in result.drops().values())  # points: one layer in INT8 costs little here
    assert seen[0] == (0, 6, "FP32") and seen[-1] == (5, 6, "fc2 alone in INT8")
    assert len(result.worst(2)) == 2


def test_the_report_has_the_int8_row_and_its_plots_draw(runs, demo_data, tmp_path):
    from pruner_core.compare.compare import compare
    from pruner_core.present.report import write_report

    run = runs["resnet20"]
    quantize_run(run, demo_data, Quantize(kind="int8_static"), latency_runs=(2, 1))
    entries = compare(load_model("demo:resnet20"), demo_data, [run], root=run.path.parent, latency_runs=(2, 1))
    path = write_report(tmp_path / "r.html", entries, title="t", classes=demo_data.classes, data_label="d")
    html = path.read_text()
    assert f"{run.id}+int8" in html and "against its own FP32 run" in html and "smaller ONNX file" in html


def test_quantizing_again_replaces_the_file_and_compare_measures_the_new_one(runs, demo_data):
    from pruner_core.compare.compare import compare

    run = runs["mnist-cnn"]
    quantize_run(run, demo_data, Quantize(kind="int8_static"), latency_runs=(2, 1))
    first = compare(load_model("demo:mnist-cnn"), demo_data, [run], root=run.path.parent, latency_runs=(2, 1))[2]
    figures = quantize_run(run, demo_data, Quantize(kind="int8_static", exclude=["conv1", "conv2", "fc1"]),
                           latency_runs=(2, 1))
    assert read_int8(run).sha256 == figures.sha256  # the figures are of the file now in the folder
    again = compare(load_model("demo:mnist-cnn"), demo_data, [run], root=run.path.parent, latency_runs=(2, 1))[2]
    assert again.figures.sizes.onnx_bytes == (run.path / INT8_FILE).stat().st_size != first.figures.sizes.onnx_bytes
    (run.path / INT8_FILE).write_bytes(b"not the file the figures are of")
    assert read_int8(run) is None


def test_a_model_on_integer_ids_is_refused_before_any_work(runs, demo_data):
    import dataclasses

    ids = dataclasses.replace(demo_data, x_train=demo_data.x_train.long(), x_test=demo_data.x_test.long())
    with pytest.raises(SpecError, match=r"holds integer ids \(torch.int64\), which need an embedding-aware"):
        quantize_run(runs["mnist-cnn"], ids, Quantize(kind="int8_dynamic"))


def test_a_recipe_excluding_an_unknown_layer_from_int8_is_refused_before_any_work(demo_data, tmp_path):
    recipe = Recipe.from_dict({**PRUNE, "quantize": {"kind": "int8_static", "exclude": ["conv9"]}})
    with pytest.raises(SpecError, match=r"quantize.exclude: no layer named 'conv9'; layers: conv1, conv2, fc1, fc2"):
        run_experiment(load_model("demo:mnist-cnn"), demo_data, recipe, data_spec="demo:mnist5k", root=tmp_path)
    assert not any(tmp_path.iterdir())  # no run folder was made
