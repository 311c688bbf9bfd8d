"""The recipe's sections (N:M, schedule, fine-tuning, INT8 quantization) and how a bad value becomes one line.

Each section is a pydantic model that refuses unknown keys, wrong types and out-of-range values with a
:class:`RecipeError` naming the key path, the value and what is valid; :class:`~pruner_core.pruning.recipe.Recipe`
holds one of each.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_serializer, model_validator

from pruner_core.config.options import (
    AUGMENTATIONS,
    CALIBRATION_METHODS,
    OPTIMIZERS,
    QUANT_FORMATS,
    QUANTIZE_KINDS,
    SCHEDULES,
    SINGLE_STEP_SCHEDULES,
)
from pruner_core.errors import SpecError
from pruner_core.pruning.granularities import check_nm

CONFIG = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
Fraction = Annotated[float, Field(ge=0, lt=1)]
SOURCE: ContextVar[str] = ContextVar("recipe_source", default="recipe")  # named in messages from __init__


def one_of(registry: dict, what: str) -> Callable[[str], str]:
    """A field validator accepting only the keys of ``registry`` (the message lists them)."""

    def check(value: str) -> str:
        if value not in registry:
            raise ValueError(f"unknown {what}; valid: {', '.join(registry)}")
        return value

    return check


class RecipeError(SpecError):
    """A recipe that cannot be read, or that does not fit the model it is applied to."""


class Section(BaseModel):
    """A section of the recipe; constructing one directly refuses bad values with a :class:`RecipeError` too."""

    _key: ClassVar[str] = ""

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise RecipeError(flatten(e, SOURCE.get(), type(self), prefix=(self._key,))) from None


class NM(Section):
    """N:M sparsity: at most ``n`` non-zero weights in every ``m`` consecutive ones along the input dimension."""

    model_config = CONFIG
    _key = "nm"
    n: Annotated[int, Field(ge=1)] = 2
    m: Annotated[int, Field(ge=2)] = 4

    @model_validator(mode="after")
    def _n_below_m(self) -> NM:
        try:
            check_nm(self.n, self.m)
        except SpecError as e:
            raise ValueError(str(e)) from None
        return self


class Schedule(Section):
    """When to prune: at once, in ``steps`` rounds with fine-tuning between, or gradually (GMP)."""

    model_config = CONFIG
    _key = "schedule"
    kind: Annotated[str, AfterValidator(one_of(SCHEDULES, "schedule"))] = "oneshot"
    steps: Annotated[int, Field(ge=1, le=1000)] = 1

    @model_validator(mode="after")
    def _oneshot_is_one_step(self) -> Schedule:
        if self.kind in SINGLE_STEP_SCHEDULES and self.steps != 1:
            raise ValueError(f"oneshot prunes in 1 step; got steps={self.steps} (use kind: iterative or gmp for more)")
        return self


class Finetune(Section):
    """Fine-tuning after (or, for iterative and gmp, during) pruning; ``epochs`` may be fractional."""

    model_config = CONFIG
    _key = "finetune"
    epochs: Annotated[float, Field(ge=0, le=1000)] = 1
    lr: Annotated[float, Field(gt=0)] = 0.001
    optimizer: Annotated[str, AfterValidator(one_of(OPTIMIZERS, "optimizer"))] = "adamw"
    batch_size: Annotated[int, Field(ge=1, le=65536)] = 64
    checks_per_epoch: Annotated[int, Field(ge=1, le=100)] = 5  # test accuracy this often: a curve, not one point
    distill: bool = False
    temperature: Annotated[float, Field(gt=0)] = 4.0
    alpha: Annotated[float, Field(ge=0, le=1)] = 0.5
    augment: Annotated[str, AfterValidator(one_of(AUGMENTATIONS, "augmentation"))] = "auto"

    @field_serializer("epochs")
    def _epochs_plain(self, epochs: float) -> int | float:
        return int(epochs) if epochs == int(epochs) else epochs  # "epochs: 1", not "epochs: 1.0"


class Quantize(Section):
    """INT8 after pruning, in ONNX Runtime (:mod:`~pruner_core.pipeline.quantize`): the run's ONNX quantized with
    ``kind``, activation ranges calibrated on ``calibration_samples`` training images (static), weights per output
    channel or per tensor, as QDQ pairs or QLinear operators; ``exclude`` names layers kept in FP32."""

    model_config = CONFIG
    _key = "quantize"
    kind: Annotated[str, AfterValidator(one_of(QUANTIZE_KINDS, "quantize kind"))] = "none"
    calibration_samples: Annotated[int, Field(ge=1, le=100_000)] = 256
    per_channel: bool = True
    format: Annotated[str, AfterValidator(one_of(QUANT_FORMATS, "quantize format"))] = "qdq"
    method: Annotated[str, AfterValidator(one_of(CALIBRATION_METHODS, "calibration method"))] = "minmax"
    exclude: list[str] = Field(default_factory=list)

    def summary(self) -> str:
        """``INT8 static (minmax, 256 images)``, ``INT8 dynamic``, or ``""`` for none."""
        if self.kind == "none":
            return ""
        if self.kind == "int8_dynamic":
            return "INT8 dynamic"
        return f"INT8 static ({self.method}, {self.calibration_samples} images)"


def clip(text: str, most: int = 60) -> str:
    return text if len(text) <= most else text[: most - 3] + "..."


def _loc(loc: tuple) -> str:
    parts = [str(p) for p in loc if p != "[key]"]
    return ".".join(parts)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """The keys allowed in the mapping that holds ``loc`` within ``model`` (for 'unknown key' messages)."""
    for part in loc[:-1]:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        ann = field.annotation if field else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return list(model.model_fields)


def flatten(error: ValidationError, source: str, model: type[BaseModel], prefix: tuple = ()) -> str:
    """One line from pydantic's errors of ``model``: ``SOURCE: key.path: what is wrong; got VALUE`` (``prefix``: the
    section's key, when ``model`` is a section)."""
    parts = []
    for err in error.errors():
        loc, kind = tuple(p for p in prefix if p) + tuple(err["loc"]), err["type"]
        path = _loc(loc)
        if kind == "extra_forbidden":
            valid = _fields_at(model, tuple(err["loc"]))
            parts.append(f"unknown key '{path}'" + (f"; valid keys here: {', '.join(valid)}" if valid else ""))
            continue
        msg = err["msg"].removeprefix("Value error, ")
        msg = msg[:1].lower() + msg[1:]
        if kind == "string_type" and isinstance(err["input"], int | float) and loc and loc[0] in ("layers", "exclude"):
            msg += " (layer names are strings: quote a numeric name, e.g. '0')"
        if "[key]" in loc:
            parts.append(f"{_loc(loc[:-2])}: key {_short(err['input'])}: {msg}")
            continue
        if not loc or (kind == "value_error" and isinstance(err["input"], dict)):
            parts.append(f"{path}: {msg}" if path else msg)  # a cross-field rule names its keys and values itself
        else:
            parts.append(f"{path}: {msg}; got {_short(err['input'])}")
    shown = [clip(part, 1000) for part in parts[:5]]
    more = f"; and {len(parts) - 5} more problems" if len(parts) > 5 else ""
    return f"{clip(source, 200)}: " + "; ".join(shown) + more
