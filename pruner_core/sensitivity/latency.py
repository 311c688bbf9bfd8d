"""Latency of a channel group against its kept channels: the group's layers alone, rebuilt at each channel count and
timed (PyTorch eager on CPU). The counts are timed interleaved, one run of each in turn per round, so a busy moment of
the machine slows every count alike instead of making a step; each point keeps its median and inter-quartile range,
and a point whose range is wider than half its median is marked noisy (drawn so, never read as a step)."""

from __future__ import annotations

import math
import statistics
import time

import torch
from torch import nn

from pruner_core.sensitivity.result import UnitCurve

LATENCY_BATCH = 8
NOISY = 0.5  # an inter-quartile range wider than this share of the median: noisy (as Compare marks it)


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
        runs: rounds (each times every count once, in turn), after one warm-up round.

    Returns:
        ``{"kept": [k, ...], "ms": [...], "p25_ms": [...], "p75_ms": [...], "noisy": [bool, ...], "how": "..."}``:
        every multiple of a step up to ``channels`` and the kept counts the scan reached.
    """
    modules = dict(work.named_modules())
    out = unit.channels
    points = _latency_points(out, unit.kept_channels or [])
    calls: dict[int, list[tuple[nn.Module, torch.Tensor]]] = {}
    for k in points:
        calls[k] = [(_resized(modules[name], out=k).eval(), torch.rand(LATENCY_BATCH, *inputs[name][1:]))
                    for name in unit.layers]
        for name in unit.consumers:
            mod, shape = modules[name], inputs[name]
            width = mod.in_features if isinstance(mod, nn.Linear) else mod.in_channels
            k_in = max(1, round(k * width / out))  # a reader of a concatenation, or of an attention's v rows only
            x_shape = (LATENCY_BATCH, *shape[1:-1], k_in) if isinstance(mod, nn.Linear) else (LATENCY_BATCH, k_in, *shape[2:])
            calls[k].append((_resized(mod, inp=k_in).eval(), torch.rand(*x_shape)))
    times: dict[int, list[float]] = {k: [] for k in points}
    with torch.inference_mode():
        for round_ in range(runs + 1):  # round 0 warms up
            for k in points:
                start = time.perf_counter()
                for mod, x in calls[k]:
                    mod(x)
                if round_:
                    times[k].append((time.perf_counter() - start) * 1000)
    med, p25, p75 = [], [], []
    for k in points:
        q = statistics.quantiles(times[k], n=4) if len(times[k]) > 1 else [times[k][0]] * 3
        med.append(round(statistics.median(times[k]), 4))
        p25.append(round(q[0], 4))
        p75.append(round(q[2], 4))
    return {
        "kept": points, "ms": med, "p25_ms": p25, "p75_ms": p75,
        "noisy": [hi - lo > NOISY * m for m, lo, hi in zip(med, p25, p75, strict=True)],
        "how": f"PyTorch {torch.__version__.split('+')[0]} eager on CPU, {torch.get_num_threads()} thread(s), batch "
               f"{LATENCY_BATCH}, median of {runs} rounds after 1 warm-up, every count timed once per round in turn: "
               "the group's layers alone (its members with k output channels, the layers reading them with k input "
               f"channels' worth); a point whose inter-quartile range exceeds {NOISY:.0%} of its median is marked noisy",
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
