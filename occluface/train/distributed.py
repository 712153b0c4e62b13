"""Data-parallel training under ``torchrun``: one process per GPU (nccl) or per CPU share (gloo).

Launch: ``torchrun --nproc_per_node=N $(which occluface) train ...``. Without torchrun's environment
(WORLD_SIZE unset or 1) everything here degrades to a single process and no process group is made.
Each process sees ``batch_size`` images per step (the global batch is N times larger, as in arcface_torch);
only rank 0 writes logs and checkpoints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["DistInfo", "setup", "cleanup", "wrap", "unwrap", "barrier", "make_train_sampler"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: its rank, how many processes there are, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def setup(device: str | None = None) -> DistInfo:
    """Join the torchrun process group if there is one; pick this process's device.

    ``device=None`` chooses CUDA when available. On CPU the cores are shared out between the local
    processes (torch would otherwise start one thread per core in every process and thrash).
    """
    world = _env_int("WORLD_SIZE", 1)
    local_rank = _env_int("LOCAL_RANK", 0)
    want_cuda = torch.cuda.is_available() if device is None else str(device).startswith("cuda")
    if want_cuda:
        dev = torch.device("cuda", local_rank) if world > 1 else torch.device(device or "cuda")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if world <= 1:
        return DistInfo(0, 1, 0, dev, None)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cpu":
        local_world = max(_env_int("LOCAL_WORLD_SIZE", world), 1)
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    if not dist.is_initialized():
        kwargs: dict[str, Any] = {"backend": backend}
        if dev.type == "cuda":
            kwargs["device_id"] = dev
        dist.init_process_group(**kwargs)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, dev, backend)


def cleanup(info: DistInfo) -> None:
    """Leave the process group (no-op for a single process)."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        if info.backend == "nccl":
            dist.barrier(device_ids=[info.device.index])
        else:
            dist.barrier()


def wrap(module: nn.Module, info: DistInfo) -> nn.Module:
    """DistributedDataParallel around ``module`` when running multi-process (gradients averaged per step)."""
    if not info.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)


def unwrap(module: nn.Module) -> nn.Module:
    return getattr(module, "module", module)


def make_train_sampler(dataset: Any, info: DistInfo, seed: int) -> Any:
    """A DistributedSampler (shuffled with ``seed``; call ``set_epoch``) or None for one process."""
    if not info.enabled:
        return None
    from torch.utils.data import DistributedSampler

    return DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=seed)
