"""Load a model from a spec, the same way for the app and the CLI.

Specs (``MODEL_FORMATS`` is the registry, tried in order):

- ``demo:NAME``: a demo architecture with its shipped weights (or ``weights=FILE`` for your own).
- ``runs/ID``: a pruning run folder: its pruned model (registered by :mod:`pruner_core.pipeline.runs`).
- ``pkg.module:factory``: a callable importable in this environment, optionally with ``weights``. A process
  that serves others narrows which modules may be imported with :func:`allow_factories`.
- ``FOLDER`` with ``config.json`` + ``model.safetensors``: a Hugging Face classifier (:mod:`pruner_core.io.hf`).
- ``FILE.pt2``: a ``torch.export`` program.
- ``FILE.pt`` / ``.pth`` / ``.ts`` TorchScript archive.
- ``FILE.pt`` / ``.pth`` holding a fully pickled module: only with ``trust=True`` (unpickling runs code).
- Any of these followed by ``#KEY``: the model's output ``KEY`` (``#0``, ``#logits``) when it returns a tuple or a
  dict (:mod:`pruner_core.io.outputs`).
- A bare state_dict (``.pt``, ``.pth``, ``.safetensors``) is refused with the way to load it:
  ``demo:NAME`` plus ``weights=FILE``.

Weights are read safely (safetensors, or ``torch.load(weights_only=True)``) unless trusted.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import importlib
import io
import json
import pickle
import re
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from pruner_core.errors import ModelLoadError, SpecError, TrustError
from pruner_core.io.archs import ARCHITECTURES
from pruner_core.io.data import ASSETS
from pruner_core.io.hf import check_no_weights, is_hf_folder, load_hf
from pruner_core.io.outputs import Output, split_output

MODELS_DIR = ASSETS / "models"
FACTORY_RE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
STATE_DICT_SUFFIXES = (".pt", ".pth", ".safetensors", ".bin")

# The modules a factory spec may import in this process; None: any. A command line or a script is its user's own,
# so the library accepts any; the app, driven by whoever reaches its port, narrows it at start-up.
_factory_modules: frozenset[str] | None = None


def allow_factories(modules: Iterable[str] | None) -> None:
    """Let factory specs of this process import only ``modules`` (exact names; empty: none; ``None``: any).

    Process-wide, so it also holds for base models named by run folders and for background jobs.

    >>> allow_factories(["mypkg.models"]); load_model("os:getcwd")
    Traceback (most recent call last):
    ...
    pruner_core.errors.SpecError: factory 'os:getcwd' is not allowed here: this app calls factories only from mypkg.models; to allow 'os', start it with make run FACTORIES=os
    >>> allow_factories(None)
    """
    global _factory_modules
    _factory_modules = None if modules is None else frozenset(modules)


def check_factory_allowed(spec: str) -> None:
    """Refuse a factory spec whose module this process does not allow (see :func:`allow_factories`), importing nothing.

    Raises:
        SpecError: naming the module and the allowed ones.
    """
    mod_name = spec.split(":")[0]
    if _factory_modules is None or mod_name in _factory_modules:
        return
    allowed = f"only from {', '.join(sorted(_factory_modules))}" if _factory_modules else "from no module"
    raise SpecError(
        f"factory '{spec}' is not allowed here: this app calls factories {allowed}; "
        f"to allow '{mod_name}', start it with make run FACTORIES={mod_name}"
    )


@dataclass
class LoadedModel:
    """A model ready for inspection: an eval-mode module plus what we know about it.

    ``eager`` is True for an ordinary ``nn.Module`` whose layers can be physically removed;
    TorchScript and ``torch.export`` programs are not eager (they can be masked only).
    """

    module: nn.Module
    spec: str
    fmt: str
    eager: bool
    arch: str | None = None
    input_shape: tuple[int, ...] | None = None
    num_classes: int | None = None
    card: dict = field(default_factory=dict)
    weights: str | None = None

    @property
    def label(self) -> str:
        return self.spec if not self.weights else f"{self.spec} + {Path(self.weights).name}"

    def fingerprint(self) -> str:
        """A short hash of the weights: equal fingerprints mean equal parameters and buffers."""
        h = hashlib.sha256()
        for k, v in self.module.state_dict().items():
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes() if v.dtype != torch.bfloat16 else v.float().numpy().tobytes())
        return h.hexdigest()[:16]


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise ModelLoadError(f"model file '{path}' does not exist")
    if path.stat().st_size == 0:
        raise ModelLoadError(f"model file '{path.name}' is empty (0 bytes): the copy or download did not finish")


def _what_it_is(path: Path, error: Exception) -> str:
    """What a file that failed to load looks like, for the message (a renamed text file, a damaged archive...)."""
    head = path.read_bytes()[:64]
    detail = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
    if head.startswith(b"PK"):
        return f"a damaged zip archive ({type(error).__name__}: {detail})"
    if head[:1] == b"\x80":
        return f"a damaged pickle ({type(error).__name__}: {detail})"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"its {path.stat().st_size:,} bytes are neither a torch.save zip archive nor a pickle ({detail})"
    return f"it holds text ({text[:40]!r}...), not a torch.save archive"


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read tensors safely from ``.safetensors`` or a ``torch.save``-d dict (``weights_only=True``).

    Common checkpoint wrappers (``{"state_dict": ...}``, ``{"model": ...}``) and DDP's ``module.``
    prefix are unwrapped.

    Raises:
        ModelLoadError: missing or corrupt file, or no tensors inside.
        TrustError: the file holds pickled objects beyond tensors.
    """
    path = Path(path)
    _check_file(path)
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            sd = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise ModelLoadError(f"'{path.name}' is not a readable safetensors file ({e})") from e
    else:
        if zipfile.is_zipfile(path):  # torch.save's format: its checksums are not checked by torch
            check_archive(path, "torch.save")
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            text = str(e).lower()
            if "unsupported global" in text:  # pickled objects beyond tensors (torch spells it GLOBAL or global)
                blocked = re.search(r"global ([\w.]+)", str(e), flags=re.IGNORECASE)
                raise TrustError(
                    f"'{path.name}' holds pickled Python objects, not only tensors"
                    + (f" (it calls {blocked.group(1)})" if blocked else "") + "; loading it runs code from the"
                    " file. Load it as a whole model with the trust switch (--trust / 'I trust this file') only if"
                    " you trust its source"
                ) from e
            raise ModelLoadError(f"'{path.name}' is not a readable PyTorch weights file (damaged or not a .pt)") from e
        except Exception as e:  # a damaged file can raise almost anything from the unpickler or the zip reader
            raise ModelLoadError(f"'{path.name}' is not a readable PyTorch weights file: {_what_it_is(path, e)}") from e
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ModelLoadError(f"'{path.name}' does not hold a state_dict (a mapping of names to tensors)")
    if all(k.startswith("module.") for k in sd):
        sd = {k.removeprefix("module."): v for k, v in sd.items()}
    return sd


