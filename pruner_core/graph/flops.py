"""FLOPs measured by PyTorch's own counter (a multiply-add counts as 2)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count


def _cpu_attention(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """torch's own attention count (two matmuls) for the CPU kernel its counter has no formula for."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


_MISSING = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention}


def layer_flops(module: nn.Module, example: torch.Tensor) -> tuple[int, dict[str, int]]:
    """Measured FLOPs of one forward on ``example``: the total and per module name.

    Counted with autograd on, as in training: with it off, ``nn.MultiheadAttention`` (and the transformer layers
    around it) take torch's fused inference kernel, which the counter does not see, and attention would count 0.
    ``scaled_dot_product_attention`` on CPU is counted as torch counts it on a GPU.
    """
    with torch.enable_grad(), FlopCounterMode(display=False, custom_mapping=_MISSING) as counter:
        module(example)
    per: dict[str, int] = {}
    for key, ops in counter.get_flop_counts().items():
        if "." in key:
            per[key.split(".", 1)[1]] = int(sum(ops.values()))
    return int(counter.get_total_flops()), per
