"""Image folders: one sub-folder per class, optionally under ``train/`` and ``test/`` (or ``train/`` and ``val/``).

A directory is read lazily: :class:`ImageFiles` holds the file names and decodes an image only when a sample is
asked for, so a ``DataLoader`` with workers streams it and memory stays flat as the folder grows. A zip of the same
layout is decoded whole (its size is bounded by the upload limit). Both go through :func:`layout` and :func:`decode`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from pruner_core.errors import DataError
from pruner_core.io.preprocess import Preprocess

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
MAX_IMAGE_PIXELS = 4096 * 4096  # per image, checked from its header before decoding
SPLITS = ({"train", "test"}, {"train", "val"})


def layout(name: str, parts: list[tuple[str, ...]]) -> tuple[list[str], list[int], list[bool], str]:
    """Classes, each file's label and whether it is a test file, from the files' relative paths.

    A single wrapping folder is dropped; ``train/`` + ``test/`` (or ``val/``) at the top is a given split.

    Returns:
        (classes, labels, is_test, split), ``split`` naming the given split's folders or '' for none.
    """
    while all(len(p) > 2 for p in parts) and len({p[0] for p in parts}) == 1:
        parts = [p[1:] for p in parts]
    if any(len(p) < 2 for p in parts):
        loose = next("/".join(p) for p in parts if len(p) < 2)
        raise DataError(f"{name}: image '{loose}' is not inside a class folder; put each image in a folder named "
                        "after its class")
    top = {p[0] for p in parts}
    if {"train", "test", "val"} <= top and all(len(p) >= 3 for p in parts):
        raise DataError(f"{name} has train/, val/ and test/ folders; give train/ with one of test/ or val/ (the split "
                        "measured on), not both")
    given = next((s for s in SPLITS if top == s), None) if all(len(p) >= 3 for p in parts) else None
    classes = sorted({p[1] if given else p[-2] for p in parts})
    index = {c: i for i, c in enumerate(classes)}
    labels = [index[p[1] if given else p[-2]] for p in parts]
    is_test = [bool(given) and p[0] != "train" for p in parts]
    return classes, labels, is_test, "/".join(sorted(given, key=lambda s: s != "train")) if given else ""


def decode(fh, name: str, pre: Preprocess) -> np.ndarray:
    """Decode one image file (an open binary file) as the preprocessing says: float32 ``[C, H, W]``.

    Raises:
        DataError: not an image, too many pixels, or smaller than the crop; the message names the file.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(fh) as im:
            width, height = im.size  # read from the header: nothing is decoded yet
            if width * height > MAX_IMAGE_PIXELS:
                raise DataError(f"image '{name}' is {width}x{height} pixels; at most {MAX_IMAGE_PIXELS:,} pixels per "
                                "image are accepted (resize the images first)")
            im.load()
            return pre.image(im, name)
    except Image.DecompressionBombError as e:
        raise DataError(f"image '{name}' is too large to decode safely ({e})") from e
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DataError(f"cannot read image '{name}' ({e})") from e


class ImageFiles(torch.utils.data.Dataset):
    """Image files of one split, decoded on demand: ``files[i]`` -> a ``[C, H, W]`` float tensor.

    It answers the questions asked of a samples tensor (``len``, ``shape``, ``dtype``); an integer index decodes one
    image, a slice or index list decodes those now and stacks them (for the bounded takes: calibration, probes,
    sensitivity samples). Whole passes go through :func:`pruner_core.io.data.batches`, which streams with workers.
    """

    dtype = torch.float32

    def __init__(self, root: str, files: np.ndarray, pre: Preprocess, sample_shape: tuple[int, ...], digest: str):
        self.root, self.files, self.pre, self.sample_shape, self.digest = root, files, pre, sample_shape, digest

    def __len__(self) -> int:
        return len(self.files)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), *self.sample_shape))

    def is_floating_point(self) -> bool:
        return True

    def subset(self, index) -> ImageFiles:
        """These files at ``index`` (a slice or indices), still unread."""
        files = self.files[index]
        return ImageFiles(self.root, files, self.pre, self.sample_shape, _digest(self.digest, files))

    def __getitem__(self, index) -> torch.Tensor:
        if isinstance(index, int | np.integer) or (isinstance(index, torch.Tensor) and index.dim() == 0):
            return self._read(int(index))
        picked = range(len(self))[index] if isinstance(index, slice) else [int(i) for i in index]
        if not len(picked):
            return torch.empty((0, *self.sample_shape))
        return torch.stack([self._read(i) for i in picked])

    def _read(self, i: int) -> torch.Tensor:
        name = str(self.files[i])
        x = read_file(Path(self.root) / name, name, self.pre)
        if x.shape != self.sample_shape:
            raise DataError(f"image '{name}' gives a sample of shape {x.shape}, the folder's first {self.sample_shape};"
                            " every image must have one size and mode (set a size to resize and crop them all)")
        return torch.from_numpy(x)


def read_file(path: Path, name: str, pre: Preprocess) -> np.ndarray:
    """:func:`decode` of the image file at ``path`` (named ``name`` in messages); a file that cannot be opened (gone,
    unreadable) is a DataError naming it too."""
    try:
        with open(path, "rb") as fh:
            return decode(fh, name, pre)
    except OSError as e:  # decode names its own errors: these are open's
        raise DataError(f"cannot read image '{name}' ({e.strerror or e})") from e


def list_images(root: Path) -> list[str]:
    """Image files under ``root`` as sorted relative POSIX paths, hidden files and ``__MACOSX`` left out."""
    found = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__MACOSX")))
        rel = Path(folder).relative_to(root)
        found += [(rel / n).as_posix() for n in sorted(names)
                  if not n.startswith(".") and Path(n).suffix.lower() in IMAGE_SUFFIXES]
    return found


def folder_stamp(root: str | Path) -> str:
    """A cheap stamp of a folder's contents (the modification times of it, its sub-folders and the class folders of
    train/, test/, val/): it changes when images are added or removed, so a page reloads the folder (an image edited
    in place is not seen)."""
    h = hashlib.sha256()
    top = sorted(e.path for e in os.scandir(root) if e.is_dir())
    below = sorted(e.path for t in top if Path(t).name in ("train", "test", "val") for e in os.scandir(t) if e.is_dir())
    for folder in [str(root), *top, *below]:  # class folders' files are not listed: a stat each
        h.update(f"{folder}:{os.stat(folder).st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def scan_folder(path: Path, pre: Preprocess) -> tuple[ImageFiles, torch.Tensor, np.ndarray, list[str], str]:
    """A directory image folder, unread: every image as :class:`ImageFiles`, its labels, which are test files, the
    classes and the given split ('' for none; :func:`pruner_core.io.data.load_data` splits it then).

    Raises:
        DataError: no images, an image outside a class folder, or a first image that cannot be read.
    """
    files = list_images(path)
    if not files:
        raise DataError(f"folder '{path}' holds no images; expected one sub-folder per class, e.g. 'cat/001.png', "
                        f"'dog/002.png' (image types: {', '.join(sorted(IMAGE_SUFFIXES))})")
    classes, labels, is_test, given = layout(str(path), [tuple(f.split("/")) for f in files])
    shape = read_file(path / files[0], files[0], pre).shape
    names = np.array(files)
    whole = ImageFiles(str(path), names, pre, shape, _digest(str(path), names, pre.token(), folder_stamp(path)))
    return whole, torch.tensor(labels, dtype=torch.int64), np.array(is_test), classes, given


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(("\n".join(map(str, part)) if isinstance(part, np.ndarray) else str(part)).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]
