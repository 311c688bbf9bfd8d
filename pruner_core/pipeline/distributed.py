"""The recipe under ``torchrun``: PyTorch's own distributed engine, not ours.

``torchrun --nproc_per_node=N --no-python .venv/bin/pruner prune MODEL --data D --recipe R --out DIR`` starts N
processes with ``RANK``/``WORLD_SIZE``/``MASTER_ADDR`` set; :func:`init_from_env` joins them into one process group
(gloo on CPU; NCCL with ``--device cuda``, a GPU per rank). Then, in every process:

- pruning decisions are rank 0's: the masks (:func:`same_masks`) and channel plans (:func:`same_object`) are
  broadcast from it, so every rank prunes identically even where a data-dependent criterion (Taylor gradients,
  APoZ, Wanda norms) could differ in its last bits;
- fine-tuning is :class:`~torch.nn.parallel.DistributedDataParallel` over a
  :class:`~torch.utils.data.DistributedSampler` (``set_epoch`` each epoch), each rank taking ``batch_size /
  world_size`` samples a step so a step still sees ``batch_size`` samples in all; gradients are averaged. On GPUs
  BatchNorm is ``SyncBatchNorm`` while fine-tuning (:func:`training_on`); on CPU its buffers follow rank 0 (DDP
  broadcasts them each step; torch has no CPU kernel for ``SyncBatchNorm``);
- only rank 0 writes the run folder (atomically, as always), recording the world size.

Outside ``torchrun`` (or with one process) nothing here changes anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import os

import torch
from torch import nn

from pruner_core.errors import SpecError


def world() -> tuple[int, int]:
    """``(rank, world size)``: ``(0, 1)`` outside a process group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env(device: torch.device | None = None) -> bool:
    """Join the process group ``torchrun`` describes in the environment (NCCL for a GPU ``device``, else gloo);
    False when there is none (one process).

    Raises:
        RuntimeError: the environment names a group that cannot be joined (torch's message).
    """
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.is_initialized()
    cuda = device is not None and device.type == "cuda"
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo")  # masks and plans are broadcast on the CPU
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


def training_device(name: str = "cpu") -> torch.device:
    """The device fine-tuning runs on: ``cpu``, or ``cuda`` (under torchrun this rank's GPU, ``LOCAL_RANK``) or
    ``cuda:N``.

    Raises:
        SpecError: another name, or a GPU this PyTorch does not see (the message says what is valid here).
    """
    if name == "cpu":
        return torch.device("cpu")
    if name != "cuda" and not (name.startswith("cuda:") and name[5:].isdigit()):
        raise SpecError(f"device '{name}' is not one of cpu, cuda, cuda:N")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(name[5:] if name != "cuda" else os.environ.get("LOCAL_RANK", "0"))
    if index >= count:
        raise SpecError(f"device '{name}': this PyTorch ({torch.__version__}) sees {count} CUDA GPU(s)"
                        + (f" (cuda:0 to cuda:{count - 1})" if count else "; use cpu"))
    return torch.device("cuda", index)


@contextlib.contextmanager
def training_on(module: nn.Module, device: torch.device):
    """``module`` on ``device`` while fine-tuning, back on the CPU after; the forward to call is yielded: the module,
    or DistributedDataParallel around it in a group, with BatchNorm synchronised across GPU ranks (SyncBatchNorm
    layers that share the module's own tensors, swapped back afterwards)."""
    module.to(device)
    swapped: dict[str, nn.Module] = {}
    try:
        if world()[1] == 1:
            yield module
            return
        from torch.nn.parallel import DistributedDataParallel

        if device.type == "cuda":
            for name, layer in list(module.named_modules()):
                if isinstance(layer, nn.BatchNorm1d | nn.BatchNorm2d | nn.BatchNorm3d):
                    module.set_submodule(name, nn.SyncBatchNorm.convert_sync_batchnorm(layer))
                    swapped[name] = layer
        yield DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
    finally:
        for name, layer in swapped.items():
            module.set_submodule(name, layer)
        module.to("cpu")


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
