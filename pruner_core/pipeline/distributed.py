"""The recipe under ``torchrun``: PyTorch's own distributed engine, not ours.

``torchrun --nproc_per_node=N --no-python .venv/bin/pruner prune MODEL --data D --recipe R --out DIR`` starts N
processes with ``RANK``/``WORLD_SIZE``/``MASTER_ADDR`` set; :func:`init_from_env` joins them into one process group
(gloo, on CPU). Then, in every process:

- pruning decisions are rank 0's: the masks (:func:`same_masks`) and channel plans (:func:`same_object`) are
  broadcast from it, so every rank prunes identically even where a data-dependent criterion (Taylor gradients,
  APoZ, Wanda norms) could differ in its last bits;
- fine-tuning is :class:`~torch.nn.parallel.DistributedDataParallel` over a
  :class:`~torch.utils.data.DistributedSampler` (``set_epoch`` each epoch), each rank taking ``batch_size /
  world_size`` samples a step so a step still sees ``batch_size`` samples in all; gradients are averaged, and
  BatchNorm buffers follow rank 0 (DDP broadcasts them each step; ``SyncBatchNorm`` would need a GPU: torch has no
  CPU kernel for it, and GPUs are not wired in yet);
- only rank 0 writes the run folder (atomically, as always), recording the world size.

Outside ``torchrun`` (or with one process) nothing here changes anything.
"""

from __future__ import annotations

import hashlib
import os

import torch
from torch import nn


def world() -> tuple[int, int]:
    """``(rank, world size)``: ``(0, 1)`` outside a process group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env() -> bool:
    """Join the process group ``torchrun`` describes in the environment; False when there is none (one process).

    Raises:
        RuntimeError: the environment names a group that cannot be joined (torch's message).
    """
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.is_initialized()
    dist.init_process_group("gloo")  # CPU; GPUs (NCCL, a device per rank) are not wired in yet
    return True


def close() -> None:
    """Leave the group, without waiting for the others: the last collective is fine-tuning's, and rank 0 still
    measures and writes the run after it (a barrier here would make the others wait on that, up to gloo's timeout)."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def same_masks(masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rank 0's masks on every rank (as they are outside a process group)."""
    if world()[1] == 1:
        return masks
    import torch.distributed as dist

    out = {}
    for name in sorted(masks):
        tensor = masks[name].to(torch.uint8).contiguous()
        dist.broadcast(tensor, src=0)
        out[name] = tensor.bool()
    return {name: out[name] for name in masks}


def same_object(value):
    """Rank 0's ``value`` (any picklable plain data, e.g. a channel plan) on every rank."""
    if world()[1] == 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def digest(masks: dict[str, torch.Tensor] | None, plan: list | None) -> str:
    """A short fingerprint of what a rank pruned: equal on every rank of one run."""
    h = hashlib.sha256()
    for name in sorted(masks or {}):
        h.update(name.encode())
        h.update(masks[name].to(torch.uint8).cpu().numpy().tobytes())
    h.update(repr(plan or []).encode())
    return h.hexdigest()[:16]


def trainer(module: nn.Module) -> nn.Module:
    """What fine-tuning calls forward on: ``module`` itself, or DistributedDataParallel around it in a group."""
    if world()[1] == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    if torch.cuda.is_available() and next(module.parameters()).is_cuda:
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return DistributedDataParallel(module)


def shard_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int, epoch: int):
    """This rank's share of one epoch, as a DistributedSampler deals it: ``batch_size / world size`` a step."""
    from torch.utils.data import DistributedSampler

    from pruner_core.io.data import loader

    rank, size = world()
    sampler = DistributedSampler(range(len(y)), num_replicas=size, rank=rank, shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    return loader(x, y, local_batch(batch_size), sampler)


def local_batch(batch_size: int) -> int:
    """Samples per step on this rank: the recipe's batch size shared by the ranks (at least 1)."""
    return max(1, batch_size // world()[1])


def local_samples(n: int) -> int:
    """Training samples this rank sees an epoch (DistributedSampler pads to equal shares)."""
    return -(-n // world()[1])