def apply_state_dict(module: nn.Module, sd: dict[str, torch.Tensor], source: str, arch: str) -> None:
    """Load ``sd`` into ``module`` strictly, naming the first key or shape that does not fit."""
    own = module.state_dict()
    for key, value in own.items():
        if key not in sd:
            raise ModelLoadError(
                f"weights '{source}' do not fit architecture '{arch}': key '{key}' (shape {tuple(value.shape)}) is"
                f" missing from the file"
            )
        if tuple(sd[key].shape) != tuple(value.shape):
            raise ModelLoadError(
                f"weights '{source}' do not fit architecture '{arch}': key '{key}' has shape"
                f" {tuple(sd[key].shape)} in the file but {tuple(value.shape)} in the model"
            )
    extra = [k for k in sd if k not in own]
    if extra:
        raise ModelLoadError(
            f"weights '{source}' do not fit architecture '{arch}': the file has key '{extra[0]}' which the model"
            f" does not ({len(extra)} unexpected key(s))"
        )
    module.load_state_dict(sd, strict=True)


def _load_demo(spec: str, weights: str | None, trust: bool) -> LoadedModel:
    name = spec.removeprefix("demo:")
    if name not in ARCHITECTURES:
        raise SpecError(f"unknown demo model '{name}'; available: {', '.join('demo:' + n for n in ARCHITECTURES)}")
    arch = ARCHITECTURES[name]
    module = arch.build()
    card: dict = {}
    if weights:
        apply_state_dict(module, read_state_dict(weights), Path(weights).name, name)
    else:
        path = MODELS_DIR / f"{name}.safetensors"
        if not path.is_file():
            raise ModelLoadError(f"the demo weights '{path}' are missing; run `pruner train-demo {name}` to make them")
        apply_state_dict(module, read_state_dict(path), path.name, name)
        card_path = path.with_suffix(".json")
        if card_path.is_file():
            card = json.loads(card_path.read_text())
    return LoadedModel(
        module.eval(), spec, "demo" if not weights else "state_dict", True, name, arch.input_shape, arch.num_classes,
        card, weights,
    )


