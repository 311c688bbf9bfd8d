"""The one Streamlit-aware shared module: cached loaders, the session's active model and data, shared widgets.

Never registered as a page. Models and data sets are cached with ``st.cache_resource`` and shared by
every session, so nothing here or in a page may mutate them: a page that changes a model works on a copy.
"""

from __future__ import annotations

import functools
import hashlib
import tempfile
from pathlib import Path

import streamlit as st

from pages._progress import forget_measured, measured_once
from pages._runs import list_runs_by_path, runs_root, saved_runs
from pruner_core.compare.compare import Entry, compare, original_cache_dir
from pruner_core.config.text import format_duration, parse_fractions
from pruner_core.errors import PrunerError
from pruner_core.frontends.serving import Exposure
from pruner_core.io.data import Dataset, load_data
from pruner_core.io.export import ensure_onnx
from pruner_core.io.fit import check_data_fits, fit_data
from pruner_core.io.image_folder import folder_stamp
from pruner_core.io.models import LoadedModel, allow_factories, load_model
from pruner_core.io.outputs import split_output
from pruner_core.io.preprocess import join_spec, split_spec
from pruner_core.measure.analysis import Analysis, analyze
from pruner_core.measure.metrics import VitalSigns, vital_signs
from pruner_core.measure.preview import Preview, preview
from pruner_core.pipeline.estimate import Estimate, estimate, time_step
from pruner_core.pipeline.quantize import INT8_FILE
from pruner_core.pipeline.runs import Run
from pruner_core.pruning.describe import LayerInfo, describe_model
from pruner_core.pruning.recipe import Recipe
from pruner_core.sensitivity.scan import check_ratios
from pruner_core.sensitivity.scan import estimate as scan_estimate

UPLOAD_DIR = Path(tempfile.gettempdir()) / "pruning-explorer-uploads"
DEFAULT_MODEL = {"spec": "demo:mnist-cnn", "weights": None, "trust": False}
DEFAULT_DATA = "demo:mnist5k"
SIDEBAR_RUNS = 5
RUN_STATUS_ICONS = {
    "running": ":material/pending:", "done": ":material/check_circle:", "failed": ":material/error:",
    "cancelled": ":material/cancel:", "interrupted": ":material/warning:", "damaged": ":material/broken_image:",
}


def init_state() -> None:
    """Initialise the session's explorer state where missing: the demo model and data are active.

    Also holds this process to the factory modules it was started with (see :func:`exposure`), before any page
    can load a model: a browser visitor never picks code to import.
    """
    try:
        allow_factories(exposure().factories)
    except PrunerError as e:  # the app was started with a bad setting: nothing may load until it is fixed
        allow_factories(())
        st.error(f"This app was started with a bad setting: {e}", icon=":material/error:")
        st.stop()
    if "active.model" not in st.session_state:
        st.session_state["active.model"], st.session_state["active.data"] = dict(DEFAULT_MODEL), DEFAULT_DATA
        restore_from_url()
    keep_in_url()


URL_KEYS = ("model", "weights", "data")


def keep_in_url() -> None:
    """Write the active model and data into the page's address (none for the demo), so a refresh or a shared link
    opens the same view; the page itself is the address's path."""
    choice, data = st.session_state["active.model"], st.session_state["active.data"]
    wanted = {} if (choice == DEFAULT_MODEL and data == DEFAULT_DATA) else {
        k: v for k, v in zip(URL_KEYS, (choice["spec"], choice["weights"], data), strict=True) if v}
    if {k: st.query_params.get(k) for k in URL_KEYS if k in st.query_params} != wanted:
        for key in URL_KEYS:
            st.query_params.pop(key, None)
        st.query_params.update(wanted)


def restore_from_url() -> None:
    """A new session opened at an address naming a model and data: load them as the Model page would (paths checked
    against what this server may read, factories against its allow-list, never trusted: a link cannot make the
    server unpickle); on failure the demo stays and the reason is shown."""
    spec = st.query_params.get("model")
    if not spec:
        return
    try:
        weights, data = st.query_params.get("weights"), st.query_params.get("data") or DEFAULT_DATA
        choice = {"spec": _url_path(spec), "weights": _url_path(weights) if weights else None, "trust": False}
        source, pre = split_spec(data)  # a data spec may carry its preprocessing after '|'
        activate(choice, join_spec(_url_path(source), pre))
    except PrunerError as e:
        st.session_state["model.outcome"] = ("error", str(e))
    kind, message = st.session_state.get("model.outcome", ("", ""))
    if kind == "error":
        st.session_state["model.outcome"] = ("error", f"The address names a model this server cannot open: {message}")


