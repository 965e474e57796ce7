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
from detection.data.keypoints import KeypointSpec, keypoint_array, oks_sigmas
from detection.data.table import BOX_COLUMNS, boxes_of, images, read_table, summary
from detection.engine.checkpoint import load_model
from detection.engine.data import DetectionDataset, check_images_exist, make_loader
from detection.engine.device import resolve_device
from detection.engine.metrics import confusion_matrix, counts_at, match, threshold_curves
from detection.io import atomic_path, write_json
from detection.viz.draw import draw_detections, write_image
from detection.viz.plots import plot_confusion_matrix, plot_per_class_ap, plot_pr_curves, plot_threshold_curves

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


class _VocAwareEval(COCOeval):
    """COCOeval that also ignores ``difficult`` ground truth (VOC protocol); ``iscrowd`` is COCO's own."""

    def _prepare(self) -> None:
        super()._prepare()
        for gts in self._gts.values():
            for g in gts:
                g["ignore"] = int(bool(g.get("iscrowd", 0)) or bool(g.get("difficult", 0)))


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
    if not any(not (a["iscrowd"] or a["difficult"]) for a in gt["annotations"]):
        log.warning("the evaluation set has no boxes: metrics are zero")
        return empty
    coco_gt = _quiet_coco(gt)
    if not results:
        log.warning("the model made no detection on %d images: metrics are zero", len(image_ids))
        return {**empty, "per_class": {n: {"ap": 0.0, "ap50": 0.0} for n in class_names}}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(results)
        ev = _VocAwareEval(coco_gt, coco_dt, iouType="bbox")
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
    """Ground truth (left) beside the predictions >= ``threshold`` (right), one JPEG per image."""
    out.mkdir(parents=True, exist_ok=True)
    groups = boxes_of(table)
    for name, det in list(zip(images(table)["image"], detections, strict=True))[:count]:
        keep = det["scores"] >= threshold
        bgr = cv2.cvtColor(dataset.read(name), cv2.COLOR_RGB2BGR)
        g = groups[name]
        points = det.get("keypoints")
        truth = draw_detections(bgr, g[BOX_COLUMNS].to_numpy(np.float32).reshape(-1, 4), list(g["label"]), None,
                                keypoints=None if points is None else keypoint_array(g, points.shape[1]))  # fmt: skip
        drawn = draw_detections(bgr, det["boxes"][keep], [names[i - 1] for i in det["labels"][keep]], det["scores"][keep],
                                keypoints=None if points is None else points[keep])  # fmt: skip
        gap = np.full((bgr.shape[0], 6, 3), 255, np.uint8)
        write_image(out / (Path(name).stem + ".jpg"), np.hstack([truth, gap, drawn]))


