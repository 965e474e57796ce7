"""DDP set-up for ``torchrun`` (one process per device; gloo on the CPU, NCCL on CUDA).

Outside torchrun (no ``WORLD_SIZE`` > 1 in the environment) everything here is a no-op, so the same
training code runs single-process. Only rank 0 writes files and logs.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from detection.engine.device import resolve_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup(device_name: str) -> tuple[Dist, torch.device]:
    """Join the process group that torchrun describes (if any); return it and this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), resolve_device(device_name)
    info = Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if not info.main:  # one log, one progress bar, one set of outputs
        logging.getLogger("detection").setLevel(logging.WARNING)
    log.info("distributed: %d processes (%s), this is rank %d", world, dist.get_backend(), info.rank)
    return info, device


def relaunch(nproc: int, argv: list[str]) -> int:
    """Run ``python -m detection <argv>`` under torchrun with ``nproc`` processes on this node; its exit status."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m", "detection", *argv]
    log.info("relaunching under torchrun: %s", " ".join(cmd[2:]))
    return subprocess.run(cmd, check=False).returncode


def cleanup(info: Dist) -> None:
    if info.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier(info: Dist) -> None:
    if info.enabled:
        dist.barrier()


def broadcast(info: Dist, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def mean_over_ranks(info: Dist, values: dict[str, float]) -> dict[str, float]:
    if not info.enabled:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(t)
    return {k: float(v) / info.world for k, v in zip(keys, t.tolist(), strict=True)}


def wrap(model: nn.Module, info: Dist, device: torch.device, sync_bn: bool = False) -> nn.Module:
    """DDP around ``model`` when distributed; ``sync_bn`` converts BatchNorm to SyncBatchNorm, which torch
    runs on accelerators only: on the CPU (gloo) it is ignored with a warning, each process keeping its own
    batch statistics."""
    if not info.enabled:
        return model
    if sync_bn and device.type == "cpu":
        log.warning("train.sync_bn ignored on the CPU: torch's SyncBatchNorm needs an accelerator (CUDA/XPU); each process keeps its own BatchNorm statistics")
    elif sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)
