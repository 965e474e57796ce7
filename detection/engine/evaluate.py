"""COCO evaluation with pycocotools: mAP, mAP@0.5, per-class AP and precision-recall curves.

``run_inference`` feeds a dataset through a model; ``coco_metrics`` scores the detections against the
ground truth of a canonical table (boxes in the same continuous pixel convention as torchvision's
outputs, so COCO's ``[x, y, w, h]`` is ``[xmin, ymin, xmax - xmin, ymax - ymin]``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import nn
from torch.utils.data import Dataset

from detection.config import DatasetConfig
from detection.data.coco import to_coco_dict
from detection.data.table import images, read_table, summary
from detection.engine.checkpoint import load_model
from detection.engine.data import DetectionDataset, check_images_exist, make_loader
from detection.engine.device import resolve_device
from detection.io import atomic_path, write_json
from detection.viz.draw import draw_detections
from detection.viz.plots import plot_per_class_ap, plot_pr_curves

log = logging.getLogger(__name__)


@torch.inference_mode()
def run_inference(model: nn.Module, dataset: Dataset, device: torch.device, batch: int = 4) -> list[dict[str, np.ndarray]]:
    """Detections of ``model`` (eval mode) for every image of ``dataset``, in dataset order."""
    model.eval()
    out: list[dict[str, np.ndarray]] = []
    for batch_images, _ in make_loader(dataset, batch, shuffle=False, workers=0, seed=0):
        for det in model([im.to(device) for im in batch_images]):
            out.append({k: v.detach().cpu().numpy() for k, v in det.items()})
    return out


def _quiet_coco(gt: dict[str, Any]) -> COCO:
    coco = COCO()
    coco.dataset = gt
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def coco_metrics(table: pd.DataFrame, class_names: Sequence[str], detections: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    """COCO metrics of ``detections`` (one per image of ``table``, in first-seen image order).

    Returns ``map`` (AP@[.5:.95]), ``map50``, ``map75``, ``per_class`` (AP and AP50 per class name,
    None for classes without ground truth) and ``pr`` (precision at 101 recall points, IoU 0.5, per class).
    """
    gt = to_coco_dict(table, class_names)
    image_ids = [im["id"] for im in gt["images"]]
    if len(image_ids) != len(detections):
        raise ValueError(f"{len(detections)} detections for {len(image_ids)} images")
    results = []
    for image_id, det in zip(image_ids, detections, strict=True):
        for (x1, y1, x2, y2), score, label in zip(det["boxes"], det["scores"], det["labels"], strict=True):
            results.append({"image_id": image_id, "category_id": int(label), "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)], "score": float(score)})
    empty = {"map": 0.0, "map50": 0.0, "map75": 0.0, "per_class": {n: {"ap": None, "ap50": None} for n in class_names}, "pr": {}}
    if not gt["annotations"]:
        log.warning("the evaluation set has no boxes: metrics are zero")
        return empty
    coco_gt = _quiet_coco(gt)
    if not results:
        log.warning("the model made no detection on %d images: metrics are zero", len(image_ids))
        return {**empty, "per_class": {n: {"ap": 0.0, "ap50": 0.0} for n in class_names}}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(results)
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        ev.params.imgIds = image_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    precision = ev.eval["precision"]  # [iou thresholds, recall points, classes, areas, max dets]
    per_class, pr = {}, {}
    for k, cat_id in enumerate(ev.params.catIds):
        name = class_names[cat_id - 1]
        p_all = precision[:, :, k, 0, -1]
        p50 = precision[0, :, k, 0, -1]
        has_gt = bool((p_all > -1).any())
        per_class[name] = {
            "ap": float(p_all[p_all > -1].mean()) if has_gt else None,
            "ap50": float(p50[p50 > -1].mean()) if has_gt else None,
        }
        if has_gt:
            pr[name] = np.clip(p50, 0, None).tolist()
    return {"map": float(ev.stats[0]), "map50": float(ev.stats[1]), "map75": float(ev.stats[2]), "per_class": per_class, "pr": pr}


def _draw_samples(dataset: DetectionDataset, table: pd.DataFrame, detections: list[dict[str, np.ndarray]], names: Sequence[str], out: Path, threshold: float, count: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, det in list(zip(images(table)["image"], detections, strict=True))[:count]:
        keep = det["scores"] >= threshold
        rgb = dataset.read(name)
        drawn = draw_detections(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), det["boxes"][keep], [names[i - 1] for i in det["labels"][keep]], det["scores"][keep])
        cv2.imwrite(str(out / (Path(name).stem + ".jpg")), drawn)


def evaluate(weights: Path, data: DatasetConfig, out: Path, metrics_path: Path, score_threshold: float = 0.5, samples: int = 4, device: str = "auto") -> dict[str, Any]:
    """The evaluate stage: COCO metrics of a checkpoint on ``data.valid``.

    Writes ``metrics_path`` (map, map50, map75, per-class AP), ``out/per_class.csv``,
    ``out/pr_curve.csv`` (for ``dvc plots``), ``out/pr_curve.png``, ``out/per_class_ap.png`` and
    ``out/samples/*.jpg`` (the first ``samples`` valid images with detections >= ``score_threshold``).
    """
    dev = resolve_device(device)
    model, meta = load_model(weights, dev)
    names = list(meta["class_names"])
    if names != list(data.names):
        log.warning("the checkpoint's classes %s differ from the dataset config's %s: evaluating with the checkpoint's", names, list(data.names))
    table = read_table(data.valid)
    check_images_exist(table, data.root, str(data.valid))
    dataset = DetectionDataset(table, data.root, names)
    detections = run_inference(model, dataset, dev)
    m = coco_metrics(table, names, detections)
    counts = summary(table)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    per_class = pd.DataFrame(
        [{"class": n, "ap": v["ap"], "ap50": v["ap50"], "gt_boxes": counts["per_class"].get(n, 0)} for n, v in m["per_class"].items()]
    )
    with atomic_path(out / "per_class.csv") as tmp:
        per_class.to_csv(tmp, index=False, float_format="%.4f")
    pr_rows = [{"class": n, "recall": i / 100, "precision": p} for n, ps in m["pr"].items() for i, p in enumerate(ps)]
    with atomic_path(out / "pr_curve.csv") as tmp:
        pd.DataFrame(pr_rows, columns=["class", "recall", "precision"]).to_csv(tmp, index=False, float_format="%.4f")
    plot_pr_curves(m["pr"], out / "pr_curve.png")
    plot_per_class_ap(m["per_class"], out / "per_class_ap.png")
    if samples:
        with atomic_path(out / "samples") as tmp:
            _draw_samples(dataset, table, detections, names, tmp, score_threshold, samples)
    elif (out / "samples").exists():
        shutil.rmtree(out / "samples")
    metrics = {
        "map": round(m["map"], 4),
        "map50": round(m["map50"], 4),
        "map75": round(m["map75"], 4),
        "images": counts["images"],
        "boxes": counts["boxes"],
        "model": meta["model_name"],
        "epoch": meta["epoch"],
        "per_class": {n: {k: (None if v is None else round(v, 4)) for k, v in d.items()} for n, d in m["per_class"].items()},
    }
    write_json(metrics_path, metrics)
    log.info("evaluate: mAP %.3f  mAP@0.5 %.3f on %d images (%s)", m["map"], m["map50"], counts["images"], data.valid)
    return metrics