def _url_path(spec: str) -> str:
    """A spec from the address: demo and factory specs as they are, an upload of this server as it is, any other
    path through :meth:`~pruner_core.frontends.serving.Exposure.resolve_path`."""
    if spec.startswith("demo:") or (":" in spec and not Path(spec).exists()) or Path(spec).is_relative_to(UPLOAD_DIR):
        return spec
    return exposure().resolve_path(spec)


def exposure() -> Exposure:
    """Who this server serves: its listening address, with the factory modules and folder it was started with.

    Raises:
        PrunerError: ``$PRUNER_FACTORIES`` or ``$PRUNER_PATH_ROOT`` is malformed.
    """
    return Exposure.from_env(st.get_option("server.address"), st.get_option("server.maxUploadSize"))


@st.cache_resource(max_entries=8, show_spinner="Loading model…")
def cached_model(spec: str, weights: str | None, trust: bool, digest: str) -> LoadedModel:
    """A model shared by all sessions (``digest`` keys file contents). Read-only: never mutate it."""
    return load_model(spec, weights=weights, trust=trust)


@st.cache_resource(max_entries=8, show_spinner="Loading data…")
def cached_data(spec: str, digest: str) -> Dataset:
    """A data set shared by all sessions. Read-only."""
    return load_data(spec)


def file_bytes(path: Path) -> bytes:
    """A file's contents for a download button, read once per (size, modification time)."""
    stat = path.stat()
    return _read_file(str(path), stat.st_size, stat.st_mtime_ns)


@st.cache_resource(max_entries=8, show_spinner=False)
def _read_file(path: str, size: int, mtime_ns: int) -> bytes:
    return Path(path).read_bytes()


