"""Latency of a channel group against its kept channels: the group's layers alone, rebuilt at each channel count and
timed (PyTorch eager on CPU, the median of several runs after one warm-up)."""

from __future__ import annotations

import math
import statistics

import torch
from torch import nn

from pruner_core.measure.metrics import timed_runs
from pruner_core.sensitivity.result import UnitCurve

LATENCY_BATCH = 8


@torch.inference_mode()
def _time(module: nn.Module, x: torch.Tensor, runs: int) -> float:
    return statistics.median(timed_runs(lambda: module(x), runs, 1))


def _resized(mod: nn.Module, out: int | None = None, inp: int | None = None) -> nn.Module:
    if isinstance(mod, nn.Linear):
        return nn.Linear(inp or mod.in_features, out or mod.out_features, bias=mod.bias is not None)
    cls = type(mod)
    return cls(inp or mod.in_channels, out or mod.out_channels, mod.kernel_size, stride=mod.stride, padding=mod.padding,
               dilation=mod.dilation, bias=mod.bias is not None)


def _latency_points(out: int, kept: list[int]) -> list[int]:
    step = 8 * max(1, math.ceil(out / 128))
    points = set(kept) | {out}
    for k in range(step, out + 1, step):
        points |= {k, min(k + 1, out)}
    return sorted(p for p in points if 1 <= p <= out)


def channel_latency(work: nn.Module, unit: UnitCurve, inputs: dict[str, tuple], runs: int) -> dict:
    """Milliseconds of the group's layers alone (members with k output channels + readers with k input channels).

    Args:
        work: the model the group belongs to (its layers are read, never changed).
        unit: a scanned channel unit (``channels``, ``layers``, ``consumers``, ``kept_channels``).
        inputs: each layer's input shape, from :func:`record_inputs`.
        runs: timed runs per point, after one warm-up.

    Returns:
        ``{"kept": [k, ...], "ms": [...], "how": "..."}``: every multiple of a step up to ``channels`` and the kept
        counts the scan reached.
    """
    modules = dict(work.named_modules())
    out = unit.channels
    kept_list, ms = [], []
    for k in _latency_points(out, unit.kept_channels or []):
        total = 0.0
        for name in unit.layers:
            mod, shape = modules[name], inputs[name]
            total += _time(_resized(mod, out=k).eval(), torch.rand(LATENCY_BATCH, *shape[1:]), runs)
        for name in unit.consumers:
            mod, shape = modules[name], inputs[name]
            width = mod.in_features if isinstance(mod, nn.Linear) else mod.in_channels
            k_in = max(1, round(k * width / out))  # a reader of a concatenation, or of an attention's v rows only
            x_shape = (LATENCY_BATCH, *shape[1:-1], k_in) if isinstance(mod, nn.Linear) else (LATENCY_BATCH, k_in, *shape[2:])
            total += _time(_resized(mod, inp=k_in).eval(), torch.rand(*x_shape), runs)
        kept_list.append(k)
        ms.append(round(total, 4))
    return {
        "kept": kept_list, "ms": ms,
        "how": f"PyTorch {torch.__version__.split('+')[0]} eager on CPU, {torch.get_num_threads()} thread(s), batch "
               f"{LATENCY_BATCH}, median of {runs} runs after 1 warm-up: the group's layers alone (its members with "
               "k output channels, the layers reading them with k input channels' worth)",
    }


def record_inputs(module: nn.Module, names: list[str], example: torch.Tensor) -> dict[str, tuple]:
    """The input shape of each named layer in one forward of ``example``: ``{name: shape}``."""
    shapes: dict[str, tuple] = {}
    mods = dict(module.named_modules())

    def hook(name: str):
        def record(_mod, args) -> None:  # a pre-hook that returns something replaces the arguments
            shapes.setdefault(name, tuple(args[0].shape))

        return record

    handles = [mods[n].register_forward_pre_hook(hook(n)) for n in names]
    try:
        with torch.inference_mode():
            module(example)
    finally:
        for h in handles:
            h.remove()
    return shapes
