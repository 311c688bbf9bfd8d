"""Hand a finished run on: its pruned weights, its recipe and its ONNX, written into a folder of their own."""

from __future__ import annotations

from pathlib import Path

import torch

from pruner_core.errors import PrunerError
from pruner_core.io.data import Dataset
from pruner_core.io.export import export_onnx, onnx_max_diff, size_figures
from pruner_core.io.fit import fit_data
from pruner_core.io.hf import Logits, load_hf, save_hf
from pruner_core.pipeline.replay import load_run_model
from pruner_core.pipeline.runs import CLAIM, load_run

MARKER = ".pruner-export"  # marks a folder export_run made, so exporting again may replace its files


def _check_out(out: Path) -> None:
    """Refuse to write anywhere but a new folder, an empty one, or one an earlier export made; never a run folder."""
    if out.exists() and not out.is_dir():
        raise PrunerError(f"--out '{out}' is a file; name a new folder to export into")
    if not out.is_dir():
        return
    names = {p.name for p in out.iterdir()}
    if names & {"status.json", "base.json", CLAIM}:
        raise PrunerError(f"--out '{out}' is a pruning run folder; export into a folder of its own, never into a run")
    if names and MARKER not in names:
        raise PrunerError(f"--out '{out}' is not empty and was not made by pruner export; name a new or empty folder")


def export_run(run_path: str | Path, out: str | Path, *, onnx_file: bool = True, test_data: Dataset | None = None) -> dict:
    """Hand a saved run on: its pruned weights, its recipe and (optionally) ONNX, written into ``out``.

    Args:
        run_path: a finished run folder (:mod:`pruner_core.pipeline.runs`).
        out: the folder to write (made if missing).
        onnx_file: also write ``model.onnx`` and check it against PyTorch on the test split of ``test_data``.
        test_data: the data for the parity check (e.g. the run's own), arranged as the pruned model takes it.

    Returns:
        What was written: paths, sizes (see :func:`~pruner_core.io.export.size_figures`), ``onnx_max_diff`` when
        checked; for a Hugging Face model also ``huggingface`` (a folder ``from_pretrained`` loads) and
        ``huggingface_max_diff`` (its logits against the run's, on the test data), or ``huggingface_refused`` (why
        a config.json cannot describe the pruned model).

    Raises:
        PrunerError: the run is not done or cannot be loaded; ``out`` is a file, a run folder, or a non-empty
            folder that no export made; or the export fails.
    """
    run = load_run(run_path)
    if run.status != "done":
        raise PrunerError(f"run '{run.id}' is {run.status}; only a finished (done) run can be exported")
    out = Path(out)
    _check_out(out)
    model = load_run_model(run)
    test_x = fit_data(model, test_data).x_test if test_data is not None else None  # as the pruned model takes it
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).touch()
    written: dict = {"run": str(run.path), "sizes": size_figures(model.module, out)}
    recipe = out / "recipe.yaml"
    recipe.write_text(run.recipe.to_yaml())
    written["recipe"] = str(recipe)
    written["weights"] = str(out / "weights.safetensors")
    if onnx_file:
        if not run.base.get("input_shape"):
            raise PrunerError(f"run '{run.id}': base.json records no input_shape, so the model cannot be traced to ONNX; "
                              "the weights and recipe are written: export again with --no-onnx")
        shape = tuple(run.base["input_shape"])
        path = export_onnx(model.module, shape, out / "model.onnx")
        written["onnx"] = str(path)
        written["onnx_bytes"] = path.stat().st_size
        if test_x is not None:
            written["onnx_max_diff"] = onnx_max_diff(path, model.module, test_x)
    if isinstance(model.module, Logits):  # a Hugging Face model goes back as a folder from_pretrained loads
        try:
            folder = save_hf(model.module, out / "huggingface")
        except PrunerError as e:  # a config cannot say it: the rest of the export stands
            written["huggingface_refused"] = str(e)
            return written
        written["huggingface"] = str(folder)
        if test_x is not None:
            x = test_x[:256]
            with torch.no_grad():
                written["huggingface_max_diff"] = float((load_hf(str(folder))[0](x) - model.module(x)).abs().max())
    return written
