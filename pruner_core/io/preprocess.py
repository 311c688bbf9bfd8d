"""Preprocessing declared once with the data: resize, centre-crop, channels, and mean/std normalisation.

A model trained on ImageNet-normalised 224x224 RGB inputs is measured wrongly on [0, 1] pixels at another size; so
the preprocessing travels with the data spec, as ``SOURCE|TOKEN`` (``photos/|imagenet,size=224,resize=256``), and
every run that records its data spec records it too. Pillow + NumPy, in torchvision's order: convert the channels,
resize the shorter side (bilinear), crop the centre, scale to [0, 1], subtract the mean and divide by the std.
Arrays (``.npz``, the demo) are already decoded: they take channels and normalisation, not resize or crop.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from pruner_core.config.options import IMAGE_CHANNELS
from pruner_core.errors import DataError, SpecError

PRESET_VALUES: dict[str, tuple[tuple[float, ...], tuple[float, ...], str]] = {  # mean, std, channels
    "unit": ((0.0,), (1.0,), "auto"),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "rgb"),
    "inception": ((0.5,), (0.5,), "auto"),
    "mnist": ((0.1307,), (0.3081,), "grey"),
}
SEPARATOR = "|"  # between a data source and its preprocessing in a data spec
MAX_SIDE = 4096
KEYS = ("preset", "size", "resize", "channels", "mean", "std")
GREY_MODES = ("1", "L", "P", "I", "I;16", "F", "LA")  # decoded as one channel when the channels are "auto"


@dataclass(frozen=True)
class Preprocess:
    """How raw pixels become a model's input. ``size`` is the centre crop's side (the model's input side);
    ``resize`` the shorter side before the crop (default: ``size``; ImageNet's evaluation convention is resize 256,
    size 224). ``mean``/``std`` override the preset's (one value, or one per channel)."""

    preset: str = "unit"
    size: int | None = None
    resize: int | None = None
    channels: str = "auto"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self):
        if self.preset not in PRESET_VALUES:
            raise SpecError(f"unknown preprocessing preset '{self.preset}'; valid: {', '.join(PRESET_VALUES)}")
        if self.channels not in IMAGE_CHANNELS:
            raise SpecError(f"unknown channels '{self.channels}'; valid: {', '.join(IMAGE_CHANNELS)}")
        for key in ("size", "resize"):
            side = getattr(self, key)
            if side is not None and (isinstance(side, bool) or not isinstance(side, int) or not 1 <= side <= MAX_SIDE):
                raise SpecError(f"preprocessing {key} {side!r} is not a side in pixels; give a whole number from 1 to "
                                f"{MAX_SIDE}")
        if self.size and self.resize and self.resize < self.size:
            raise SpecError(f"preprocessing resize {self.resize} is smaller than size {self.size}: the centre crop "
                            "would not fit; resize to at least the size")
        mean, std = self.normalisation
        if len(mean) != len(std) and 1 not in (len(mean), len(std)):
            raise SpecError(f"preprocessing mean {list(mean)} and std {list(std)} differ in length; give one value "
                            "or one per channel for each")
        if any(not np.isfinite(v) for v in (*mean, *std)) or any(s <= 0 for s in std):
            raise SpecError(f"preprocessing std {list(std)} (mean {list(mean)}) must be finite, and every std above 0")

    @property
    def normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        mean, std, _ = PRESET_VALUES[self.preset]
        return tuple(self.mean or mean), tuple(self.std or std)

    @property
    def channel_mode(self) -> str:
        return self.channels if self.channels != "auto" else PRESET_VALUES[self.preset][2]

    @property
    def resize_to(self) -> int | None:
        return self.resize or self.size

    @property
    def identity(self) -> bool:
        """Pixels / 255 and nothing else: what every loader did before preprocessing existed."""
        return self.token() == ""

    def token(self) -> str:
        """The canonical text after ``|`` in a data spec ('' for the identity): the preset, then what differs."""
        parts = [] if self.preset == "unit" else [self.preset]
        parts += [f"{k}={getattr(self, k)}" for k in ("size", "resize") if getattr(self, k)]
        if self.channels != "auto":
            parts.append(f"channels={self.channels}")
        parts += [f"{k}={'/'.join(repr(float(v)) for v in getattr(self, k))}" for k in ("mean", "std") if getattr(self, k)]
        return ",".join(parts)

    @classmethod
    def from_token(cls, token: str) -> Preprocess:
        """The inverse of :meth:`token`: ``imagenet,size=224`` (a preset first, then ``key=value`` items)."""
        fields: dict = {}
        for i, item in enumerate(p.strip() for p in token.split(",") if p.strip()):
            key, eq, value = item.partition("=")
            if not eq and i == 0:
                fields["preset"] = key
                continue
            fields[key.strip()] = value.strip() if eq else None
        return cls.from_mapping(fields, f"preprocessing '{token}'")

    @classmethod
    def from_mapping(cls, fields: dict, where: str) -> Preprocess:
        """Fields from YAML or a token, each checked: a bad key or value names the valid ones."""
        unknown = sorted(set(fields) - set(KEYS))
        if unknown:
            raise SpecError(f"{where}: unknown key(s) {unknown}; valid: {', '.join(KEYS)}")
        out: dict = {}
        for key, value in fields.items():
            if value is None:
                raise SpecError(f"{where}: '{key}' has no value")
            if key in ("size", "resize"):
                out[key] = _side(value, key, where)
            elif key in ("mean", "std"):
                out[key] = _floats(value, key, where)
            else:
                out[key] = str(value)
        return cls(**out)

    @classmethod
    def parse(cls, value: str | None = None, size: int | None = None) -> Preprocess:
        """What the CLI's ``--preprocess`` (a preset, a token, or a YAML file of the keys) and ``--size`` name."""
        text = (value or "").strip()
        if text.endswith((".yaml", ".yml")):
            pre = cls.from_yaml(Path(text))
        else:
            pre = cls.from_token(text) if text else cls()
        return replace(pre, size=size) if size is not None else pre

    @classmethod
    def from_yaml(cls, path: Path) -> Preprocess:
        import yaml

        if not path.is_file():
            raise SpecError(f"preprocessing file '{path}' does not exist")
        try:
            fields = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise SpecError(f"preprocessing file '{path}' is not readable YAML ({e})") from e
        if not isinstance(fields, dict):
            raise SpecError(f"preprocessing file '{path}' must be a mapping of {', '.join(KEYS)}")
        return cls.from_mapping(fields, f"preprocessing file '{path}'")

    def to_dict(self) -> dict:
        """Everything applied, resolved (the preset's mean and std written out): what a run records."""
        mean, std = self.normalisation
        return asdict(self) | {"resize": self.resize_to, "channels": self.channel_mode, "mean": list(mean),
                               "std": list(std)}

    def describe(self) -> str:
        """One line for people: 'imagenet: RGB, resize 256, centre crop 224, mean (…), std (…)'."""
        mean, std = self.normalisation
        steps = [] if self.channel_mode == "auto" else [self.channel_mode.replace("rgb", "RGB")]
        if self.resize_to:
            steps.append(f"shorter side resized to {self.resize_to}")
        if self.size:
            steps.append(f"centre crop {self.size}x{self.size}")
        steps.append("pixels / 255" + ("" if (mean, std) == ((0.0,), (1.0,)) else
                                       f", mean {_show(mean)}, std {_show(std)}"))
        return f"{self.preset}: " + ", ".join(steps)

    def image(self, im, name: str) -> np.ndarray:
        """A decoded Pillow image as a float32 ``[C, H, W]`` model input."""
        from PIL import Image

        mode = self.channel_mode
        if mode == "auto":
            mode = "grey" if im.mode in GREY_MODES else "rgb"
        im = im.convert("L" if mode == "grey" else "RGB")
        if self.resize_to:
            w, h = im.size
            short, long = min(w, h), max(w, h)
            long = int(self.resize_to * long / short)
            target = (self.resize_to, long) if w <= h else (long, self.resize_to)
            if target != im.size:
                im = im.resize(target, Image.BILINEAR)
        if self.size:  # the shorter side is resize_to >= size (checked above): the crop fits
            w, h = im.size
            left, top = int(round((w - self.size) / 2)), int(round((h - self.size) / 2))
            im = im.crop((left, top, left + self.size, top + self.size))
        x = np.asarray(im, dtype=np.float32) / 255.0
        x = x[None] if x.ndim == 2 else x.transpose(2, 0, 1)
        return self._normalise(np.ascontiguousarray(x), name)

    def tensor(self, x: torch.Tensor, what: str) -> torch.Tensor:
        """Decoded images ``[N, C, H, W]`` in [0, 1] (an array file's) with the channels and normalisation applied."""
        if self.identity:
            return x
        if (self.size or self.resize) and not self._keeps(x):
            raise DataError(f"{what} holds arrays, which are taken at their size ({tuple(x.shape[1:])}): resize and "
                            "crop apply to image files (a folder or a .zip of images); set no size (or "
                            f"{x.shape[-1]} for these), or resize the arrays before saving")
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise DataError(f"{what} has samples of shape {tuple(x.shape[1:])}; preprocessing applies to images "
                            "[C, H, W] with 1 or 3 channels (use the preset unit for other data)")
        if self.channel_mode == "grey" and x.shape[1] == 3:
            x = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        elif self.channel_mode == "rgb" and x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        mean, std = (torch.tensor(v, dtype=x.dtype) for v in self.normalisation)
        if max(len(mean), len(std)) not in (1, x.shape[1]):
            raise DataError(f"{what}: {x.shape[1]} channel(s), but the preprocessing's mean/std have "
                            f"{max(len(mean), len(std))} values; give one value or one per channel")
        return ((x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)).contiguous()

    def _keeps(self, x: torch.Tensor) -> bool:
        """The resize and crop leave images ``x`` as they are (square, at the size asked for)."""
        h, w = x.shape[-2:]
        return x.dim() == 4 and h == w and self.resize_to in (None, h) and self.size in (None, h)

    def _normalise(self, x: np.ndarray, name: str) -> np.ndarray:
        mean, std = (np.asarray(v, dtype=np.float32) for v in self.normalisation)
        if max(len(mean), len(std)) not in (1, len(x)):
            raise DataError(f"image '{name}' has {len(x)} channel(s), but the preprocessing's mean/std have "
                            f"{max(len(mean), len(std))} values; set channels to rgb or grey, or give one value")
        return (x - mean[:, None, None]) / std[:, None, None]