def _load_factory(spec: str, weights: str | None, trust: bool) -> LoadedModel:
    check_factory_allowed(spec)
    mod_name, fn_name = spec.split(":")
    try:
        mod = importlib.import_module(mod_name)
    except Exception as e:  # importing runs the module: ImportError, SyntaxError, anything it raises
        raise SpecError(f"cannot import module '{mod_name}' of '{spec}' ({e}); it must be importable in this environment") from e
    fn = getattr(mod, fn_name, None)
    if not callable(fn):
        raise SpecError(f"'{mod_name}' has no callable '{fn_name}'; expected package.module:factory returning an nn.Module")
    try:
        module = fn()
    except SystemExit as e:  # a factory that exits would end the server, or the command without a word
        raise ModelLoadError(f"calling '{spec}()' called sys.exit({e.code!r}); a factory must return an nn.Module") from e
    except Exception as e:  # the user's factory may raise anything
        raise ModelLoadError(f"calling '{spec}()' failed: {type(e).__name__}: {e}") from e
    if not isinstance(module, nn.Module):
        raise ModelLoadError(f"'{spec}' returned {type(module).__name__}, not a torch.nn.Module")
    if weights:
        apply_state_dict(module, read_state_dict(weights), Path(weights).name, spec)
    return LoadedModel(module.eval(), spec, "factory", True, weights=weights)


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def check_archive(path: Path, what: str) -> None:
    """Refuse a zip archive (TorchScript, torch.export, torch.save) whose stored checksums do not match its contents:
    torch's reader does not check them, so bytes damaged in transit would load and measure as a wrong model.

    Raises:
        ModelLoadError: naming the file and its first damaged member.
    """
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, RuntimeError) as e:
        raise ModelLoadError(f"'{path.name}' is not a readable {what} archive ({type(e).__name__}: {e})") from e
    if bad is not None:
        raise ModelLoadError(f"'{path.name}' is damaged: its member '{bad}' does not match the checksum the archive "
                             f"stores (the file changed after it was written); save the {what} again")


def _load_torchscript(spec: str, weights: str | None, trust: bool) -> LoadedModel:
    path = Path(spec)
    check_archive(path, "TorchScript")
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except RuntimeError as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ModelLoadError(f"'{path.name}' is not a readable TorchScript archive ({first})") from e
    if weights:
        apply_state_dict(module, read_state_dict(weights), Path(weights).name, path.name)
    return LoadedModel(module.eval(), spec, "torchscript", False, weights=weights)


def _load_export(spec: str, weights: str | None, trust: bool) -> LoadedModel:
    path = Path(spec)
    _check_file(path)
    check_archive(path, "torch.export")
    try:
        program = torch.export.load(str(path))
    except Exception as e:  # torch.export raises many types for a damaged archive
        raise ModelLoadError(f"'{path.name}' is not a readable torch.export program ({str(e).splitlines()[0][:200]})") from e
    module = program.module()
    shapes = [
        tuple(n.meta["val"].shape)
        for n in program.graph.nodes
        if n.op == "placeholder" and n.name in program.graph_signature.user_inputs and hasattr(n.meta.get("val"), "shape")
    ]
    if len(shapes) != 1:
        raise ModelLoadError(f"'{path.name}' takes {len(shapes)} tensor inputs; the explorer handles models with one input")
    if isinstance(shapes[0][0], int):
        raise ModelLoadError(
            f"'{path.name}' was exported with a fixed batch size of {shapes[0][0]}; evaluation and latency need other"
            " batch sizes: export with dynamic_shapes={'x': {0: torch.export.Dim('batch')}}"
        )
    input_shape = tuple(int(d) for d in shapes[0][1:])
    if weights:
        apply_state_dict(module, read_state_dict(weights), Path(weights).name, path.name)
    return LoadedModel(module, spec, "export", False, input_shape=input_shape, weights=weights)


def _load_file(spec: str, weights: str | None, trust: bool) -> LoadedModel:
    path = Path(spec)
    _check_file(path)
    if _is_torchscript(path):
        return _load_torchscript(spec, weights, trust)
    if path.suffix.lower() == ".safetensors":
        read_state_dict(path)  # raises for a corrupt file
        raise SpecError(_state_dict_hint(path))
    try:
        read_state_dict(path)
    except TrustError:
        if not trust:
            raise
        try:
            module = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:  # unpickling can raise anything
            raise ModelLoadError(f"'{path.name}' could not be unpickled ({str(e).splitlines()[0][:200]})") from e
        if not isinstance(module, nn.Module):
            raise ModelLoadError(f"'{path.name}' holds a {type(module).__name__}, not a torch.nn.Module") from None
        if weights:
            apply_state_dict(module, read_state_dict(weights), Path(weights).name, path.name)
        return LoadedModel(module.eval(), spec, "pickle", True, weights=weights)
    raise SpecError(_state_dict_hint(path))


def _state_dict_hint(path: Path) -> str:
    return (
        f"'{path.name}' holds a state_dict (weights only); give its architecture: demo:NAME with --weights"
        f" {path.name} (NAME one of {', '.join(ARCHITECTURES)}), or package.module:factory --weights {path.name}"
    )


