"""Data sets: the embedded demo (MNIST-5k), a user ``.npz``, or a zip of an image folder.

A spec is ``demo:mnist5k`` or a path. Every loader returns a :class:`Dataset` of float
tensors with integer labels, split into train and test: images ``[N, C, H, W]`` (a file's
``[N, H, W]`` and ``[N, H, W, C]`` rearranged so), features ``[N, D]``. Whether the model takes
the samples so, or as the file holds them (a ``[N, T, F]`` sequence, integer token ids), is the
model's to decide: :func:`pruner_core.io.fit.fit_data`. Uploads arrive as bytes and go through the same code.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import numpy as np
import torch

from pruner_core.errors import DataError, SpecError

ASSETS = Path(__file__).resolve().parents[2] / "assets"
DEMO_DATA = {"mnist5k": ASSETS / "mnist5k.npz"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
SPLIT_SEED = 0
TEST_FRACTION = 0.2
MAX_CLASSES = 100_000  # a label of 2**62 once asked for that many class names
MAX_IMAGE_PIXELS = 4096 * 4096  # per image, checked from its header before decoding
MAX_DATA_VALUES = 2**31  # pixel values of a whole image-folder data set (8 GB as float32)
MAX_IMAGES = 200_000


@dataclass(frozen=True)
class Dataset:
    """A labelled data set split into train (fine-tuning, calibration) and test (evaluation)."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str] = field(default_factory=list)
    split: str = ""
    arranged: str = ""  # how the file's samples were rearranged: "" (as held), "channel" or "channels_last"
    integer: bool = False  # the file held integers (not uint8 pixels): they may be token ids

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
                       **{"arranged": self.arranged, "integer": self.integer, **changes})

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
        split = f"seeded {1 - TEST_FRACTION:.0%}/{TEST_FRACTION:.0%} split (seed {SPLIT_SEED})"
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


def _load_npz(name: str, f: BinaryIO) -> Dataset:
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
    return _from_arrays(name, arrays["x"], arrays["y"], arrays.get("x_test"), arrays.get("y_test"))


