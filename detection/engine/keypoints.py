"""Keypoint AP with pycocotools (``COCOeval(iouType="keypoints")``): OKS-based AP, AP@0.5, AP@0.75.

The ground truth is the table's keypoints (``to_coco_dict``); each box's ``area`` is its box area
(COCO uses the segmentation area, which boxes do not have), so OKS is scaled by the box. Sigmas are the
``KeypointSpec``'s: COCO's 17 for COCO person keypoints, else one uniform value
(``detection.data.keypoints.DEFAULT_SIGMA``, or the dataset config's ``keypoint_sigma``). A box without
visible keypoints is ignored (neither a hit nor a miss), as are ``iscrowd`` and ``difficult`` boxes.
Each detection is scored by its box score (as torchvision's references do).
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from detection.data.coco import to_coco_dict
from detection.data.keypoints import KeypointSpec
from detection.engine.evaluate import _quiet_coco, _VocAwareEval
from detection.errors import DetectionError

log = logging.getLogger(__name__)

#: COCOeval's ten keypoint figures (``stats``), by name
STATS = ("map", "map50", "map75", "map_medium", "map_large", "mar", "mar50", "mar75", "mar_medium", "mar_large")


class _KeypointEval(_VocAwareEval):
    """Also ignores ground truth without a labelled keypoint (COCOeval does; the VOC-aware prepare resets it)."""

    def _prepare(self) -> None:
        super()._prepare()
        for gts in self._gts.values():
            for g in gts:
                g["ignore"] = int(g["ignore"] or g.get("num_keypoints", 0) == 0)


def _ground_truth(table: pd.DataFrame, class_names: Sequence[str], spec: KeypointSpec) -> dict[str, Any]:
    gt = to_coco_dict(table, class_names, keypoint_names=spec.names)
    k = len(spec)
    for ann in gt["annotations"]:
        if "keypoints" not in ann:
            ann["keypoints"], ann["num_keypoints"] = [0.0] * 3 * k, 0
        elif len(ann["keypoints"]) != 3 * k:
            image = gt["images"][ann["image_id"] - 1]["file_name"]
            raise DetectionError(f"{image}: a box has {len(ann['keypoints']) // 3} keypoints, the keypoint model has {k}", hint="evaluate on a data set with the model's keypoints")
    for cat in gt["categories"]:
        cat.setdefault("keypoints", list(spec.names))
        cat.setdefault("skeleton", [])
    return gt


def keypoint_metrics(table: pd.DataFrame, class_names: Sequence[str], detections: list[dict[str, np.ndarray]], spec: KeypointSpec) -> dict[str, Any]:
    """Keypoint AP of ``detections`` (one per image of ``table``, in first-seen order, each with
    ``keypoints`` (N, K, 3)): the figures of ``STATS`` (None for a size range without boxes), ``num_keypoints``, ``sigmas`` and ``instances``
    (boxes with labelled keypoints)."""
    gt = _ground_truth(table, class_names, spec)
    image_ids = [im["id"] for im in gt["images"]]
    if len(image_ids) != len(detections):
        raise ValueError(f"{len(detections)} detections for {len(image_ids)} images")
    counted = sum(1 for a in gt["annotations"] if a["num_keypoints"] > 0 and not (a["iscrowd"] or a["difficult"]))
    result: dict[str, Any] = {s: 0.0 for s in STATS} | {"num_keypoints": len(spec), "sigmas": [round(s, 4) for s in spec.sigmas], "instances": counted}
    if not counted:
        log.warning("the evaluation set has no box with labelled keypoints: keypoint metrics are zero")
        return result
    results = []
    for image_id, det in zip(image_ids, detections, strict=True):
        points = np.asarray(det["keypoints"], np.float64).reshape(len(det["scores"]), len(spec), 3)
        for kp, score, label in zip(points, det["scores"], det["labels"], strict=True):
            flat = np.column_stack([kp[:, 0], kp[:, 1], np.ones(len(kp))]).ravel()
            results.append({"image_id": image_id, "category_id": int(label), "keypoints": flat.tolist(), "score": float(score)})
    if not results:
        log.warning("the model made no detection on %d images: keypoint metrics are zero", len(image_ids))
        return result
    coco_gt = _quiet_coco(gt)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(results)
        ev = _KeypointEval(coco_gt, coco_dt, iouType="keypoints")
        ev.params.imgIds = image_ids
        ev.params.kpt_oks_sigmas = np.asarray(spec.sigmas, np.float64)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return result | {s: None if v < 0 else float(v) for s, v in zip(STATS, ev.stats, strict=True)}  # -1: no box of that size
