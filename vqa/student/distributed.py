"""Multi-GPU training through torchrun: one process per GPU, DistributedDataParallel.

`torchrun --nproc_per_node=N -m vqa.cli train --round round1` (or `vqa bench train`) sets
WORLD_SIZE/RANK/LOCAL_RANK; without them everything runs as a single process.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def shard(self, sel: torch.Tensor) -> torch.Tensor:
        """This rank's share of a micro-batch (every rank keeps all pairs when too few to split)."""
        if not self.enabled or len(sel) < self.world:
            return sel
        return sel[self.rank :: self.world]


def init_from_env(device: str) -> tuple[DistContext, str]:
    """(context, this process's device). Starts the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(), device
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if device.startswith("cuda"):
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
    return DistContext(rank, world, local), (f"cuda:{local}" if device.startswith("cuda") else device)


def all_mean(value: float, ctx: DistContext, device) -> float:
    if not ctx.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t) / ctx.world