def _read_image(zf: zipfile.ZipFile, member: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with zf.open(member) as fh, Image.open(fh) as im:
            width, height = im.size  # read from the header: nothing is decoded yet
            if width * height > MAX_IMAGE_PIXELS:
                raise DataError(f"image '{member}' is {width}x{height} pixels; at most {MAX_IMAGE_PIXELS:,} pixels per "
                                "image are accepted (resize the images first)")
            im.load()
            return np.asarray(im.convert("L") if im.mode in ("1", "L", "P", "I", "I;16", "F", "LA") else im.convert("RGB"))
    except Image.DecompressionBombError as e:
        raise DataError(f"image '{member}' is too large to decode safely ({e})") from e
    except RuntimeError as e:  # zipfile: "File ... is encrypted, password required"
        raise DataError(f"cannot read image '{member}' in the zip: {e} (give an unencrypted zip)") from e
    except (UnidentifiedImageError, OSError, zipfile.BadZipFile) as e:
        raise DataError(f"cannot read image '{member}' in the zip ({e})") from e


def _load_zip(name: str, f: BinaryIO) -> Dataset:
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
            raise DataError(f"{name} holds {len(files)} images; at most {MAX_IMAGES} are accepted")
        # Drop a single wrapping folder, then look for train/ and test/ splits.
        parts = [p.parts for p in files]
        while all(len(p) > 2 for p in parts) and len({p[0] for p in parts}) == 1:
            parts = [p[1:] for p in parts]
        if any(len(p) < 2 for p in parts):
            loose = next("/".join(p) for p in parts if len(p) < 2)
            raise DataError(f"{name}: image '{loose}' is not inside a class folder; put each image in a folder named after its class")
        top = {p[0] for p in parts}
        has_split = top <= {"train", "test"} and top == {"train", "test"} and all(len(p) >= 3 for p in parts)
        classes = sorted({p[1] if has_split else p[-2] for p in parts})
        index = {c: i for i, c in enumerate(classes)}
        images, labels, is_test = [], [], []
        shape, values = None, 0
        for member, p in zip(files, parts, strict=True):
            img = _read_image(zf, str(member))
            values += img.size
            if values > MAX_DATA_VALUES:
                raise DataError(f"{name}: its images hold more than {MAX_DATA_VALUES:,} values in all (at '{member}'); "
                                "use fewer or smaller images")
            if shape is None:
                shape, first = img.shape, str(member)
            elif img.shape != shape:
                raise DataError(
                    f"{name}: image '{member}' is {img.shape[1]}x{img.shape[0]} ({'RGB' if img.ndim == 3 else 'gray'})"
                    f" but '{first}' is {shape[1]}x{shape[0]}; all images must have one size and mode"
                )
            images.append(img)
            labels.append(index[p[1] if has_split else p[-2]])
            is_test.append(has_split and p[0] == "test")
    x = np.stack(images)
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
    y = np.asarray(labels, dtype=np.int64)
    t = np.asarray(is_test)
    ds = _from_arrays(name, x[~t], y[~t], x[t] if has_split else None, y[t] if has_split else None)
    return Dataset(ds.name, ds.x_train, ds.y_train, ds.x_test, ds.y_test, classes, ds.split)  # images, as arranged


LOADERS: dict[str, Callable[[str, BinaryIO], Dataset]] = {".npz": _load_npz, ".zip": _load_zip}


def load_data(spec: str | Path) -> Dataset:
    """Load a data set from a spec.

    Args:
        spec: ``demo:mnist5k``, or the path of a ``.npz`` (arrays ``x``, ``y``, optionally ``x_test``,
            ``y_test``) or of a ``.zip`` of an image folder (one sub-folder per class, optionally under
            ``train/`` and ``test/``).

    Returns:
        The data set; without a given test split, a seeded 80/20 split is made.

    Raises:
        SpecError: unknown demo name or file type.  DataError: missing, corrupt or malformed file.

    >>> load_data("demo:mnist5k").summary()["test"]
    1000
    """
    spec = str(spec)
    if spec.startswith("demo:"):
        key = spec.removeprefix("demo:")
        if key not in DEMO_DATA:
            raise SpecError(f"unknown demo data '{key}'; available: {', '.join('demo:' + k for k in DEMO_DATA)}")
        ds = _load_npz(spec, io.BytesIO(DEMO_DATA[key].read_bytes()))
        return Dataset(spec, ds.x_train, ds.y_train, ds.x_test, ds.y_test, ds.classes, "fixed 4,000/1,000 (stratified, seed 0)",
                       ds.arranged, ds.integer)
    path = Path(spec)
    if path.suffix.lower() not in LOADERS:
        raise SpecError(
            f"cannot load data from '{spec}': expected demo:mnist5k or a file ending in {', '.join(sorted(LOADERS))}"
        )
    if not path.is_file():
        raise DataError(f"data file '{spec}' does not exist")
    with path.open("rb") as f:
        return LOADERS[path.suffix.lower()](path.name, f)


def load_data_bytes(filename: str, payload: bytes) -> Dataset:
    """Load an uploaded data file (its name decides the format), exactly as :func:`load_data` would."""
    suffix = PurePosixPath(filename).suffix.lower()
    if suffix not in LOADERS:
        raise SpecError(f"cannot load data from '{filename}': expected a file ending in {', '.join(sorted(LOADERS))}")
    return LOADERS[suffix](filename, io.BytesIO(payload))


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, *, shuffle: bool = False, generator=None):
    """Yield (x, y) mini-batches; shuffled with ``generator`` when asked."""
    order = torch.randperm(len(x), generator=generator) if shuffle else torch.arange(len(x))
    for i in range(0, len(x), batch_size):
        idx = order[i : i + batch_size]
        yield x[idx], y[idx]
