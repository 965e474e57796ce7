"""Training: ``train_one_epoch`` (as torchvision's references/detection) and the ``train`` stage.

The stage writes ``<out>/last.pt`` after every epoch (resumable: optimizer, scheduler and epoch
included) and ``<out>/best.pt`` when the validation mAP improves, plus ``<reports>/history.csv``
and ``<reports>/curves.png``. Runs are seeded; on CUDA, mixed precision is used.
"""

from __future__ import annotations

import logging
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from detection.config import DatasetConfig, ModelParams, TrainParams
from detection.data.table import read_table, summary
from detection.engine.checkpoint import load_checkpoint, save_checkpoint
from detection.engine.data import DetectionDataset, check_images_exist, make_loader, train_augmentation
from detection.engine.device import resolve_device
from detection.engine.evaluate import coco_metrics, run_inference
from detection.io import atomic_path, write_json
from detection.models import build_model, get_spec
from detection.viz.plots import plot_training_curves

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def warmup_cosine(total_iters: int, warmup_iters: int, floor: float = 0.05):
    """LR factor per iteration: linear warm-up, then cosine decay to ``floor``."""

    def factor(it: int) -> float:
        if it < warmup_iters:
            return 0.001 + (1 - 0.001) * it / max(1, warmup_iters)
        progress = (it - warmup_iters) / max(1, total_iters - warmup_iters)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loader: torch.utils.data.DataLoader,
    device: torch.device,
    epoch: int,
    scaler: torch.amp.GradScaler | None = None,
) -> dict[str, float]:
    """One pass over ``loader``; returns the mean of each loss term and of their sum."""
    model.train()
    sums: dict[str, float] = {}
    count = 0
    bar = tqdm(loader, desc=f"epoch {epoch}", unit="batch", leave=False, disable=None, file=sys.stderr)
    for images, targets in bar:
        images = [im.to(device, non_blocking=True) for im in images]
        targets = [{k: (v.to(device) if torch.is_tensor(v) else v) for k, v in t.items()} for t in targets]
        with torch.autocast(device.type, enabled=scaler is not None):
            losses = model(images, targets)
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise RuntimeError(f"loss is {loss.item()} at epoch {epoch}: lower train.lr or check the boxes")
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        scheduler.step()
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
        sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
        count += 1
        bar.set_postfix(loss=f"{sums['loss'] / count:.3f}", lr=f"{optimizer.param_groups[0]['lr']:.4f}")
    return {k: v / max(1, count) for k, v in sums.items()}


def train(data: DatasetConfig, model_params: ModelParams, params: TrainParams, resume: bool = False) -> dict[str, Any]:
    """The train stage: fit ``model_params.name`` on ``data.train``, select on ``data.valid``; return a summary."""
    get_spec(model_params.name)  # an unknown model name fails before any data is read
    seed_everything(params.seed)
    device = resolve_device(params.device)
    train_table, valid_table = read_table(data.train), read_table(data.valid)
    for table, src in ((train_table, data.train), (valid_table, data.valid)):
        check_images_exist(table, data.root, str(src))
    names = list(data.names)
    train_set = DetectionDataset(train_table, data.root, names, train_augmentation(params.hflip, params.seed))
    valid_set = DetectionDataset(valid_table, data.root, names)
    loader = make_loader(train_set, params.batch, shuffle=True, workers=params.workers, seed=params.seed)
    log.info("train: %s, %d train / %d valid images, %d classes, device %s", model_params.name, len(train_set), len(valid_set), len(names), device)
    log.info("train set: %s", summary(train_table)["per_class"])

    model = build_model(model_params.name, num_classes=len(names) + 1, weights=model_params.weights, imgsz=params.imgsz, trainable_layers=model_params.trainable_layers).to(device)
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim <= 1]
    optimizer = torch.optim.SGD(
        [{"params": decay, "weight_decay": params.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=params.lr,
        momentum=params.momentum,
    )
    total_iters = params.epochs * len(loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total_iters, min(params.warmup_iters, total_iters // 3)))
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" else None

    out, reports = Path(params.out), Path(params.reports)
    run_params = {"model": model_params.model_dump(mode="json"), "train": params.model_dump(mode="json"), "data": data.model_dump(mode="json")}
    start_epoch, best_map, rows = 1, -1.0, []
    if resume and (out / "last.pt").is_file():
        ckpt = load_checkpoint(out / "last.pt")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        start_epoch = ckpt["epoch"] + 1
        best_map = float(ckpt["metrics"].get("best_map", -1.0))
        if (reports / "history.csv").is_file():
            rows = pd.read_csv(reports / "history.csv").to_dict("records")[: ckpt["epoch"]]
        log.info("resuming from %s at epoch %d", out / "last.pt", start_epoch)

    ckpt_kwargs = {"model_name": model_params.name, "class_names": names, "imgsz": params.imgsz, "params": run_params}
    started = time.perf_counter()
    for epoch in range(start_epoch, params.epochs + 1):
        t0 = time.perf_counter()
        losses = train_one_epoch(model, optimizer, scheduler, loader, device, epoch, scaler)
        metrics = coco_metrics(valid_table, names, run_inference(model, valid_set, device))
        row = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"], **losses, "val_map": metrics["map"], "val_map50": metrics["map50"], "seconds": time.perf_counter() - t0}
        rows.append(row)
        improved = metrics["map"] > best_map
        best_map = max(best_map, metrics["map"])
        scores = {"map": metrics["map"], "map50": metrics["map50"], "best_map": best_map}
        if improved:
            save_checkpoint(out / "best.pt", model, epoch=epoch, metrics=scores, **ckpt_kwargs)
        save_checkpoint(out / "last.pt", model, epoch=epoch, metrics=scores, optimizer=optimizer, scheduler=scheduler, **ckpt_kwargs)
        log.info(
            "epoch %d/%d  loss %.3f  val mAP %.3f  mAP@0.5 %.3f  %.1fs%s",
            epoch, params.epochs, losses["loss"], metrics["map"], metrics["map50"], row["seconds"], "  (best)" if improved else "",
        )
        history = pd.DataFrame(rows)
        reports.mkdir(parents=True, exist_ok=True)
        with atomic_path(reports / "history.csv") as tmp:
            history.to_csv(tmp, index=False, float_format="%.5f")
    history = pd.DataFrame(rows)
    plot_training_curves(history, reports / "curves.png")
    best = history.loc[history["val_map"].idxmax()]
    result = {
        "model": model_params.name,
        "epochs": params.epochs,
        "best_epoch": int(best["epoch"]),
        "best_val_map": float(best["val_map"]),
        "best_val_map50": float(best["val_map50"]),
        "train_seconds": round(time.perf_counter() - started, 1),
        "device": str(device),
        "weights": getattr(model, "weights_info", None),  # what model.weights (e.g. auto) resolved to, tensors loaded
    }
    write_json(reports / "summary.json", result)
    return result
