"""Data sets: the embedded demo (MNIST-5k), a user ``.npz``, an image folder (a directory, streamed) or its zip.

A spec is ``demo:mnist5k`` or a path, optionally followed by ``|`` and its preprocessing
(:mod:`pruner_core.io.preprocess`: ``photos/|imagenet,size=224``). Every loader returns a :class:`Dataset` of float
samples with integer labels, split into train and test: images ``[N, C, H, W]`` (a file's
``[N, H, W]`` and ``[N, H, W, C]`` rearranged so), features ``[N, D]``. Whether the model takes
the samples so, or as the file holds them (a ``[N, T, F]`` sequence, integer token ids), is the
model's to decide: :func:`pruner_core.io.fit.fit_data`. Uploads arrive as bytes and go through the same code.
A directory's samples are :class:`~pruner_core.io.image_folder.ImageFiles`, read only when asked for: whole passes
go through :func:`batches`, which streams them with ``DataLoader`` workers.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import numpy as np
import torch

from pruner_core.errors import DataError, SpecError
from pruner_core.io.image_folder import IMAGE_SUFFIXES, ImageFiles, decode, layout, scan_folder
from pruner_core.io.preprocess import Preprocess, split_spec

ASSETS = Path(__file__).resolve().parents[2] / "assets"
DEMO_DATA = {"mnist5k": ASSETS / "mnist5k.npz"}
SPLIT_SEED = 0
TEST_FRACTION = 0.2
MAX_CLASSES = 100_000  # a label of 2**62 once asked for that many class names
DATA_WORKERS = int(os.environ.get("PRUNER_DATA_WORKERS", "2"))  # DataLoader workers streaming a folder
MAX_DATA_VALUES = 2**31  # pixel values of a whole image-folder data set (8 GB as float32)
SEEDED_SPLIT = f"seeded {1 - TEST_FRACTION:.0%}/{TEST_FRACTION:.0%} split (seed {SPLIT_SEED})"
MAX_IMAGES = 200_000  # in a zip, decoded whole (a directory is streamed: no limit)
Samples = torch.Tensor | ImageFiles


@dataclass(frozen=True)
class Dataset:
    """A labelled data set split into train (fine-tuning, calibration) and test (evaluation)."""

    name: str
    x_train: Samples
    y_train: torch.Tensor
    x_test: Samples
    y_test: torch.Tensor
    classes: list[str] = field(default_factory=list)
    split: str = ""
    arranged: str = ""  # how the file's samples were rearranged: "" (as held), "channel" or "channels_last"
    integer: bool = False  # the file held integers (not uint8 pixels): they may be token ids
    preprocess: str = ""  # the preprocessing applied (a :class:`~pruner_core.io.preprocess.Preprocess` token)

    @property
    def streamed(self) -> bool:
        """Read from files as needed (a directory), not held in memory."""
        return isinstance(self.x_test, ImageFiles)

    @property
    def held_shape(self) -> tuple[int, ...]:
        """The sample shape as the file holds it."""
        shape = self.sample_shape
        if self.arranged == "channel":
            return shape[1:]
        if self.arranged == "channels_last":
            return (*shape[1:], shape[0])
        return shape

    def arrangements(self) -> list[Dataset]:
        """This data set as each layout a model might take it: first as loaded (images channels-first), then as the
        file holds it (a [N, T, F] sequence rather than [N, 1, H, W] images), each also as integer ids where the file
        held integers. :func:`pruner_core.io.fit.fit_data` picks the first the model takes."""
        layouts = [self]
        if self.arranged:
            def held(x: torch.Tensor) -> torch.Tensor:
                return x.squeeze(1) if self.arranged == "channel" else x.movedim(1, -1).contiguous()
            layouts.append(self._with(held, arranged=""))
        if self.integer:
            layouts += [d._with(torch.Tensor.long) for d in list(layouts)]
        return layouts

    def _with(self, f: Callable[[torch.Tensor], torch.Tensor], **changes) -> Dataset:
        return Dataset(self.name, f(self.x_train), self.y_train, f(self.x_test), self.y_test, self.classes, self.split,
                       **{"arranged": self.arranged, "integer": self.integer, "preprocess": self.preprocess, **changes})

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x_test.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def summary(self) -> dict:
        """Plain-data description for tables and JSON."""
        return {
            "name": self.name,
            "sample_shape": list(self.sample_shape),
            "classes": self.num_classes,
            "train": len(self.y_train),
            "test": len(self.y_test),
            "split": self.split,
            "preprocess": Preprocess.from_token(self.preprocess).describe(),
        }


def _to_float(x: np.ndarray, what: str) -> torch.Tensor:
    if x.dtype == np.uint8:
        return torch.from_numpy(x.astype(np.float32) / 255.0)
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise DataError(f"{what} has dtype {x.dtype}; expected numbers (uint8 pixels or floats)")
    values = np.ascontiguousarray(x, dtype=np.float32)
    finite = np.isfinite(values)
    if not finite.all():  # one NaN pixel would turn every weight into NaN in the first fine-tuning step
        bad = int(values.size - np.count_nonzero(finite))
        first = int(np.argwhere(~finite.reshape(len(values), -1).all(1))[0, 0])
        raise DataError(f"{what} holds {bad:,} non-finite value(s) (NaN or Inf), the first in sample {first}; "
                        "replace or drop them")
    return torch.from_numpy(values)


def _channels_first(x: np.ndarray, what: str) -> tuple[np.ndarray, str]:
    """Images channels-first, with how they were rearranged (see :attr:`Dataset.arranged`); the model decides later
    whether it takes them so or as the file holds them (:meth:`Dataset.arrangements`)."""
    if x.ndim == 3:  # N, H, W -> N, 1, H, W (or a sequence N, T, F, if the model says so)
        return x[:, None], "channel"
    if x.ndim == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):  # N, H, W, C
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2)), "channels_last"
    if x.ndim in (2, 4):
        return x, ""
    raise DataError(
        f"{what} has shape {tuple(x.shape)}; expected [N, D] (features or token ids), [N, T, F] or [N, C, L] "
        "(sequences), [N, H, W], [N, C, H, W] or [N, H, W, C] (images)"
    )


def _labels(y: np.ndarray, n: int, what: str) -> torch.Tensor:
    if y.ndim != 1:
        raise DataError(f"{what} has shape {tuple(y.shape)}; expected one integer label per sample, shape [{n}]")
    if len(y) != n:
        raise DataError(f"{what} has {len(y)} labels for {n} samples; expected one label per sample")
    if not np.issubdtype(y.dtype, np.number) or (
        np.issubdtype(y.dtype, np.floating) and not np.all(np.equal(np.mod(y, 1), 0))
    ):
        raise DataError(f"{what} must hold integer class labels; got dtype {y.dtype}")
    if len(y) and y.min() < 0:
        raise DataError(f"{what} holds the negative label {int(y.min())}; labels must be 0, 1, 2, ...")
    if len(y) and y.max() >= MAX_CLASSES:
        raise DataError(f"{what} holds the label {int(y.max())}; labels must be below {MAX_CLASSES:,} (classes 0, 1, 2, "
                        "... numbered without gaps)")
    return torch.from_numpy(y.astype(np.int64))


def _image_split(name: str, is_test: np.ndarray, given: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Train and test indices of an image folder's files (a folder's or a zip's), with the split's description.

    A given split (``given`` names its folders) is dealt in a seeded order, not the listing's (grouped by class), so
    the first N samples a scan, a calibration or a search takes hold every class; without one, the seeded 80/20 split.

    Raises:
        DataError: a single image and no given split.
    """
    if given:
        deal = [i[np.random.default_rng(SPLIT_SEED).permutation(len(i))] for i in (np.flatnonzero(~is_test),
                                                                                   np.flatnonzero(is_test))]
        return deal[0], deal[1], f"given ({given.replace('/', ' / ')} folders, each in a seeded order)"
    if len(is_test) < 2:
        raise DataError(f"{name}: 1 image cannot be split into train and test; give at least 2")
    return (*_split(len(is_test)), SEEDED_SPLIT)