@dataclass(frozen=True)
class ModelFormat:
    """One way to load a model; ``eager`` says whether layers can be physically removed."""

    name: str
    label: str
    matches: Callable[[str], bool]
    load: Callable[[str, str | None, bool], LoadedModel]


def _load_hf(spec: str, weights: str | None, trust: bool) -> LoadedModel:
    check_no_weights(spec, weights)
    module, shape, card = load_hf(spec)
    return LoadedModel(module, spec, "huggingface", True, input_shape=shape,
                       num_classes=int(module.model.config.num_labels), card=card)


MODEL_FORMATS: list[ModelFormat] = [
    ModelFormat("demo", "demo:NAME (shipped demo model)", lambda s: s.startswith("demo:"), _load_demo),
    ModelFormat("export", "torch.export program (.pt2)", lambda s: s.lower().endswith(".pt2"), _load_export),
    ModelFormat(
        "file",
        "TorchScript (.pt/.pth/.ts), pickled module (trust only) or state_dict with an architecture",
        lambda s: s.lower().endswith((".ts", ".jit", *STATE_DICT_SUFFIXES)),
        _load_file,
    ),
    ModelFormat("huggingface", "a Hugging Face folder (config.json + model.safetensors, as save_pretrained writes it)",
                is_hf_folder, _load_hf),
    ModelFormat(
        "factory", "package.module:factory", lambda s: bool(FACTORY_RE.match(s)) and not Path(s).exists(), _load_factory
    ),
]


def register_model_format(fmt: ModelFormat, *, before: str | None = None) -> ModelFormat:
    """Add a way to load models (tried before the format named ``before``, else last); returns it.

    Higher layers register the formats they own: a pruning run folder is registered by
    :mod:`pruner_core.pipeline.runs`, which knows how to rebuild a run's model.

    Raises:
        SpecError: the name is taken.
    """
    if any(f.name == fmt.name for f in MODEL_FORMATS):
        raise SpecError(f"model format '{fmt.name}' is registered already; registered: {', '.join(f.name for f in MODEL_FORMATS)}")
    names = [f.name for f in MODEL_FORMATS]
    MODEL_FORMATS.insert(names.index(before) if before in names else len(MODEL_FORMATS), fmt)
    return fmt


def load_model(spec: str, *, weights: str | Path | None = None, trust: bool = False) -> LoadedModel:
    """Load a model from a spec, in eval mode.

    Args:
        spec: ``demo:NAME``, ``pkg.module:factory``, or a ``.pt2`` / ``.pt`` / ``.pth`` / ``.ts`` file.
        weights: a state_dict file (``.safetensors``, ``.pt``, ``.pth``) to load into the architecture.
        trust: allow unpickling a fully pickled module (this runs code from the file).

    Raises:
        SpecError, ModelLoadError, TrustError: with the bad value and the valid ones in the message.

    >>> load_model("demo:lenet300").arch
    'lenet300'
    """
    spec = str(spec)
    weights = str(weights) if weights else None
    base, key = split_output(spec)
    if key is not None and not Path(spec).exists():  # 'pkg.mod:net#0', 'model.pt2#logits': one output of many
        loaded = load_model(base, weights=weights, trust=trust)
        if not loaded.eager:
            raise SpecError(f"'{spec}': choosing an output (#{key}) needs an ordinary nn.Module; '{base}' is a "
                            f"{loaded.fmt} program")
        return dataclasses.replace(loaded, module=Output(loaded.module, key).eval(), spec=spec)
    for fmt in MODEL_FORMATS:
        if fmt.matches(spec):
            loaded = fmt.load(spec, weights, trust)
            check_finite(loaded.module, loaded.label)
            return loaded
    raise SpecError(
        f"cannot load a model from '{spec}'; expected one of: " + "; ".join(f.label for f in MODEL_FORMATS)
    )


def check_finite(module: nn.Module, label: str) -> None:
    """Refuse a model whose parameters or buffers hold NaN or Inf (it would prune and "fine-tune" to nonsense).

    Raises:
        ModelLoadError: naming the first tensor and how many values are not finite.
    """
    for name, tensor in (*module.named_parameters(), *module.named_buffers()):
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise ModelLoadError(f"model '{label}': {name} holds {bad:,} non-finite value(s) (NaN or Inf); its weights "
                                 "are damaged: load a model whose weights are all finite")


def copy_module(module: nn.Module) -> nn.Module:
    """An independent copy of ``module`` whose parameters are leaves (trainable).

    ``copy.deepcopy`` of a loaded TorchScript program gives parameters that are not leaves, which no optimizer takes;
    a TorchScript program is copied through its own serialisation instead.
    """
    if isinstance(module, torch.jit.ScriptModule):
        buffer = io.BytesIO()
        torch.jit.save(module, buffer)
        buffer.seek(0)
        return torch.jit.load(buffer)
    return copy.deepcopy(module)
