"""The ``train`` stage: a loop over epochs that can be killed at any point and resumed exactly.

``<out>/last.pt`` is written after every epoch and every ``train.save_every_iters`` optimizer steps
(atomically: a kill during the write leaves the previous one). It holds the model, optimizer,
scheduler, AMP scaler, EMA, epoch and batch, loss sums of the epoch so far, the history, the best
metric, the early-stopping counter and every random state; batches and augmentation are a pure function
of (seed, epoch, index) (``detection.engine.sampler``), so a resumed CPU run ends with the same weights,
bit for bit, as one never stopped. ``best.pt`` is the best by ``train.monitor`` on the valid split.
Under ``torchrun`` it trains with DDP; only rank 0 validates and writes files.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from detection.config import DatasetConfig, ModelParams, TrainParams
from detection.data.keypoints import KeypointSpec, keypoint_spec
from detection.data.table import read_table, summary
from detection.engine import distributed
from detection.engine.checkpoint import load_checkpoint, save_checkpoint
from detection.engine.data import DetectionDataset, check_images_exist, collate, make_loader, train_augmentation
from detection.engine.ema import ModelEMA
from detection.engine.evaluate import coco_metrics, run_inference, split_reports
from detection.engine.keypoints import keypoint_metrics
from detection.engine.logger import write_history
from detection.engine.loop import train_one_epoch, validation_loss
from detection.engine.optim import amp_dtype, build_optimizer, lr_factor
from detection.engine.sampler import EpochBatchSampler, SeededSamples, aspect_groups
from detection.engine.state import rng_state, seed_everything, set_rng_state
from detection.engine.tuning import apply_speed_params
from detection.io import write_json
from detection.models import build_model, get_spec
from detection.viz.plots import plot_training_history

log = logging.getLogger(__name__)

WALL_CLOCK = ("seconds", "images_per_s")  # history columns that differ run to run: kept out of best.pt


def _improved(value: float, best: float | None, monitor: str, min_delta: float) -> bool:
    if best is None:
        return True
    return value < best - min_delta if "loss" in monitor else value > best + min_delta


def _sizes(table: Any) -> list[tuple[int, int]]:
    first = table.drop_duplicates("image")
    return list(zip(first["width"].astype(int), first["height"].astype(int), strict=True))


def train(data: DatasetConfig, model_params: ModelParams, params: TrainParams, resume: bool = False) -> dict[str, Any]:
    """Fit ``model_params.name`` on ``data.train``, select on ``data.valid``; return a summary."""
    get_spec(model_params.name)  # an unknown model name fails before any data is read
    info, device = distributed.setup(params.device)
    result = _train(data, model_params, params, resume, info, device)
    distributed.cleanup(info)
    return result


def _train(data: DatasetConfig, model_params: ModelParams, params: TrainParams, resume: bool, info: distributed.Dist, device: torch.device) -> dict[str, Any]:
    seed_everything(params.seed)
    if params.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    train_table, valid_table = read_table(data.train), read_table(data.valid)
    for table, src in ((train_table, data.train), (valid_table, data.valid)):
        check_images_exist(table, data.root, str(src))
    names = list(data.names)
    kp = _keypoints(data, model_params, train_table, valid_table)
    train_set = DetectionDataset(train_table, data.root, names, train_augmentation(params.hflip, params.seed, params.augment, params.imgsz, kp), keypoints=kp)
    valid_set = DetectionDataset(valid_table, data.root, names, keypoints=kp)
    groups = aspect_groups(_sizes(train_table)) if params.group_aspect else None
    sampler = EpochBatchSampler(len(train_set), params.batch, params.seed, group_ids=groups, rank=info.rank, world=info.world)
    loader = DataLoader(
        SeededSamples(train_set), batch_sampler=sampler, num_workers=params.workers, collate_fn=collate,
        generator=torch.Generator().manual_seed(params.seed), persistent_workers=params.workers > 0,
    )  # fmt: skip
    valid_loader = make_loader(valid_set, params.batch, shuffle=False, workers=0, seed=params.seed)
    batches = sampler.batches_per_epoch()
    steps_per_epoch = math.ceil(batches / params.accumulate)
    log.info("train: %s, %d train / %d valid images, %d classes, device %s", model_params.name, len(train_set), len(valid_set), len(names), device)
    log.info("train set: %s", summary(train_table)["per_class"])
    log.info(
        "effective batch %d (%d x %d processes x %d accumulated), lr %g, %s, %s schedule, %d steps/epoch",
        params.batch * info.world * params.accumulate, params.batch, info.world, params.accumulate, params.lr, params.optimizer, params.schedule, steps_per_epoch,
    )  # fmt: skip

    bare = build_model(
        model_params.name, num_classes=len(names) + 1, weights=model_params.weights, imgsz=params.imgsz,
        trainable_layers=model_params.trainable_layers, num_keypoints=len(kp) if kp else None,
    ).to(device)  # fmt: skip
    apply_speed_params(bare, params.roi_batch, params.rpn_batch, params.rpn_post_nms, params.channels_last, params.threaded_roi_align, params.speed)
    if info.enabled:
        torch.manual_seed(params.seed + info.rank)  # other RoI samples per process; DDP copies rank 0's weights
    model = distributed.wrap(bare, info, device, params.sync_bn)
    optimizer = build_optimizer(bare, params.optimizer, params.lr, params.momentum, params.weight_decay, params.nesterov)
    total_steps = params.epochs * steps_per_epoch
    factor = lr_factor(
        params.schedule, total_steps, steps_per_epoch, min(params.warmup_iters, total_steps // 3), params.lr_floor,
        tuple(params.milestones), params.gamma, params.restart_epochs,
    )  # fmt: skip
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    dtype = amp_dtype(params.amp, device)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    ema = ModelEMA(bare, params.ema_decay) if params.ema else None

    out, reports = Path(params.out), Path(params.reports)
    live_dir = reports / "dvclive" if params.dvclive else None
    run_params = {"model": model_params.model_dump(mode="json"), "train": params.model_dump(mode="json"), "data": data.model_dump(mode="json")}
    ckpt_kwargs = {"model_name": model_params.name, "class_names": names, "imgsz": params.imgsz, "params": run_params, "keypoints": kp.to_dict() if kp else None}
    st: dict[str, Any] = {"epoch": 1, "iteration": 0, "sums": {}, "rows": [], "best": None, "bad_epochs": 0}
    if resume and (out / "last.pt").is_file():
        st = _restore(load_checkpoint(out / "last.pt"), bare, optimizer, scheduler, scaler, ema, st)
        log.info("resuming from %s at epoch %d, batch %d", out / "last.pt", st["epoch"], st["iteration"])

    def save_last(epoch: int, iteration: int, sums: dict[str, float]) -> None:
        if not info.main:
            return
        extra = {"resume": {**st, "epoch": epoch, "iteration": iteration, "sums": dict(sums), "rng": rng_state()}}
        if scaler is not None:
            extra["scaler"] = scaler.state_dict()
        if ema is not None:
            extra["ema"] = ema.state_dict()
        done = epoch - 1 if iteration < batches else epoch
        metrics = {"best": st["best"], params.monitor: st["rows"][-1][params.monitor]} if st["rows"] else {}
        save_checkpoint(out / "last.pt", bare, epoch=done, metrics=metrics, optimizer=optimizer, scheduler=scheduler, extra=extra, **ckpt_kwargs)

    def after_step(iteration: int, sums: dict[str, float]) -> None:
        if params.save_every_iters and scheduler.last_epoch % params.save_every_iters == 0 and iteration < batches:
            save_last(epoch, iteration, sums)

    started = time.perf_counter()
    for epoch in range(st["epoch"], params.epochs + 1):
        t0 = time.perf_counter()
        sampler.set_epoch(epoch, st["iteration"])
        losses = train_one_epoch(
            model, optimizer, scheduler, loader, device, epoch, total=batches, start=st["iteration"], sums=st["sums"],
            scaler=scaler, dtype=dtype, ema=ema, ema_target=bare, accumulate=params.accumulate, clip_grad=params.clip_grad,
            after_step=after_step, show=info.main,
        )  # fmt: skip
        train_seconds = time.perf_counter() - t0
        losses = distributed.mean_over_ranks(info, losses)
        judged = ema.module if ema is not None else bare
        scores = _validate(judged, valid_set, valid_loader, valid_table, names, device, dtype, params.val_loss) if info.main else None
        scores = distributed.broadcast(info, scores)
        row = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"], **{f"train_{k}": v for k, v in losses.items()}, **scores}
        row.update(seconds=time.perf_counter() - t0, images_per_s=len(train_set) / max(train_seconds, 1e-9))
        if params.monitor not in row:
            raise ValueError(f"train.monitor {params.monitor!r} is not a history column: {sorted(row)}")
        improved = _improved(row[params.monitor], st["best"], params.monitor, params.min_delta)
        st["best"] = row[params.monitor] if improved else st["best"]
        st["best_epoch"] = epoch if improved else st.get("best_epoch", epoch)
        st["bad_epochs"] = 0 if improved else st["bad_epochs"] + 1
        st["rows"].append(row)
        st["iteration"], st["sums"] = 0, {}
        if info.main:
            if improved:
                scores = {k: v for k, v in row.items() if isinstance(v, float) and k not in WALL_CLOCK}  # same run, same bytes
                save_checkpoint(out / "best.pt", judged, epoch=epoch, metrics=scores, **ckpt_kwargs)
            save_last(epoch + 1, 0, {})
            write_history(st["rows"], reports, live_dir)
        log.info(
            "epoch %d/%d  loss %.3f  val loss %s  val mAP %.3f  mAP@0.5 %.3f  %.1fs  %.1f img/s%s",
            epoch, params.epochs, row["train_loss"], f"{row['val_loss']:.3f}" if "val_loss" in row else "-", row["val_map"], row["val_map50"],
            row["seconds"], row["images_per_s"], "  (best)" if improved else "",
        )  # fmt: skip
        distributed.barrier(info)
        if params.patience and st["bad_epochs"] >= params.patience:
            log.info("early stop: %s has not improved by %g for %d epochs", params.monitor, params.min_delta, params.patience)
            break
    if not info.main:
        return {}
    return _finish(st["rows"], st.get("best_epoch"), params, data, model_params, names, device, reports, out, time.perf_counter() - started, getattr(bare, "weights_info", None))


def _keypoints(data: DatasetConfig, model_params: ModelParams, train_table: Any, valid_table: Any) -> KeypointSpec | None:
    """The keypoints a keypoint model learns (from the dataset config and both tables), None for other models."""
    if get_spec(model_params.name).family != "keypoint_rcnn":
        return None
    import pandas as pd

    spec = keypoint_spec(data, pd.concat([train_table, valid_table]), f"{data.train} / {data.valid}")
    log.info("keypoints: %d (%s), flip map %s, OKS sigmas %s", len(spec), ", ".join(spec.names), spec.flip, sorted(set(spec.sigmas)))
    return spec


def _validate(model, valid_set, valid_loader, valid_table, names, device, dtype, with_loss: bool) -> dict[str, float]:
    detections = run_inference(model, valid_set, device)
    metrics = coco_metrics(valid_table, names, detections)
    scores = validation_loss(model, valid_loader, device, dtype) if with_loss else {}
    model.eval()
    if valid_set.keypoints is not None:
        scores["val_kp_map"] = keypoint_metrics(valid_table, names, detections, valid_set.keypoints)["map"]
    return {**scores, "val_map": metrics["map"], "val_map50": metrics["map50"], "val_map75": metrics["map75"]}


def _restore(ckpt: dict[str, Any], model, optimizer, scheduler, scaler, ema, st: dict[str, Any]) -> dict[str, Any]:
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    if "resume" not in ckpt:  # an older last.pt: model, optimizer, scheduler and epoch only
        return {**st, "epoch": int(ckpt["epoch"]) + 1}
    state = dict(ckpt["resume"])
    if scaler is not None and "scaler" in ckpt:
        scaler.load_state_dict(ckpt["scaler"])
    if ema is not None and "ema" in ckpt:
        ema.load_state_dict(ckpt["ema"])
    set_rng_state(state.pop("rng"))
    return state


def _finish(rows, best_epoch: int | None, params: TrainParams, data: DatasetConfig, model_params: ModelParams, names, device, reports: Path, out: Path, seconds: float, weights_info: Any = None) -> dict[str, Any]:
    import pandas as pd

    history = pd.DataFrame(rows)
    plot_training_history(history, reports / "curves.png")
    if best_epoch is None:  # a run resumed from an older last.pt
        best_epoch = int(history.loc[history[params.monitor].idxmin() if "loss" in params.monitor else history[params.monitor].idxmax()]["epoch"])
    best = history.loc[history["epoch"] == best_epoch].iloc[0]  # the epoch of best.pt
    result: dict[str, Any] = {
        "model": model_params.name,
        "epochs": int(history["epoch"].max()),
        "best_epoch": int(best["epoch"]),
        "best_val_map": float(best["val_map"]),
        "best_val_map50": float(best["val_map50"]),
        "monitor": params.monitor,
        "train_seconds": round(seconds, 1),
        "images_per_s": round(float(history["images_per_s"].mean()), 2),
        "device": str(device),
        "weights": weights_info,  # what model.weights (e.g. auto) resolved to, tensors loaded
    }
    for split in ("valid", "test"):
        path = getattr(data, split, None)
        if path is not None and Path(path).is_file():
            m = split_reports(out / "best.pt", data.model_copy(update={"valid": Path(path)}), reports / split, device=str(device))
            result[f"{split}_map"], result[f"{split}_map50"] = m["map"], m["map50"]
            if "keypoints" in m:
                result[f"{split}_kp_map"], result[f"{split}_kp_map50"] = m["keypoints"]["map"], m["keypoints"]["map50"]
    write_json(reports / "summary.json", result)
    return result
