"""Matching detections to ground truth at one IoU: per-class P/R/F1 and TP/FP/FN at a score threshold,
precision-recall and F1-vs-threshold curves, and a confusion matrix with a background row and column.

Ground truth flagged ``difficult`` (VOC) or ``iscrowd`` (COCO) is ignored: a detection on it is
neither a true nor a false positive, and it is never a miss (as the VOC protocol and COCOeval do).
Matching is greedy in score order (as COCOeval), so the result at any threshold is the prefix of
one matching and the curves come from one pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torchvision.ops import box_iou

from detection.data.table import BOX_COLUMNS, boxes_of, label_ids

THRESHOLDS = np.round(np.linspace(0, 1, 101), 2)


def _gt(table: pd.DataFrame, class_names: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per image (in table order): boxes, label ids, ignore flags."""
    ids = label_ids(class_names)
    out = []
    for group in boxes_of(table).values():
        boxes = group[BOX_COLUMNS].to_numpy(np.float32).reshape(-1, 4)
        labels = np.array([ids[n] for n in group["label"]], np.int64)
        ignore = (group["difficult"].to_numpy(int) > 0) | (group["iscrowd"].to_numpy(int) > 0)
        out.append((boxes, labels, ignore))
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)), np.float32)
    return box_iou(torch.from_numpy(np.asarray(a, np.float32)), torch.from_numpy(np.asarray(b, np.float32))).numpy()


def match(table: pd.DataFrame, class_names: Sequence[str], detections: list[dict[str, np.ndarray]], iou: float = 0.5) -> dict[str, dict[str, Any]]:
    """Per class: ``scores`` and ``tp`` (bool) of its counted detections, and ``n_gt`` (not ignored)."""
    gts = _gt(table, class_names)
    if len(gts) != len(detections):
        raise ValueError(f"{len(detections)} detections for {len(gts)} images")
    acc = {c: {"scores": [], "tp": [], "n_gt": 0} for c in range(1, len(class_names) + 1)}
    for (g_boxes, g_labels, g_ignore), det in zip(gts, detections, strict=True):
        for c, a in acc.items():
            gi = g_labels == c
            gb, gign = g_boxes[gi], g_ignore[gi]
            a["n_gt"] += int((~gign).sum())
            di = det["labels"] == c
            d_boxes, d_scores = det["boxes"][di], det["scores"][di]
            order = np.argsort(-d_scores, kind="stable")
            ious = _iou(d_boxes[order], gb)
            taken = np.zeros(len(gb), bool)
            for row, k in zip(ious, order, strict=True):
                free = np.where(~taken & ~gign & (row >= iou), row, -1)
                j = int(free.argmax()) if len(free) else -1
                if j >= 0 and free[j] >= 0:
                    taken[j] = True
                    a["scores"].append(float(d_scores[k]))
                    a["tp"].append(True)
                elif len(row) and (np.where(gign, row, -1) >= iou).any():
                    continue  # on a difficult / crowd box: not counted
                else:
                    a["scores"].append(float(d_scores[k]))
                    a["tp"].append(False)
    return {
        name: {"scores": np.array(acc[c]["scores"], np.float64), "tp": np.array(acc[c]["tp"], bool), "n_gt": acc[c]["n_gt"]}
        for c, name in enumerate(class_names, 1)
    }


def counts_at(m: dict[str, Any], threshold: float) -> dict[str, float]:
    keep = m["scores"] >= threshold
    tp = int(m["tp"][keep].sum())
    fp = int(keep.sum()) - tp
    fn = m["n_gt"] - tp
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / m["n_gt"] if m["n_gt"] else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall, "f1": f1}


def threshold_curves(matches: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Precision, recall and F1 per class and score threshold (0, 0.01 .. 1), plus an ``all`` class."""
    rows = []
    pooled = {
        "scores": np.concatenate([m["scores"] for m in matches.values()] or [np.zeros(0)]),
        "tp": np.concatenate([m["tp"] for m in matches.values()] or [np.zeros(0, bool)]),
        "n_gt": sum(m["n_gt"] for m in matches.values()),
    }
    for name, m in {**matches, "all": pooled}.items():
        if not m["n_gt"]:
            continue
        for t in THRESHOLDS:
            c = counts_at(m, float(t))
            rows.append({"class": name, "threshold": float(t), "precision": c["precision"], "recall": c["recall"], "f1": c["f1"]})
    return pd.DataFrame(rows, columns=["class", "threshold", "precision", "recall", "f1"])


def confusion_matrix(table: pd.DataFrame, class_names: Sequence[str], detections: list[dict[str, np.ndarray]], threshold: float, iou: float = 0.5) -> np.ndarray:
    """``(N+1, N+1)`` counts, rows = ground-truth class, columns = predicted class, index N = background.

    Class-agnostic one-to-one matching by IoU (highest pairs first) of detections >= ``threshold``;
    an unmatched box is a miss (background column), an unmatched detection a false alarm (background row).
    """
    n = len(class_names)
    cm = np.zeros((n + 1, n + 1), np.int64)
    for (g_boxes, g_labels, g_ignore), det in zip(_gt(table, class_names), detections, strict=True):
        keep = det["scores"] >= threshold
        d_boxes, d_labels = det["boxes"][keep], det["labels"][keep]
        ious = _iou(g_boxes, d_boxes)
        gt_done, det_done = np.zeros(len(g_boxes), bool), np.zeros(len(d_boxes), bool)
        for flat in np.argsort(-ious, axis=None, kind="stable"):
            gi, di = np.unravel_index(flat, ious.shape)
            if ious[gi, di] < iou:
                break
            if gt_done[gi] or det_done[di]:
                continue
            gt_done[gi] = det_done[di] = True
            if not g_ignore[gi]:
                cm[g_labels[gi] - 1, d_labels[di] - 1] += 1
        for gi in np.where(~gt_done & ~g_ignore)[0]:
            cm[g_labels[gi] - 1, n] += 1
        for di in np.where(~det_done)[0]:
            cm[n, d_labels[di] - 1] += 1
    return cm
