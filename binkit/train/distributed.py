"""torch.distributed set-up for ``torchrun``: gloo on CPU, nccl on GPU, rank-0-only side effects.

A process started by ``torchrun`` sees ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` in its
environment; :func:`init_distributed` then joins the process group. Without them (or with
``WORLD_SIZE=1``) everything runs in one process and the helpers are no-ops.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistContext", "init_distributed"]


@dataclass
class DistContext:
    """Where this process stands: rank, world size and the device it trains on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def broadcast_object(self, obj):
        """Rank 0's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        """Element-wise sum of ``values`` over all ranks (float64)."""
        if not self.distributed:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def shutdown(self) -> None:
        if self.initialized_here and dist.is_initialized():
            # DistributedDataParallel's reducer holds the process group, and nn.Module reference
            # cycles keep a finished DDP model alive until a garbage collection: collect it now,
            # while the group and the interpreter are alive. Left to interpreter exit, gloo's
            # threads were torn down late and a rank aborted now and then on a loaded machine
            # ("terminate called without an active exception", SIGABRT) after its results were saved.
            gc.collect()
            dist.destroy_process_group()


def init_distributed(device: str = "auto") -> DistContext:
    """Join the process group when started by ``torchrun``; pick the device.

    ``device`` is ``training.device``: ``auto`` uses CUDA when available.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("training.device = 'cuda' but no CUDA device is available")
    if use_cuda:
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        dev = torch.device("cuda", torch.cuda.current_device())
    else:
        dev = torch.device("cpu")
    here = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        here = True
    return DistContext(rank, world, local_rank, dev, here)
