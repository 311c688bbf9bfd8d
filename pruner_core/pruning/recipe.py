"""The declarative pruning recipe: a pydantic model that is read from and written to YAML.

A recipe says *what* to prune (granularity x criterion x scope, how much, which layers), *how often*
(the schedule) and how to recover (fine-tuning). It is model-independent; :meth:`Recipe.target`
resolves it against one described model into a :class:`~pruner_core.pruning.target.Target`.

.. code-block:: yaml

    granularity: unstructured   # a key of pruning.granularities.GRANULARITIES
    criterion: l1               # a key of pruning.criteria.CRITERIA (the pair must be valid)
    scope: layerwise            # layerwise | global
    sparsity: 0.5               # fraction removed: of weights, or of output channels for `channel`
    layers: {conv1: 0.3}        # per-layer overrides by module name
    exclude: [fc2]              # null = the layers whose outputs are the model's outputs
    nm: {n: 2, m: 4}            # N:M: keep n weights in every m along the input dimension
    round_to: null              # channel only: keep a multiple of this many channels
    schedule: {kind: oneshot, steps: 1}
    finetune: {epochs: 1, lr: 0.001, optimizer: adamw, batch_size: 64, distill: false, temperature: 4.0, alpha: 0.5,
               augment: auto}          # auto: the MNIST preset on the demo data, none on yours (none | mnist)
    quantize: {kind: none, calibration_samples: 256, per_channel: true, format: qdq, method: minmax, exclude: []}
                                # int8_static | int8_dynamic: the run's ONNX in INT8 too (pipeline.quantize)
    seed: 0

Every unknown key, wrong type, out-of-range value or impossible combination raises
:class:`RecipeError` with one line naming the source, the key path, the bad value and the valid
ones. YAML is read with ``yaml.safe_load`` only; nothing from a recipe is ever evaluated.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, BaseModel, Field, ValidationError, model_validator

from pruner_core.config.options import SCOPES
from pruner_core.config.yaml_text import UniqueKeyLoader, yaml_shape_problem
from pruner_core.errors import SpecError
from pruner_core.pruning.criteria import CRITERIA, check_pair
from pruner_core.pruning.granularities import GRANULARITIES
from pruner_core.pruning.recipe_sections import (
    CONFIG,
    NM,
    SOURCE,
    Finetune,
    Fraction,
    Quantize,
    RecipeError,
    Schedule,
    clip,
    flatten,
    one_of,
)
from pruner_core.pruning.target import Target

__all__ = ["NM", "Finetune", "NothingToPrune", "Quantize", "Recipe", "RecipeError", "Schedule"]


class NothingToPrune(RecipeError):
    """A recipe that, resolved against a model, prunes no layer (every one excluded, at ratio 0 or not applicable)."""


class Recipe(BaseModel):
    """One pruning recipe; construct it with keywords, :meth:`from_yaml`, :meth:`load` or :meth:`from_dict`.

    Constructing it directly (``Recipe(sparsity=2)``) raises :class:`RecipeError` too.

    >>> r = Recipe.from_yaml("granularity: channel\\nsparsity: 0.25\\nround_to: 8")
    >>> r.summary()
    'channel l1 layerwise 25% of channels (round to 8), oneshot, 1 epoch fine-tune'
    >>> Recipe.from_yaml(r.to_yaml()) == r
    True
    """

    model_config = CONFIG
    granularity: Annotated[str, AfterValidator(one_of(GRANULARITIES, "granularity"))] = "unstructured"
    criterion: Annotated[str, AfterValidator(one_of(CRITERIA, "criterion"))] = "l1"
    scope: Annotated[str, AfterValidator(one_of(SCOPES, "scope"))] = "layerwise"
    sparsity: Fraction = 0.5
    layers: dict[str, Fraction] = Field(default_factory=dict)
    exclude: list[str] | None = None
    nm: NM = Field(default_factory=NM)
    round_to: Annotated[int, Field(ge=1, le=65536)] | None = None
    schedule: Schedule = Field(default_factory=Schedule)
    finetune: Finetune = Field(default_factory=Finetune)
    quantize: Quantize = Field(default_factory=Quantize)
    seed: Annotated[int, Field(ge=0, lt=2**63)] = 0

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise RecipeError(flatten(e, SOURCE.get(), Recipe)) from None

    @model_validator(mode="after")
    def _consistent(self) -> Recipe:
        try:
            check_pair(self.granularity, self.criterion)
        except SpecError as e:
            raise ValueError(f"granularity/criterion: {e}") from None
        if self.round_to is not None and self.granularity != "channel":
            raise ValueError(
                f"round_to: applies only to granularity channel; got round_to={self.round_to} with granularity"
                f" {self.granularity} (set it to null)"
            )
        if self.schedule.kind != "oneshot" and self.finetune.epochs == 0:
            raise ValueError(
                f"schedule.kind: {self.schedule.kind} fine-tunes between pruning steps, so it needs finetune.epochs"
                " > 0; got 0 (use kind: oneshot, or give epochs)"
            )
        return self

    # --- reading and writing -----------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Any, source: str = "recipe") -> Recipe:
        """Validate a plain mapping (e.g. from ``yaml.safe_load`` or the UI's widgets).

        Raises:
            RecipeError: one line naming ``source``, each bad key path, its value and the valid ones.
        """
        if not isinstance(data, dict):
            kind = "empty" if data is None else f"a {type(data).__name__}"
            raise RecipeError(f"{source}: a recipe is a mapping of keys ({', '.join(cls.model_fields)}); got {kind}")
        token = SOURCE.set(source)
        try:
            return cls.model_validate(data)  # pydantic runs our __init__, which flattens the errors
        except ValidationError as e:
            raise RecipeError(flatten(e, source, Recipe)) from None
        finally:
            SOURCE.reset(token)

    @classmethod
    def from_yaml(cls, text: str, source: str = "recipe") -> Recipe:
        """Parse a YAML recipe (``yaml.safe_load``; duplicate keys are refused).

        Raises:
            RecipeError: a YAML syntax error (with its line), not a mapping, or an invalid recipe.
        """
        problem = yaml_shape_problem(text)
        if problem:
            raise RecipeError(f"{source}: {problem}")
        try:
            data = yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader subclass: no object construction
        except yaml.YAMLError as e:
            where = getattr(e, "problem_mark", None)
            line = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise RecipeError(f"{source}: not valid YAML{line}: {problem}") from None
        return cls.from_dict(data, source)

    @classmethod
    def load(cls, path: str | Path) -> Recipe:
        """Read a recipe file.

        Raises:
            RecipeError: the file is missing or unreadable, or its recipe is invalid.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise RecipeError(f"recipe file '{path}' cannot be read ({type(e).__name__}: {e})") from None
        return cls.from_yaml(text, source=str(path))

    def to_dict(self) -> dict:
        """Plain data in the documented key order (``from_dict(r.to_dict()) == r``)."""
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        """Human-readable YAML, one top-level key per line, that round-trips: ``from_yaml(r.to_yaml()) == r``."""
        lines = ["# Pruning Explorer recipe (pruner prune --recipe FILE)"]
        for key, value in self.to_dict().items():
            if isinstance(value, dict | list):  # small collections read best on one line: nm: {n: 2, m: 4}
                flow = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000).strip()
                lines.append(f"{key}: {flow}")
            else:
                lines.append(yaml.safe_dump({key: value}, default_flow_style=False, sort_keys=False).rstrip())
        return "\n".join(lines) + "\n"

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_yaml` to ``path`` atomically (a temp file beside it, then ``os.replace``)."""
        path = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(self.to_yaml())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def replace(self, **changes: Any) -> Recipe:
        """A validated copy with ``changes`` (top-level keys); raises :class:`RecipeError` like construction."""
        return type(self).from_dict({**self.to_dict(), **changes})

    # --- for people ----------------------------------------------------------------------------------

    def summary(self) -> str:
        """One line for lists and logs, e.g. ``unstructured l1 layerwise 50%, oneshot, 1 epoch fine-tune``."""
        if self.granularity == "nm":
            what = f"nm {self.nm.n}:{self.nm.m} {self.criterion} {self.scope}"
        else:
            of = " of channels" if self.granularity == "channel" else ""
            what = f"{self.granularity} {self.criterion} {self.scope} {_percent(self.sparsity)}{of}"
        if self.round_to:
            what += f" (round to {self.round_to})"
        if self.layers:
            what += f" (+{len(self.layers)} layer override{'s' if len(self.layers) > 1 else ''})"
        if self.schedule.kind == "oneshot":
            when = "oneshot"
        else:
            unit = "rounds" if self.schedule.kind == "iterative" else "steps"
            when = f"{self.schedule.kind} {self.schedule.steps} {unit}"
        ft = self.finetune
        if ft.epochs == 0:
            tune = "no fine-tune"
        else:
            tune = f"{ft.epochs:g} epoch{'' if ft.epochs == 1 else 's'} fine-tune" + (" + distill" if ft.distill else "")
        quant = self.quantize.summary()
        return f"{what}, {when}, {tune}" + (f", then {quant}" if quant else "")

    # --- resolving against a model -------------------------------------------------------------------

    def target(self, layers: list, *, require: bool = False) -> Target:
        """Resolve the recipe against a described model into a :class:`~pruner_core.pruning.target.Target`.

        Args:
            layers: :class:`~pruner_core.pruning.describe.LayerInfo` of every prunable layer
                (:func:`~pruner_core.pruning.describe.describe_model`).
            require: refuse a recipe that would prune no layer (a run), naming each layer and why it is left out.

        Returns:
            A Target whose ``ratios`` hold every layer to prune: its ``layers`` override, else ``sparsity``.
            Excluded layers (``exclude``, or by default the layers whose outputs are the model's outputs),
            layers with ratio 0 and layers the granularity does not apply to are left out. For ``nm`` each
            ratio is the fraction N:M removes, ``1 - n/m``.

        Raises:
            RecipeError: a name in ``layers`` or ``exclude`` that is not a prunable layer (the valid names
                are listed), or a ``layers`` override for a layer that is excluded or that the granularity
                does not apply to (naming the layer and why); with ``require``, a recipe that prunes no layer.
        """
        by_name = {info.name: info for info in layers}
        for key, names in (("layers", list(self.layers)), ("exclude", self.exclude or [])):
            unknown = [n for n in names if n not in by_name]
            if unknown:
                raise RecipeError(
                    f"recipe: {key}: no prunable layer named {_some(repr(clip(n)) for n in unknown)}; valid:"
                    f" {_some(by_name) or '(none)'}"
                )
        if self.exclude is None:
            excluded = {info.name: "by default: its outputs are the model's outputs" for info in layers if info.is_output}
        else:
            excluded = {name: "it is listed in exclude" for name in self.exclude}
        ratios: dict[str, float] = {}
        left_out: dict[str, str] = {}  # layer -> why it is not pruned
        for info in layers:
            explicit = info.name in self.layers
            ratio = self.layers[info.name] if explicit else self.sparsity
            if info.name in excluded:
                if explicit and ratio > 0:
                    raise RecipeError(
                        f"recipe: layers.{info.name}: layer '{info.name}' is excluded ({excluded[info.name]}); remove"
                        " the override, or list the layers to leave alone in exclude (exclude: [] prunes every layer)"
                    )
                left_out[info.name] = f"excluded ({excluded[info.name]})"
                continue
            why_not = self._why_not(info)
            if why_not is not None:
                if explicit and ratio > 0:
                    raise RecipeError(
                        f"recipe: layers.{info.name}: granularity {self.granularity} does not apply to layer"
                        f" '{info.name}': {why_not}"
                    )
                left_out[info.name] = f"{self.granularity} does not apply: {why_not}"
                continue
            if ratio > 0:
                ratios[info.name] = 1 - self.nm.n / self.nm.m if self.granularity == "nm" else ratio
            else:
                left_out[info.name] = "ratio 0"
        self._check_whole_groups(layers, ratios)
        if require and not ratios:
            shown = "; ".join(f"'{name}' {why}" for name, why in list(left_out.items())[:6])
            more = f"; and {len(left_out) - 6} more" if len(left_out) > 6 else ""
            raise NothingToPrune(f"recipe: prunes no layer of the model: {shown or 'it has no prunable layer'}{more}")
        return Target(
            granularity=self.granularity,
            criterion=self.criterion,
            scope=self.scope,
            ratios=ratios,
            nm=(self.nm.n, self.nm.m),
            round_to=self.round_to,
            seed=self.seed,
        )

    def _check_whole_groups(self, layers: list, ratios: dict[str, float]) -> None:
        """Channel pruning removes a coupled group's channels together: a layer listed in ``exclude`` whose group
        partners are pruned would lose its channels all the same, so that is refused, naming the group."""
        if self.granularity != "channel" or not self.exclude:
            return
        members: dict[object, list[str]] = {}
        for info in layers:
            members.setdefault(info.group, []).append(info.name)
        for name in self.exclude:
            group = members[next(info.group for info in layers if info.name == name)]
            pruned = [m for m in group if m in ratios]
            if pruned:
                raise RecipeError(
                    f"recipe: exclude: layer '{name}' is coupled with {_some(repr(m) for m in pruned)} (their output "
                    f"channels go together), so excluding it alone keeps nothing; exclude the whole group "
                    f"({', '.join(group)}) or none of it")

    def _why_not(self, info) -> str | None:
        if self.granularity == "nm" and len(info.shape) >= 2:  # the description assumed the default M
            return GRANULARITIES["nm"].why_not(info.facts(), (self.nm.n, self.nm.m))
        return info.granularities.get(self.granularity)


def _some(items, most: int = 12) -> str:
    """The first ``most`` items, comma-separated, and how many more (an error line stays a line)."""
    items = list(items)
    more = f", and {len(items) - most} more" if len(items) > most else ""
    return ", ".join(str(i) for i in items[:most]) + more


def _percent(fraction: float) -> str:
    return f"{round(fraction * 100, 2):g}%"


