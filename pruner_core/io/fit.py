"""Where a model meets its data: :func:`fit_data` arranges a data set as the model takes it, and
:func:`check_data_fits` checks that it does.

A file's ``[N, H, W]`` array is a set of grey images to a CNN and a set of sequences to an LSTM; integers are pixel
values to one model and token ids to another. The loader cannot tell; the model can. :func:`fit_data` tries the
arrangements a data set allows (:meth:`~pruner_core.io.data.Dataset.arrangements`) on two samples and keeps the
first the model takes.
"""

from __future__ import annotations

import torch

from pruner_core.errors import CompatibilityError
from pruner_core.io.data import Dataset
from pruner_core.io.models import LoadedModel
from pruner_core.io.outputs import describe


def fit_data(model: LoadedModel, data: Dataset) -> Dataset:
    """``data`` arranged as ``model`` takes it (``data`` itself where it already fits), checked by
    :func:`check_data_fits`.

    Raises:
        CompatibilityError: the model takes none of the arrangements; the message names the file's sample shape,
            each shape tried and what the model said to the first.

    >>> from pruner_core.io.data import load_data
    >>> from pruner_core.io.models import load_model
    >>> fit_data(load_model("demo:mnist-cnn"), load_data("demo:mnist5k")).sample_shape
    (1, 28, 28)
    """
    candidates = data.arrangements()
    if len(candidates) == 1:
        check_data_fits(model, data)
        return data
    if model.input_shape:  # the model says what it takes
        candidates.sort(key=lambda d: d.sample_shape != tuple(model.input_shape))  # stable: declared shape first
    first = None
    for candidate in candidates:
        refusal = _refusal(model, candidate)
        if refusal is None:  # it takes these samples: the output and the labels are checked with its message
            check_data_fits(model, candidate)
            return candidate
        first = first or refusal
    tried = ", ".join(dict.fromkeys(f"{d.sample_shape}{' as integer ids' if d.x_test.dtype == torch.long else ''}"
                                    for d in candidates))
    raise CompatibilityError(
        f"data '{data.name}' holds samples of shape {data.held_shape}, which model '{model.label}' takes in no "
        f"arrangement tried ({tried}): {first}"
    )


def _refusal(model: LoadedModel, data: Dataset) -> str | None:
    """Why the model does not run on two samples of ``data``, in one line; None when it does (what it returns is
    :func:`check_data_fits`'s to judge)."""
    if model.input_shape and tuple(model.input_shape) != data.sample_shape:
        return f"it expects {tuple(model.input_shape)}"
    try:
        with torch.inference_mode():
            out = model.module(_probe(data))
    except Exception as e:  # noqa: BLE001 - any refusal means "not this arrangement"
        return _first_line(e)
    if isinstance(out, torch.Tensor) and out.dim() != 2:
        return f"it returns {tuple(out.shape)}, not class scores [batch, classes]"
    return None  # class scores, or a tuple/dict whose scores check_data_fits names


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__


def _probe(data: Dataset) -> torch.Tensor:
    return data.x_test[:2] if len(data.x_test) >= 2 else data.x_train[:2]


def check_data_fits(model: LoadedModel, data: Dataset) -> tuple[int, ...]:
    """Check that ``data`` (a :class:`~pruner_core.io.data.Dataset`) fits ``model``; return the input sample shape.

    Runs the model on two test samples: the sample shape must be accepted, the output must be
    ``[batch, classes]``, and every label must be one of those classes.

    Raises:
        CompatibilityError: naming the data's shape or label and what the model takes.
    """
    shape = data.sample_shape
    expected = f" (it expects {tuple(model.input_shape)})" if model.input_shape else ""
    if model.input_shape and tuple(model.input_shape) != shape:
        raise CompatibilityError(
            f"data '{data.name}' has samples of shape {shape} but model '{model.label}' expects {tuple(model.input_shape)}"
        )
    try:
        with torch.inference_mode():
            out = model.module(_probe(data))
    except Exception as e:  # the model's own shape checks raise RuntimeError, ValueError, ...
        raise CompatibilityError(
            f"data '{data.name}' has samples of shape {shape} that model '{model.label}' cannot take{expected}: "
            f"{_first_line(e)}"
        ) from e
    if not isinstance(out, torch.Tensor):
        what, key = describe(out)
        how = (f": name the class scores by adding '#{key}' to its spec ('{model.spec}#{key}')" if key is not None
               else "; expected class scores of shape [batch, classes]")
        raise CompatibilityError(f"model '{model.label}' returns {what}{how}")
    if out.dim() != 2:
        raise CompatibilityError(f"model '{model.label}' returns {tuple(out.shape)}; expected class scores of shape "
                                 "[batch, classes]")
    classes = out.shape[1]
    top = int(max(data.y_train.max().item() if len(data.y_train) else 0, data.y_test.max().item() if len(data.y_test) else 0))
    if top >= classes:
        raise CompatibilityError(
            f"data '{data.name}' has label {top} but model '{model.label}' outputs {classes} classes (labels 0..{classes - 1})"
        )
    return shape
