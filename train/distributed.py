"""One trial in several processes (`torchrun --nproc-per-node N -m train`): the process group and the
few collectives the training loop needs. With one process every function is the identity or does
nothing, so the loop reads the same either way.

torchrun sets WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; gloo runs on the CPU,
NCCL on GPUs. Every rank holds the whole model and 1/N of the global batch; dense gradients are
summed over ranks (each rank's loss is already divided by the global batch size), the sparse
puzzle embedding gathers every rank's rows itself (train.model.sparse_embedding).
"""
from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist


def setup(device: torch.device) -> tuple[int, int]:
    """(rank, world_size), joining the process group when there is more than one process. Imports
    torch._dynamo: a compile cache must be configured before (train.compile_cache)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return 0, 1
    if device.type == "cuda":
        torch.cuda.set_device(device)
    # Before the group exists. Imported after (building an optimizer imports it), torch._dynamo keeps
    # the group alive past destroy_process_group: a gloo worker thread could then free the last
    # collective during interpreter shutdown and abort the rank.
    import torch._dynamo  # noqa: F401
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(obj: Any, world_size: int) -> Any:
    """Rank 0's `obj` on every rank (picklable objects)."""
    if world_size == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@torch.no_grad()
def broadcast_module(module: torch.nn.Module, world_size: int) -> None:
    """Rank 0's parameters and buffers everywhere: every rank starts from the same weights."""
    if world_size == 1:
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor, src=0)


def sum_gradients(module: torch.nn.Module, world_size: int) -> None:
    """Sum every parameter's gradient over the ranks, in place."""
    if world_size == 1:
        return
    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)


def sum_tensor(tensor: torch.Tensor, world_size: int) -> torch.Tensor:
    """`tensor` summed over the ranks, in place."""
    if world_size > 1:
        dist.all_reduce(tensor)
    return tensor


def gather_objects(local: Any, rank: int, world_size: int) -> list[Any] | None:
    """Every rank's `local`, in rank order, on rank 0 (None elsewhere)."""
    if world_size == 1:
        return [local]
    gathered: list[Any] | None = [None] * world_size if rank == 0 else None
    dist.gather_object(local, gathered, dst=0)
    return gathered


def agree(flag: bool, world_size: int) -> bool:
    """True on every rank when it is true on any (collective when distributed)."""
    if world_size == 1:
        return flag
    value = torch.tensor([float(flag)], device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(value)
    return bool(value.item())
