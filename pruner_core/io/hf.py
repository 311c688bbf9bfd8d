"""Hugging Face folders: a local folder as ``save_pretrained`` writes it (``config.json`` + ``model.safetensors``) is a
model spec, loaded with ``transformers`` from local files only (never a download, never remote code).

The loaded model is wrapped so that it takes one tensor and returns class scores, like every other model here:
``pixel_values`` for image classifiers, ``input_ids`` for sequence classifiers; the wrapper returns ``.logits``. Its
layers are named ``model.<the Hugging Face name>``.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import torch
from torch import nn

from pruner_core.errors import ModelLoadError, SpecError

TASKS = {  # the AutoModel class for an architecture name's ending, and the input it takes
    "ForImageClassification": ("AutoModelForImageClassification", "pixel_values"),
    "ForSequenceClassification": ("AutoModelForSequenceClassification", "input_ids"),
}
WEIGHTS = "model.safetensors"
MLP_IN = ("mlp.fc1", "intermediate.dense")  # the layer whose width is config.intermediate_size


class Logits(nn.Module):
    """A Hugging Face classifier as a module of one tensor to class scores."""

    def __init__(self, model: nn.Module, input_name: str) -> None:
        super().__init__()
        self.model, self.input_name = model, input_name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(**{self.input_name: x}).logits


def is_hf_folder(spec: str) -> bool:
    path = Path(spec)
    return path.is_dir() and (path / "config.json").is_file()


def load_hf(spec: str) -> tuple[Logits, tuple[int, ...] | None, dict]:
    """The folder's model wrapped as :class:`Logits`, its input shape (None for text: any length) and a card.

    Raises:
        ModelLoadError: transformers is missing, the folder has no safetensors weights, the architecture is not a
            classifier transformers knows, or loading fails.
    """
    path = Path(spec)
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"'{spec}/config.json' is not readable JSON ({e})") from e
    if not (path / WEIGHTS).is_file():
        raise ModelLoadError(f"Hugging Face folder '{spec}' has no {WEIGHTS}; save it with save_pretrained "
                             "(safetensors; pickled pytorch_model.bin files are not read)")
    architectures = config.get("architectures") or []
    task = next(((cls, inp) for end, (cls, inp) in TASKS.items() for a in architectures if a.endswith(end)), None)
    if task is None:
        raise ModelLoadError(f"Hugging Face folder '{spec}' holds {architectures or 'no architectures'}; expected an "
                             f"image or sequence classifier (an architecture ending in {' or '.join(TASKS)})")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local files only, whatever the folder's config names
    try:
        import transformers
    except ImportError as e:
        raise ModelLoadError("loading a Hugging Face folder needs transformers: pip install transformers") from e
    try:
        model = getattr(transformers, task[0]).from_pretrained(
            str(path), local_files_only=True, trust_remote_code=False, use_safetensors=True, attn_implementation="eager")
    except Exception as e:  # transformers raises OSError, ValueError, KeyError, ... for a folder it cannot read
        raise ModelLoadError(f"transformers cannot load '{spec}': {type(e).__name__}: {str(e).strip()[:300]}") from e
    shape = None
    if task[1] == "pixel_values":
        size = config.get("image_size")
        size = (size, size) if isinstance(size, int) else tuple(size or ())
        shape = (int(config.get("num_channels", 3)), *size) if len(size) == 2 else None
    card = {"architecture": architectures[0], "transformers": transformers.__version__, "input": task[1]}
    return Logits(model.eval(), task[1]), shape, card


def check_no_weights(spec: str, weights: str | None) -> None:
    if weights:
        raise SpecError(f"'{spec}' is a Hugging Face folder, which carries its own weights ({WEIGHTS}); load it "
                        "without weights")


def save_hf(module: Logits, folder: Path) -> Path:
    """Write a (pruned) wrapped Hugging Face model as a folder ``from_pretrained`` loads: its config says the head
    count and MLP width the pruned layers now have (``head_dim`` kept), its weights are the module's.

    Raises:
        ModelLoadError: the pruned layers differ from layer to layer (a config holds one head count and one MLP
            width for all of them), named with the first layer that does not fit.
    """
    import transformers

    model = module.model
    config = copy.deepcopy(model.config)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    counts = {m.num_attention_heads for m in model.modules() if isinstance(getattr(m, "num_attention_heads", None), int)}
    widths = {m.out_features for n, m in model.named_modules() if n.endswith(MLP_IN) and isinstance(m, nn.Linear)}
    if len(counts) == 1:
        config.num_attention_heads, config.head_dim = counts.pop(), head_dim
    if len(widths) == 1:
        config.intermediate_size = widths.pop()
    fresh = getattr(transformers, type(model).__name__)(config).state_dict()
    for key, value in model.state_dict().items():
        if key in fresh and fresh[key].shape != value.shape:
            raise ModelLoadError(
                f"the pruned model's layers differ from one another ('{key}' is {list(value.shape)}; a config.json "
                f"with one head count and one MLP width for every layer makes {list(fresh[key].shape)}): prune every "
                "layer alike (a layerwise channel recipe with one ratio) to hand on a Hugging Face folder; the run "
                "folder itself rebuilds this model with pruner")
    folder.mkdir(parents=True, exist_ok=True)
    original, model.config = model.config, config  # save_pretrained writes the model's own config
    try:
        model.save_pretrained(str(folder), safe_serialization=True)
    finally:
        model.config = original
    return folder

