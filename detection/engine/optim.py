"""Optimisers (SGD, Adam, AdamW; no weight decay on norms and biases), LR schedules with a linear
warm-up counted in iterations, and the mixed-precision choice."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm, nn.modules.instancenorm._InstanceNorm)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two groups: weights with ``weight_decay``, and norm-layer parameters plus biases without."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            (no_decay if isinstance(module, NORMS) or name.endswith("bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, name: str, lr: float, momentum: float, weight_decay: float, nesterov: bool = False) -> torch.optim.Optimizer:
    groups = param_groups(model, weight_decay)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=(momentum, 0.999))
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(momentum, 0.999))
    raise ValueError(f"unknown optimizer {name!r}")


def lr_factor(
    schedule: str,
    total_iters: int,
    iters_per_epoch: int,
    warmup_iters: int = 0,
    floor: float = 0.05,
    milestones: tuple[int, ...] = (),
    gamma: float = 0.1,
    restart_epochs: int = 5,
    warmup_factor: float = 0.001,
) -> Callable[[int], float]:
    """LR multiplier per iteration (the optimizer step count).

    ``multistep``: x ``gamma`` at each milestone epoch; ``cosine``: to ``floor`` at the end;
    ``cosine_restarts``: cosine to ``floor`` every ``restart_epochs`` epochs; ``onecycle``: cosine up
    from 1/25 over the warm-up (30% of the run if none) then cosine down to ``floor`` / 100
    (torch's OneCycleLR shape). All but ``onecycle`` start with a linear warm-up of ``warmup_iters``.
    """
    warmup_iters = max(0, min(warmup_iters, total_iters - 1))

    def cos(progress: float, lo: float) -> float:
        return lo + (1 - lo) * 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, progress))))

    def base(it: int) -> float:
        if schedule == "multistep":
            return gamma ** sum(it >= m * iters_per_epoch for m in milestones)
        if schedule == "cosine":
            return cos((it - warmup_iters) / max(1, total_iters - warmup_iters), floor)
        if schedule == "cosine_restarts":
            period = max(1, restart_epochs * iters_per_epoch)
            return cos(((it - warmup_iters) % period) / period, floor) if it >= warmup_iters else 1.0
        if schedule == "constant":
            return 1.0
        raise ValueError(f"unknown schedule {schedule!r}")

    def factor(it: int) -> float:
        if schedule == "onecycle":
            up = warmup_iters or max(1, int(0.3 * total_iters))
            if it < up:
                return 1 / 25 + (1 - 1 / 25) * (1 - cos(it / up, 0.0))
            return cos((it - up) / max(1, total_iters - up), floor / 100)
        if it < warmup_iters:
            return (warmup_factor + (1 - warmup_factor) * it / warmup_iters) * base(it)
        return base(it)

    return factor


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for fp32: ``auto`` is fp16 on CUDA and off elsewhere; ``on`` is
    fp16 on CUDA, bf16 on the CPU (and MPS)."""
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if device.type == "cpu" and not cpu_has_fast_bf16():
        log.warning("amp: on runs bf16 on a CPU without native bf16 (no AVX512-BF16/AMX; this one: %s): it is emulated and "
                    "about 20x slower than fp32 here (benchmarks/train.py measured 61 vs 2.9 s/iter); use amp: off",
                    torch.backends.cpu.get_cpu_capability())  # fmt: skip
    return torch.float16 if device.type == "cuda" else torch.bfloat16


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU computes bf16 natively (oneDNN's check: AVX512-BF16 or AMX); elsewhere bf16 is emulated."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