def split_spec(spec: str) -> tuple[str, Preprocess]:
    """``'photos/|imagenet,size=224'`` -> ``('photos/', Preprocess('imagenet', 224))``; no ``|``: the identity."""
    source, sep, token = str(spec).partition(SEPARATOR)
    return source, Preprocess.from_token(token) if sep else Preprocess()


def join_spec(source: str, pre: Preprocess) -> str:
    """The data spec that loads ``source`` with ``pre`` (the bare source for the identity)."""
    source = split_spec(source)[0]
    return f"{source}{SEPARATOR}{pre.token()}" if not pre.identity else source


def respec(spec: str, preprocess: str | None = None, size: int | None = None) -> str:
    """``spec`` with its preprocessing replaced by ``preprocess`` (see :meth:`Preprocess.parse`) and its size by
    ``size``, where given: the CLI's ``--data``, ``--preprocess`` and ``--size`` as one data spec, in the canonical
    form (:meth:`Preprocess.token`) that a run records and the pages write, so the two compare equal."""
    pre = Preprocess.parse(preprocess) if preprocess is not None else split_spec(spec)[1]
    return join_spec(spec, replace(pre, size=size) if size is not None else pre)  # canonical, as a page writes it


def _side(value, key: str, where: str) -> int:
    try:
        side = int(value)
    except (TypeError, ValueError):
        raise SpecError(f"{where}: {key} '{value}' is not a whole number of pixels") from None
    if str(value).strip() not in (str(side), f"{side}.0"):
        raise SpecError(f"{where}: {key} '{value}' is not a whole number of pixels")
    return side


def _floats(value, key: str, where: str) -> tuple[float, ...]:
    items = value if isinstance(value, list | tuple) else str(value).replace("/", " ").replace(",", " ").split()
    try:
        values = tuple(float(v) for v in items)
    except (TypeError, ValueError):
        raise SpecError(f"{where}: {key} '{value}' is not one number or one per channel (e.g. 0.5 or "
                        "0.485/0.456/0.406)") from None
    if not values:
        raise SpecError(f"{where}: {key} is empty; give one number or one per channel")
    return values


def _show(values: tuple[float, ...]) -> str:
    return f"{values[0]:g}" if len(values) == 1 else "(" + ", ".join(f"{v:g}" for v in values) + ")"

