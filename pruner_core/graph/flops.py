"""FLOPs measured by PyTorch's own counter (a multiply-add counts as 2)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def layer_flops(module: nn.Module, example: torch.Tensor) -> tuple[int, dict[str, int]]:
    """Measured FLOPs of one forward on ``example``: the total and per module name."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(example)
    per: dict[str, int] = {}
    for key, ops in counter.get_flop_counts().items():
        if "." in key:
            per[key.split(".", 1)[1]] = int(sum(ops.values()))
    return int(counter.get_total_flops()), per
