"""One training epoch (accumulation, AMP, clipping, EMA, a callback after each optimizer step) and the
validation loss. Resumable at any optimizer step: the epoch can start at batch ``start`` with the
running loss sums of the batches before it."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from detection.engine.ema import ModelEMA

Batch = tuple[list[torch.Tensor], list[dict[str, Any]]]


def to_device(images: list[torch.Tensor], targets: list[dict[str, Any]], device: torch.device) -> Batch:
    images = [im.to(device, non_blocking=True) for im in images]
    targets = [{k: (v.to(device) if torch.is_tensor(v) else v) for k, v in t.items()} for t in targets]
    return images, targets


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loader: torch.utils.data.DataLoader,
    device: torch.device,
    epoch: int,
    *,
    total: int,
    start: int = 0,
    sums: dict[str, float] | None = None,
    scaler: torch.amp.GradScaler | None = None,
    dtype: torch.dtype | None = None,
    ema: ModelEMA | None = None,
    ema_target: nn.Module | None = None,
    accumulate: int = 1,
    clip_grad: float = 0.0,
    after_step: Callable[[int, dict[str, float]], None] | None = None,
    show: bool = True,
) -> dict[str, float]:
    """Batches ``start..total-1`` of epoch ``epoch``; returns the mean of each loss term and of their sum.

    ``sums`` holds the running sums (and ``count``) of the batches before ``start``; ``after_step(i, sums)``
    is called after each optimizer step, ``i`` being the number of batches done in this epoch.
    """
    model.train()
    sums = dict(sums or {})
    bar = tqdm(loader, desc=f"epoch {epoch}", unit="batch", initial=start, total=total, leave=False, disable=None if show else True, file=sys.stderr)
    optimizer.zero_grad(set_to_none=True)
    for i, (images, targets) in enumerate(bar, start=start):
        images, targets = to_device(images, targets, device)
        with autocast(device, dtype):
            losses = model(images, targets)
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise RuntimeError(f"loss is {loss.item()} at epoch {epoch}, batch {i}: lower train.lr or check the boxes")
        scaled = loss / accumulate
        (scaler.scale(scaled) if scaler is not None else scaled).backward()
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
        sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
        sums["count"] = sums.get("count", 0) + 1
        if (i + 1) % accumulate and i + 1 < total:
            continue
        if scaler is not None:
            scaler.unscale_(optimizer)
        if clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        if ema is not None:
            ema.update(ema_target if ema_target is not None else model)
        bar.set_postfix(loss=f"{sums['loss'] / sums['count']:.3f}", lr=f"{optimizer.param_groups[0]['lr']:.4g}")
        if after_step is not None:
            after_step(i + 1, sums)
    count = max(1, sums.get("count", 0))
    return {k: v / count for k, v in sums.items() if k != "count"}


@torch.no_grad()
def validation_loss(model: nn.Module, loader: torch.utils.data.DataLoader, device: torch.device, dtype: torch.dtype | None = None) -> dict[str, float]:
    """The training losses on the validation set (norm layers in eval mode, random state untouched)."""
    was_training = model.training
    sums: dict[str, float] = {}
    count = 0
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        model.train()
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        for images, targets in loader:
            images, targets = to_device(images, targets, device)
            with autocast(device, dtype):
                losses = model(images, targets)
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            sums["loss"] = sums.get("loss", 0.0) + float(sum(losses.values()))
            count += 1
    model.train(was_training)
    return {f"val_{k}": v / max(1, count) for k, v in sums.items()}