def _csv(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.4f")


def split_reports(weights: Path, data: DatasetConfig, out: Path, score_threshold: float = 0.5, samples: int = 0, device: str = "auto") -> dict[str, Any]:
    """Every report of a checkpoint on the split table ``data.valid``, written under ``out``.

    ``per_class.csv`` (AP, AP@0.5, and at ``score_threshold``: precision, recall, F1, TP/FP/FN),
    ``pr_curve.csv|png`` (COCO interpolated precision at IoU 0.5), ``f1_curve.csv|png`` (precision,
    recall and F1 against the score threshold), ``confusion_matrix.csv|png`` (with a background row
    and column), ``per_class_ap.png`` and ``samples/`` (ground truth beside the predictions).
    For a keypoint model, ``keypoints`` holds keypoint AP (``detection.engine.keypoints``; the sigmas
    of the checkpoint, or of the dataset config's ``keypoint_sigma`` when it sets them).
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
    matches = match(table, names, detections)
    counts = summary(table)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for n, v in m["per_class"].items():
        rows.append({"class": n, "ap": v["ap"], "ap50": v["ap50"], **counts_at(matches[n], score_threshold), "gt_boxes": counts["per_class"].get(n, 0)})
    _csv(pd.DataFrame(rows), out / "per_class.csv")
    pr_rows = [{"class": n, "recall": i / 100, "precision": p} for n, ps in m["pr"].items() for i, p in enumerate(ps)]
    _csv(pd.DataFrame(pr_rows, columns=["class", "recall", "precision"]), out / "pr_curve.csv")
    curves = threshold_curves(matches)
    _csv(curves, out / "f1_curve.csv")
    cm = confusion_matrix(table, names, detections, score_threshold)
    labels = [*names, "background"]
    _csv(pd.DataFrame(cm, index=pd.Index(labels, name="truth"), columns=labels).reset_index(), out / "confusion_matrix.csv")
    plot_pr_curves(m["pr"], out / "pr_curve.png")
    plot_per_class_ap(m["per_class"], out / "per_class_ap.png")
    plot_threshold_curves(curves, out / "f1_curve.png")
    plot_confusion_matrix(cm, labels, out / "confusion_matrix.png", score_threshold)
    if samples:
        with atomic_path(out / "samples") as tmp:
            _draw_samples(dataset, table, detections, names, tmp, score_threshold, samples)
    elif (out / "samples").exists():
        shutil.rmtree(out / "samples")
    kp = _keypoint_figures(table, names, detections, meta.get("keypoints"), data)
    every = counts_at({"scores": np.concatenate([x["scores"] for x in matches.values()]), "tp": np.concatenate([x["tp"] for x in matches.values()]), "n_gt": sum(x["n_gt"] for x in matches.values())}, score_threshold)
    return {
        "split": str(data.valid),
        "map": round(m["map"], 4),
        "map50": round(m["map50"], 4),
        "map75": round(m["map75"], 4),
        "precision": round(every["precision"], 4),
        "recall": round(every["recall"], 4),
        "f1": round(every["f1"], 4),
        "score_threshold": score_threshold,
        "images": counts["images"],
        "boxes": counts["boxes"],
        "model": meta["model_name"],
        "epoch": meta["epoch"],
        "per_class": {n: {k: (None if v is None else round(v, 4)) for k, v in d.items()} for n, d in m["per_class"].items()},
        **kp,
    }


def _keypoint_figures(table: pd.DataFrame, names: list[str], detections: list[dict[str, np.ndarray]], saved: dict[str, Any] | None, data: DatasetConfig) -> dict[str, Any]:
    """``{"keypoints": {map, map50, ...}}`` for a keypoint model (``saved``: the checkpoint's keypoints), else ``{}``."""
    if not saved:
        return {}
    from detection.engine.keypoints import keypoint_metrics

    spec = KeypointSpec.from_dict(saved)
    if data.keypoint_sigma is not None:
        spec = KeypointSpec(spec.names, spec.flip, oks_sigmas(data.keypoint_sigma, spec.names))
    k = keypoint_metrics(table, names, detections, spec)
    log.info("keypoint AP %.3f  AP@0.5 %.3f (%d keypoints, %d boxes with keypoints)", k["map"], k["map50"], k["num_keypoints"], k["instances"])
    return {"keypoints": {n: round(v, 4) if isinstance(v, float) else v for n, v in k.items()}}


def evaluate(weights: Path, data: DatasetConfig, out: Path, metrics_path: Path, score_threshold: float = 0.5, samples: int = 4, device: str = "auto") -> dict[str, Any]:
    """The evaluate stage: every report of ``split_reports`` on ``data.valid`` (and on ``data.test`` when
    the dataset config has one, under ``out/test``); ``metrics_path`` holds the figures and says which
    split each comes from (``split``; the test split's under ``test``)."""
    metrics = split_reports(weights, data, out, score_threshold, samples, device)
    test = getattr(data, "test", None)
    if test is not None and Path(test).is_file():
        t = split_reports(weights, data.model_copy(update={"valid": Path(test)}), Path(out) / "test", score_threshold, samples, device)
        metrics["test"] = {k: v for k, v in t.items() if k not in ("model", "epoch")}
        log.info("evaluate: test mAP %.3f  mAP@0.5 %.3f on %d images (%s)", t["map"], t["map50"], t["images"], test)
    write_json(metrics_path, metrics)
    log.info("evaluate: mAP %.3f  mAP@0.5 %.3f on %d images (%s)", metrics["map"], metrics["map50"], metrics["images"], data.valid)
    return metrics
