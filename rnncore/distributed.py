"""Data-parallel training across processes (``torchrun --nproc_per_node=N -m rnncore train``).

torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
``init_from_env`` starts the process group (``nccl`` when training on CUDA, ``gloo`` on the
CPU). Each rank trains on its own shard of the training poems (``shard``: every
``world_size``-th poem, all shards the same length) with the same per-process batch size;
``DistributedDataParallel`` averages the gradients, so every rank applies the same update
and the weights stay identical. Only rank 0 writes checkpoints and prints.
"""
from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from typing import Sequence, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass
class DistContext:
    """Who this process is. ``world_size == 1`` means plain single-process training."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def _device(self) -> torch.device:
        if self.backend == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def all_reduce(self, values: Sequence[float], op: str = "sum") -> list[float]:
        """Sum (or max) a few numbers over all ranks (identity without a process group)."""
        if not self.enabled:
            return [float(v) for v in values]
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self._device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
        return t.tolist()

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def env_world() -> tuple[int, int, int] | None:
    """(rank, world_size, local_rank) from torchrun's variables, or None when not set."""
    if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
        return None
    try:
        world = int(os.environ["WORLD_SIZE"])
        rank = int(os.environ["RANK"])
        local = int(os.environ.get("LOCAL_RANK", rank))
    except ValueError:
        raise ValueError("RANK / WORLD_SIZE / LOCAL_RANK must be integers") from None
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"invalid RANK={rank} for WORLD_SIZE={world}")
    return rank, world, local


def init_from_env(use_cuda: bool) -> DistContext:
    """Join the process group described by the environment (no-op for a single process)."""
    found = env_world()
    if found is None or found[1] == 1:
        return DistContext()
    rank, world, local = found
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method="env://")
    return DistContext(rank=rank, world_size=world, local_rank=local, backend=backend)


def shutdown(ctx: DistContext, synchronize: bool = True) -> None:
    """Leave the process group before the interpreter exits. After a run that ended
    normally (``synchronize``) every rank first waits for the others, so none closes its
    connections while a peer still talks to it; objects still holding the group (a DDP
    reducer in a reference cycle) are collected before it is destroyed. Either race can
    end a process in "terminate called without an active exception"."""
    if ctx.enabled and dist.is_initialized():
        if synchronize:
            dist.barrier()
        gc.collect()
        dist.destroy_process_group()


def shard(items: Sequence[T], ctx: DistContext) -> list[T]:
    """This rank's items: ``items[rank::world]`` after dropping the ``len % world`` tail, so
    all shards have the same length (equal numbers of batches per epoch)."""
    if not ctx.enabled:
        return list(items)
    usable = len(items) - len(items) % ctx.world_size
    if usable == 0:
        raise ValueError(f"{len(items)} training poems cannot be shared by "
                         f"{ctx.world_size} processes")
    return list(items[ctx.rank:usable:ctx.world_size])


def max_replica_difference(module: torch.nn.Module, ctx: DistContext) -> float:
    """max |w - w_rank0| over all parameters and ranks (0.0 = replicas identical)."""
    if not ctx.enabled:
        return 0.0
    flat = torch.cat([p.detach().reshape(-1).to(torch.float64) for p in module.parameters()])
    flat = flat.to(ctx._device())
    ref = flat.clone()
    dist.broadcast(ref, src=0)
    diff = (flat - ref).abs().max().reshape(1)
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    return float(diff)