def _split(n: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    n_test = max(1, round(n * TEST_FRACTION))
    return perm[n_test:], perm[:n_test]


def _from_arrays(
    name: str, x: np.ndarray, y: np.ndarray, x_test: np.ndarray | None, y_test: np.ndarray | None
) -> Dataset:
    if x.ndim == 0 or len(x) == 0:
        raise DataError(f"{name}: 'x' holds no samples" + (" (it is a single number, not an array of samples)"
                                                              if x.ndim == 0 else ""))
    integer = bool(np.issubdtype(x.dtype, np.integer) and x.dtype != np.uint8)
    x, arranged = _channels_first(x, f"{name}: 'x'")
    y_t = _labels(y, len(x), f"{name}: 'y'")
    x_t = _to_float(x, f"{name}: 'x'")
    if x_test is None:
        if len(x) < 2:
            raise DataError(f"{name}: {len(x)} sample cannot be split into train and test; give at least 2")
        tr, te = _split(len(x))
        split = SEEDED_SPLIT
        xt_t, yt_t, x_t, y_t = x_t[te], y_t[te], x_t[tr], y_t[tr]
    else:
        x_test, _ = _channels_first(x_test, f"{name}: 'x_test'")
        if x_test.shape[1:] != x.shape[1:]:
            raise DataError(
                f"{name}: 'x_test' samples have shape {tuple(x_test.shape[1:])} but 'x' samples {tuple(x.shape[1:])};"
                " they must match"
            )
        if len(x_test) == 0:
            raise DataError(
                f"{name}: 'x_test' holds no samples, so nothing could be measured; give at least one test sample, or "
                "leave x_test and y_test out for a seeded 80/20 split"
            )
        yt_t = _labels(y_test, len(x_test), f"{name}: 'y_test'")
        xt_t = _to_float(x_test, f"{name}: 'x_test'")
        split = "given (x/y train, x_test/y_test test)"
    n_classes = int(max(y_t.max().item(), yt_t.max().item() if len(yt_t) else 0)) + 1
    return Dataset(name, x_t, y_t, xt_t, yt_t, [str(i) for i in range(n_classes)], split, arranged, integer)


def _load_npz(name: str, f: BinaryIO, pre: Preprocess) -> Dataset:
    head = f.read(4)
    f.seek(0)
    if head != b"PK\x03\x04":  # np.load would try a single .npy or a pickle: refuse both
        raise DataError(f"{name} is not a readable .npz file (an .npz is a zip of arrays made by numpy.savez)")
    try:
        with np.load(f, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as e:  # object arrays need pickle: refuse
        raise DataError(f"{name}: cannot read arrays without unpickling ({e}); save plain numeric arrays") from e
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{name} is not a readable .npz file ({e})") from e
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise DataError(
            f"{name} lacks the array(s) {missing}; it holds {sorted(arrays)}; expected 'x', 'y' and optionally"
            " 'x_test', 'y_test'"
        )
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"{name} has only one of 'x_test' and 'y_test'; give both or neither")
    ds = _from_arrays(name, arrays["x"], arrays["y"], arrays.get("x_test"), arrays.get("y_test"))
    return _preprocessed(ds, pre)


def _preprocessed(ds: Dataset, pre: Preprocess) -> Dataset:
    """Decoded arrays with the channels and normalisation applied; they are images from then on."""
    if pre.identity:
        return ds
    return Dataset(ds.name, pre.tensor(ds.x_train, f"{ds.name}: 'x'"), ds.y_train, pre.tensor(ds.x_test, f"{ds.name}: 'x'"),
                   ds.y_test, ds.classes, ds.split, preprocess=pre.token())


def _load_zip(name: str, f: BinaryIO, pre: Preprocess) -> Dataset:
    try:
        zf = zipfile.ZipFile(f)
    except zipfile.BadZipFile as e:
        raise DataError(f"{name} is not a readable zip file ({e})") from e
    with zf:
        files = [
            PurePosixPath(i.filename)
            for i in zf.infolist()
            if not i.is_dir()
            and PurePosixPath(i.filename).suffix.lower() in IMAGE_SUFFIXES
            and not any(p.startswith((".", "__MACOSX")) for p in PurePosixPath(i.filename).parts)
        ]
        if not files:
            raise DataError(
                f"{name} holds no images; expected one sub-folder per class, e.g. 'cat/001.png', 'dog/002.png'"
                f" (image types: {', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        if len(files) > MAX_IMAGES:
            raise DataError(f"{name} holds {len(files)} images; at most {MAX_IMAGES} are accepted (a folder on this "
                            "machine is streamed, with no limit)")
        classes, labels, is_test, given = layout(name, [p.parts for p in files])
        images, shape, values = [], None, 0
        for member in files:
            img = _read_member(zf, str(member), pre)
            values += img.size
            if values > MAX_DATA_VALUES:
                raise DataError(f"{name}: its images hold more than {MAX_DATA_VALUES:,} values in all (at '{member}'); "
                                "use fewer or smaller images, or give a folder, which is streamed")
            if shape is None:
                shape, first = img.shape, str(member)
            elif img.shape != shape:
                raise DataError(
                    f"{name}: image '{member}' is {img.shape[2]}x{img.shape[1]} ({_mode(img.shape)}) but '{first}' is "
                    f"{shape[2]}x{shape[1]} ({_mode(shape)}); all images must have one size and mode (or set a "
                    "preprocessing size to resize and crop them all)"
                )
            images.append(img)
    x, y = np.stack(images), np.asarray(labels, dtype=np.int64)
    tr, te, split = _image_split(name, np.asarray(is_test), given)
    ds = _from_arrays(name, x[tr], y[tr], x[te], y[te])
    return Dataset(ds.name, ds.x_train, ds.y_train, ds.x_test, ds.y_test, classes, split,  # images, as arranged
                   preprocess=pre.token())


def _mode(shape: tuple[int, ...]) -> str:
    return "RGB" if shape[0] == 3 else "gray"


def _read_member(zf: zipfile.ZipFile, member: str, pre: Preprocess) -> np.ndarray:
    try:
        with zf.open(member) as fh:
            return decode(fh, member, pre)
    except RuntimeError as e:  # zipfile: "File ... is encrypted, password required"
        raise DataError(f"cannot read image '{member}' in the zip: {e} (give an unencrypted zip)") from e
    except zipfile.BadZipFile as e:
        raise DataError(f"cannot read image '{member}' in the zip ({e})") from e


def _load_folder(path: Path, pre: Preprocess, spec: str) -> Dataset:
    whole, y, is_test, classes, given = scan_folder(path, pre)
    train, test, split = _image_split(f"folder '{path}'", is_test, given)
    return Dataset(spec, whole.subset(train), y[train], whole.subset(test), y[test], classes, split,
                   preprocess=pre.token())


LOADERS: dict[str, Callable[[str, BinaryIO, Preprocess], Dataset]] = {".npz": _load_npz, ".zip": _load_zip}


def load_data(spec: str | Path) -> Dataset:
    """Load a data set from a spec.

    Args:
        spec: ``demo:mnist5k``, or the path of a ``.npz`` (arrays ``x``, ``y``, optionally ``x_test``,
            ``y_test``), of an image folder (one sub-folder per class, optionally under ``train/`` and ``test/`` or
            ``val/``; streamed from disk) or of a ``.zip`` of one; then optionally ``|`` and the preprocessing's
            token (:meth:`~pruner_core.io.preprocess.Preprocess.token`).

    Returns:
        The data set; without a given test split, a seeded 80/20 split is made.

    Raises:
        SpecError: unknown demo name, file type or preprocessing.  DataError: missing, corrupt or malformed file.

    >>> load_data("demo:mnist5k").summary()["test"]
    1000
    """
    source, pre = split_spec(str(spec))
    spec = str(spec)
    if source.startswith("demo:"):
        key = source.removeprefix("demo:")
        if key not in DEMO_DATA:
            raise SpecError(f"unknown demo data '{key}'; available: {', '.join('demo:' + k for k in DEMO_DATA)}")
        ds = _load_npz(spec, io.BytesIO(DEMO_DATA[key].read_bytes()), pre)
        return Dataset(spec, ds.x_train, ds.y_train, ds.x_test, ds.y_test, ds.classes, "fixed 4,000/1,000 (stratified, seed 0)",
                       ds.arranged, ds.integer, ds.preprocess)
    path = Path(source)
    if path.is_dir():
        return _load_folder(path, pre, spec)
    if path.suffix.lower() not in LOADERS:
        raise SpecError(
            f"cannot load data from '{source}': expected demo:mnist5k, an image folder or a file ending in "
            f"{', '.join(sorted(LOADERS))}"
        )
    if not path.is_file():
        raise DataError(f"data file '{source}' does not exist")
    with path.open("rb") as f:
        return LOADERS[path.suffix.lower()](path.name, f, pre)


def load_data_bytes(filename: str, payload: bytes) -> Dataset:
    """Load an uploaded data file (its name decides the format), exactly as :func:`load_data` would."""
    suffix = PurePosixPath(filename).suffix.lower()
    if suffix not in LOADERS:
        raise SpecError(f"cannot load data from '{filename}': expected a file ending in {', '.join(sorted(LOADERS))}")
    return LOADERS[suffix](filename, io.BytesIO(payload), Preprocess())


class _Labelled(torch.utils.data.Dataset):
    """Samples with their labels, as a ``DataLoader`` takes them."""

    def __init__(self, x: Samples, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i]


def loader(x: Samples, y: torch.Tensor, batch_size: int, sampler) -> torch.utils.data.DataLoader:
    """A ``DataLoader`` over ``(x, y)`` in ``sampler``'s order: workers decode a folder's images ahead of the model
    (pinned memory where a GPU is used); tensors held in memory are sliced in this process."""
    streamed = isinstance(x, ImageFiles)
    return torch.utils.data.DataLoader(
        _Labelled(x, y), batch_size=batch_size, sampler=sampler, num_workers=DATA_WORKERS if streamed else 0,
        pin_memory=streamed and torch.cuda.is_available())


def batches(x: Samples, y: torch.Tensor, batch_size: int, *, shuffle: bool = False, generator=None):
    """Yield (x, y) mini-batches; shuffled with ``generator`` when asked. A folder's images stream from disk.

    Raises:
        DataError: an image of the folder cannot be read or has another size (named).
    """
    order = torch.randperm(len(x), generator=generator) if shuffle else torch.arange(len(x))
    if not isinstance(x, ImageFiles):
        for i in range(0, len(x), batch_size):
            idx = order[i : i + batch_size]
            yield x[idx], y[idx]
        return
    try:
        yield from loader(x, y, batch_size, order.tolist())
    except DataError as e:  # raised in a worker: its message carries the worker's traceback; keep the last line
        raise DataError(str(e).strip().splitlines()[-1].partition("DataError: ")[2] or str(e)) from None


def take(x: Samples, index: slice) -> Samples:
    """``x[index]`` without decoding anything: a tensor's slice, or a folder's files, still unread."""
    return x.subset(index) if isinstance(x, ImageFiles) else x[index]


def sample_digest(x: Samples, y: torch.Tensor, n: int | None = None) -> str:
    """A short hash of the first ``n`` samples (all by default) and their labels: measurements are reused only on
    the same data (a folder's samples by their files and preprocessing, without decoding them)."""
    if n is not None:
        x, y = take(x, slice(n)), y[:n]
    h = hashlib.sha256(str(tuple(x.shape)).encode())
    h.update(x.digest.encode() if isinstance(x, ImageFiles) else x.detach().cpu().contiguous().numpy().tobytes())
    h.update(y.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