def file_digest(path: str | None) -> str:
    """Content hash of a file (empty for specs that are not files), so edited files reload ('model.pt2#logits' is
    the file 'model.pt2')."""
    if path and not Path(path).exists():
        path = split_output(path)[0]
    if not path or not Path(path).is_file():
        return ""
    stat = Path(path).stat()
    return _hash_file(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _hash_file(path: str, size: int, mtime_ns: int) -> str:
    """Hash a file once per (size, mtime): page reruns do not re-read large models."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def data_digest(spec: str) -> str:
    """:func:`file_digest` of a data spec's file, or a folder's :func:`~pruner_core.io.image_folder.folder_stamp`."""
    source = split_spec(spec)[0]
    return folder_stamp(source) if Path(source).is_dir() else file_digest(source)


def save_upload(upload) -> str:
    """Store an uploaded file under its content hash and return its path. Storing runs nothing.

    Raises:
        PrunerError: the file is larger than this server accepts (see :meth:`Exposure.check_upload`).
    """
    exposure().check_upload(upload.name, upload.size)
    payload = upload.getvalue()
    digest = hashlib.sha256(payload).hexdigest()[:16]
    path = UPLOAD_DIR / digest / Path(upload.name).name
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".part")
        tmp.write_bytes(payload)
        tmp.replace(path)
    return str(path)


def get_model(choice: dict) -> LoadedModel:
    return cached_model(choice["spec"], choice["weights"], choice["trust"], file_digest(choice["spec"]) + file_digest(choice["weights"]))


@st.cache_resource(max_entries=8, show_spinner="Arranging the data as the model takes it…")
def cached_fit(model_choice: tuple, model_digest: str, data_spec: str, data_digest: str) -> Dataset:
    """The data set arranged as the model takes it (:func:`~pruner_core.io.fit.fit_data`), shared. Read-only."""
    return fit_data(_model_of(model_choice), cached_data(data_spec, data_digest))


def get_data(spec: str, choice: dict) -> Dataset:
    """Data set ``spec`` as the model ``choice`` takes it (a [N, T, F] file is sequences to an LSTM, images to a CNN).

    Raises:
        PrunerError: the file cannot be loaded, or the model takes it in no arrangement.
    """
    return cached_fit(*_key_of(choice, spec))


def active_data() -> Dataset:
    """The active data set, arranged as the active model takes it."""
    return cached_fit(*_active_key())


def activate(model_choice: dict, data_spec: str | None) -> None:
    """Button callback: load and check a model and data, and make them active only if both load and fit.

    The outcome waits in ``st.session_state["model.outcome"]`` as ``(kind, message)`` for :func:`show_outcome`.
    Running as a callback, it changes the state before the script runs, so every part of the page
    (the sidebar too) shows the new model on this very run.
    """
    if not model_choice["spec"]:
        st.session_state["model.outcome"] = ("error", "Choose a model file first.")
        return
    if not data_spec:
        st.session_state["model.outcome"] = ("error", "Choose a data file first.")
        return
    try:
        get_data(data_spec, model_choice)  # loads both, arranges the data as the model takes it and checks it
    except PrunerError as e:
        st.session_state["model.outcome"] = ("error", str(e))
        return
    st.session_state["active.model"] = dict(model_choice)
    st.session_state["active.data"] = data_spec
    st.session_state["model.outcome"] = ("success", f"Loaded {model_label(model_choice)} with {data_label(data_spec)}.")


def show_outcome(*keys: str) -> None:
    """Show (once) the outcome a callback left under each key (default: the last :func:`activate`'s).

    The messages sit in a container drawn on every run, so the elements below keep their place whether or not there
    is a message: a widget below (a file uploader) is not re-created when a message comes or goes, and a file dropped
    on it while the page reruns is not lost.
    """
    box = st.container()
    for key in keys or ("model.outcome",):
        outcome = st.session_state.pop(key, None)
        if outcome:
            kind, message = outcome
            show = {"error": box.error, "warning": box.warning}.get(kind, box.success)
            show(message, icon=f":material/{'check' if kind == 'success' else kind}:")


def _active_key() -> tuple:
    """Cache key of the active model and data: the model choice, the data spec and their file digests."""
    return _key_of(st.session_state["active.model"], st.session_state["active.data"])


def _key_of(choice: dict, data_spec: str) -> tuple:
    """Cache key of a model choice and data spec (see :func:`_active_key`)."""
    return (
        (choice["spec"], choice["weights"], choice["trust"]),
        file_digest(choice["spec"]) + file_digest(choice["weights"]),
        data_spec,
        data_digest(data_spec),
    )


def _model_of(model_choice: tuple) -> LoadedModel:
    return get_model(dict(zip(("spec", "weights", "trust"), model_choice, strict=True)))


def cached_vital_signs(model_choice: tuple, model_digest: str, data_spec: str, data_digest: str) -> VitalSigns:
    """Vital signs measured once per key, under a progress bar that says what is measured and how long is left."""
    model = _model_of(model_choice)  # both cached: cheap on a rerun
    data = cached_fit(model_choice, model_digest, data_spec, data_digest)
    return measured_once("vital_signs", (model_choice, model_digest, data_spec, data_digest),
                         f"Measuring the vital signs of {model.label}", lambda report: vital_signs(model, data, progress=report))


def active_vital_signs() -> VitalSigns | None:
    """Vital signs of the active model on the active data (measured once, then cached); None after an error."""
    try:
        return cached_vital_signs(*_active_key())
    except PrunerError as e:
        st.error(str(e), icon=":material/error:")
        return None


@st.cache_data(max_entries=16, show_spinner="Analysing layers (weight magnitudes, APoZ, norm scale)…")
def cached_analysis(model_choice: tuple, model_digest: str, data_spec: str, data_digest: str, samples: int) -> Analysis:
    """The analysis of a model on ``samples`` calibration samples, keyed like :func:`cached_vital_signs`.

    Only what changes the statistics is in the key: norm, colour scale and layer only change the figures. The
    model's description (FLOPs, coupled groups) comes from its own cache: another sample count does not redo it.
    """
    layers = cached_layers(model_choice, model_digest, data_spec, data_digest)
    return analyze(_model_of(model_choice), cached_fit(model_choice, model_digest, data_spec, data_digest),
                   samples=samples, layers=layers)


def active_analysis(samples: int) -> Analysis:
    """The analysis of the active model on the active data (computed once per sample count, then cached).

    Raises:
        PrunerError, ValueError: from the core, for the page to show.
    """
    return cached_analysis(*_active_key(), int(samples))


def vital_signs_of(choice: dict, data_spec: str) -> VitalSigns:
    """Vital signs of a model on a data set, from the same cache as :func:`active_vital_signs` (raises PrunerError)."""
    return cached_vital_signs(*_key_of(choice, data_spec))


@st.cache_data(max_entries=16, show_spinner="Describing layers…")
def cached_layers(model_choice: tuple, model_digest: str, data_spec: str, data_digest: str) -> list[LayerInfo]:
    model, data = _model_of(model_choice), cached_fit(model_choice, model_digest, data_spec, data_digest)
    return describe_model(model, check_data_fits(model, data))


def active_layers() -> list[LayerInfo]:
    """The prunable layers of the active model (:func:`~pruner_core.pruning.describe.describe_model`), cached.

    Raises:
        PrunerError: from the core, for the page to show.
    """
    return cached_layers(*_active_key())


@st.cache_data(max_entries=32, show_spinner="Previewing what the recipe removes…")
def cached_preview(model_choice: tuple, model_digest: str, data_spec: str, data_digest: str, recipe_yaml: str) -> Preview:
    return preview(_model_of(model_choice), cached_fit(model_choice, model_digest, data_spec, data_digest),
                   Recipe.from_yaml(recipe_yaml))


def active_preview(recipe: Recipe) -> Preview:
    """What ``recipe`` would remove from the active model (:func:`~pruner_core.measure.preview.preview`), cached per recipe.

    Raises:
        PrunerError: the recipe does not fit the model, or the criterion cannot score it.
    """
    return cached_preview(*_active_key(), recipe.to_yaml())


def cached_comparison(model_choice: tuple, model_digest: str, data_spec: str, data_digest: str, runs: tuple[str, ...],
                      stamps: tuple, root: str) -> list[Entry]:
    """:func:`~pruner_core.compare.compare` of the model and the run folders ``runs`` (``stamps``: their states),
    measured once per key under a progress bar (:func:`forget_comparisons` to measure again)."""
    def work(report):  # run only when this key is new: a rerun of the page reads no run folder
        listed = list_runs_by_path(root)
        chosen = [listed[p] for p in runs if p in listed]  # a folder removed meanwhile is left out, not an error
        model, data = _model_of(model_choice), cached_fit(model_choice, model_digest, data_spec, data_digest)
        return compare(model, data, chosen, data_spec=data_spec, root=root,
                       callback=lambda done, total, what: report(done / total, f"{what} ({done + 1} of {total})"))

    return measured_once("comparison", (model_choice, model_digest, data_spec, data_digest, runs, stamps, root),
                         "Measuring accuracy, sizes and latency (PyTorch and ONNX Runtime)", work)


def forget_comparisons() -> None:
    forget_measured("comparison")


@st.cache_data(max_entries=16, show_spinner="Timing one fine-tuning step…")
def cached_step_ms(model_choice: tuple, model_digest: str, data_spec: str, data_digest: str, batch_size: int,
                   distill: bool) -> float:
    return time_step(_model_of(model_choice), cached_fit(model_choice, model_digest, data_spec, data_digest),
                     batch_size, distill)


def active_estimate(recipe: Recipe) -> Estimate:
    """What ``recipe`` will cost on the active model and data (one training step timed once per batch size)."""
    key = _active_key()
    step_ms = cached_step_ms(*key, recipe.finetune.batch_size, recipe.finetune.distill)
    return estimate(_model_of(key[0]), cached_fit(*key), recipe, step_ms)


@st.cache_data(max_entries=32, show_spinner="Timing one evaluation to say how long a scan takes…")
def cached_scan_estimate(model_choice: tuple, model_digest: str, data_spec: str, data_digest: str, granularity: str,
                         ratios: int, samples: int) -> tuple[int, int, float]:
    return scan_estimate(_model_of(model_choice), cached_fit(model_choice, model_digest, data_spec, data_digest),
                         granularity=granularity, ratios=[0.0] * ratios, samples=samples)


def scan_promise(granularity: str, ratios_text: str, samples: int) -> str:
    """How long a scan with these settings takes here, timed now (a sentence), or why it cannot be said."""
    try:
        ratios = len(check_ratios(parse_fractions(ratios_text, "ratios")))
        units, evaluations, seconds = cached_scan_estimate(*_active_key(), granularity, ratios, samples)
    except PrunerError as e:
        return f"How long it takes cannot be said: {e}"
    return (f"A scan with these settings runs {evaluations:,} evaluations ({units} units x {ratios} ratio{'s' * (ratios != 1)} on "
            f"{samples:,} test samples): about {format_duration(seconds)} here, from one evaluation timed now"
            + (", plus the channel latency timing." if granularity == "channel" else "."))


@st.cache_data(max_entries=16, show_spinner=False)
def _cached_fingerprint(model_choice: tuple, model_digest: str) -> str:
    return _model_of(model_choice).fingerprint()


def active_fingerprint() -> str:
    """The active model's weights fingerprint, hashed once per model file rather than on every rerun."""
    key = _active_key()
    return _cached_fingerprint(key[0], key[1])


@st.cache_data(max_entries=16, show_spinner="Exporting the model to ONNX…")
def _cached_original_onnx(model_choice: tuple, model_digest: str, data_spec: str, data_digest: str, root: str) -> str:
    model = _model_of(model_choice)
    shape = check_data_fits(model, cached_fit(model_choice, model_digest, data_spec, data_digest))
    folder = original_cache_dir(model, root, fingerprint=_cached_fingerprint(model_choice, model_digest))
    return str(ensure_onnx(model.module, shape, folder))


def active_original_onnx() -> Path:
    """The active model's ONNX file (exported and checked once, shared with the Compare page's cache).

    Raises:
        PrunerError: the model does not fit the data or cannot be exported.
    """
    path = Path(_cached_original_onnx(*_active_key(), str(runs_root())))
    if not path.is_file():  # the cache folder was removed on disk: export again
        _cached_original_onnx.clear()
        path = Path(_cached_original_onnx(*_active_key(), str(runs_root())))
    return path


def runs_for_this_session(runs: list[Run]) -> tuple[list[Run], list[Run]]:
    """``(mine, others)``: the runs of the active model and data or made in this session (newest first), and the
    rest, which a page offers only when asked and labels (:func:`other_label`)."""
    try:
        fingerprint = active_fingerprint()
    except PrunerError:
        fingerprint = None
    own = st.session_state.get("session.runs", set())
    mine = [r for r in runs if str(r.path) in own or r.made_from(fingerprint, st.session_state["active.data"])]
    return mine, [r for r in runs if r not in mine]


def other_label(run: Run) -> str:
    """A run of another model or data, labelled so in a picker."""
    return f"{run.label} · other model or data ({Path(str(run.base.get('spec', '?'))).name}, {run.base.get('data', '?')})"


def active_comparison(runs: list[Run]) -> list[Entry]:
    """The active model (as the original) compared with ``runs`` on the active data; measured once per run, cached.

    Raises:
        PrunerError: the active data does not fit the active model.
    """
    stamps = tuple((r.status, r.finished, r.error, _int8_stamp(r)) for r in runs)
    return cached_comparison(*_active_key(), tuple(str(r.path) for r in runs), stamps, str(runs_root()))


def _int8_stamp(run: Run) -> float | None:
    """When the run's INT8 file was written (None: never quantized): quantizing a run changes its comparison."""
    path = run.path / INT8_FILE
    return path.stat().st_mtime if path.is_file() else None


def model_label(choice: dict) -> str:
    name = Path(choice["spec"]).name if not choice["spec"].startswith("demo:") else choice["spec"]
    return name + (f" + {Path(choice['weights']).name}" if choice["weights"] else "")


def data_label(spec: str) -> str:
    """The data's name, with its preprocessing when it has one ('photos · imagenet,size=224')."""
    source, pre = split_spec(spec)
    name = source if source.startswith("demo:") else Path(source).name
    return f"{name} · {pre.token()}" if not pre.identity else name


def sidebar() -> None:
    """The shared sidebar: which model and data every page works on."""
    with st.sidebar:
        st.caption("Active model")
        st.markdown(f"**{model_label(st.session_state['active.model'])}**", help="Pick another on the Model page")
        st.caption("Active data")
        st.markdown(f"**{data_label(st.session_state['active.data'])}**")
        runs = saved_runs()
        st.caption("Runs", help=f"Saved under {runs_root()}, newest first")
        if not runs:
            st.caption("none yet")
        for run in runs[:SIDEBAR_RUNS]:
            st.caption(f"{RUN_STATUS_ICONS.get(run.status, '')} `{run.id}` {run.status}", help=run.label)
        if len(runs) > SIDEBAR_RUNS:
            st.caption(f"and {len(runs) - SIDEBAR_RUNS} older")
