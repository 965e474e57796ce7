"""Do two runtimes (torch and onnxruntime) return the same detections? Matched by label and IoU, not by rank.

Two runtimes compute the same graph with different float kernels, so scores that are equal in exact
arithmetic differ by ~1e-8 and detections with near-equal scores can come back in another order, or
the detection cap (``detections_per_img``) or the score threshold can cut a different one of two tied
detections. Comparing by rank then reports a difference that is none. So:

1. Per label, detections are paired by an optimal assignment on ``1 - IoU``
   (``scipy.optimize.linear_sum_assignment``); only pairs with IoU >= ``iou_min`` count as matched.
2. An unmatched detection is *borderline* when its score is within ``score_atol`` of the other side's
   lowest score while the other side is full (it holds ``cap`` detections, the model's
   ``detections_per_img``: the cap cut there), or of the model's own score threshold (it fell on the
   other side of it): its absence on the other side is explained by a tie, not by a different model. A pair
   outside the tolerances whose two detections are both borderline is two such ties (two different,
   overlapping proposals with equal scores, each kept by one runtime), so it is unpaired.
3. A pair outside the box tolerance whose scores are equal to ``TIE_ATOL`` (equal in exact arithmetic)
   is an NMS swap: of two overlapping proposals with the same score, each runtime kept another one
   (seen on untrained MobileNet Faster R-CNNs, whose heads give many boxes one score). Such swaps are
   counted and tolerated up to ``max_swaps`` per image (default 1, or 2% of the matched pairs), since
   a different model (shifted boxes) moves many pairs at once, not one.
4. Parity holds when nothing is unmatched but borderline detections, and over the matched pairs the
   largest box-corner difference is <= ``box_atol`` pixels and the largest score difference is
   <= ``score_atol``.
5. A keypoint model's matched pairs also compare their keypoints: the keypoint score (the heatmap's
   peak) within ``score_atol``, the position within ``keypoint_atol`` pixels. A position is the argmax
   of the heatmap upsampled to the box, so it moves in steps of about one pixel, and two runtimes can
   pick neighbouring cells of a flat peak: ``keypoint_atol`` defaults to 1.5 px (one step, with
   rounding), and the report gives the largest difference.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from detection.inference.predictor import Detections, Predictor

log = logging.getLogger(__name__)

TIE_ATOL = 1e-6  # scores closer than this are one score computed twice (runtimes differ by ~1e-8)
KEYPOINT_ATOL = 1.5  # pixels: a keypoint is a heatmap argmax, which moves in steps of about one pixel (5. above)


@dataclass(frozen=True)
class Match:
    """How detections ``a`` (torch) and ``b`` (onnx) of one image correspond."""

    matched: int
    unmatched_a: int  # unmatched and not borderline: a real difference
    unmatched_b: int
    borderline_a: int  # unmatched, but at the cap or the score threshold (a tie)
    borderline_b: int
    swaps: int  # pairs outside the box tolerance with tied scores (NMS kept another of two equal proposals)
    max_box_diff: float  # pixels, over matched pairs (0 when none)
    max_score_diff: float
    ok: bool  # nothing unmatched but borderline ones, diffs within the tolerances
    max_keypoint_diff: float = 0.0  # pixels, over the keypoints of matched pairs (keypoint models)
    max_keypoint_score_diff: float = 0.0


def box_iou(a: np.ndarray, b: np.ndarray, same_atol: float = 1e-3) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of ``x1, y1, x2, y2`` boxes, in float64. Two boxes without area
    (IoU undefined) whose corners agree to ``same_atol`` pixels count as IoU 1."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(axis=1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    same = np.abs(a[:, None, :] - b[None, :, :]).max(axis=2, initial=0.0) <= same_atol  # equal boxes, zero-area ones too
    return np.where(union > 0, inter / np.where(union > 0, union, 1), same.astype(np.float64))


def _pairs(a: Detections, b: Detections, iou_min: float, same_atol: float = 1e-3) -> list[tuple[int, int]]:
    """Matched index pairs: an optimal assignment on 1 - IoU within each label, IoU >= ``iou_min``."""
    pairs = []
    for label in np.intersect1d(a.labels, b.labels):
        ia, ib = np.flatnonzero(a.labels == label), np.flatnonzero(b.labels == label)
        iou = box_iou(a.boxes[ia], b.boxes[ib], same_atol)
        rows, cols = linear_sum_assignment(1.0 - iou)
        pairs += [(int(ia[r]), int(ib[c])) for r, c in zip(rows, cols, strict=True) if iou[r, c] >= iou_min]
    return pairs


def _borderline(scores: np.ndarray, other: np.ndarray, floor: float | None, cap: int | None, score_atol: float) -> np.ndarray:
    """Which ``scores`` sit at a cut of the other side: its lowest score when it is full (``cap``
    detections), or the score threshold ``floor``."""
    near = np.zeros(len(scores), bool)
    if cap is not None and len(other) >= cap > 0:
        near |= np.abs(scores - other.min()) <= score_atol
    if floor is not None:
        near |= np.abs(scores - floor) <= score_atol
    return near


def match_detections(
    a: Detections,
    b: Detections,
    *,
    box_atol: float = 0.05,
    score_atol: float = 1e-3,
    iou_min: float = 0.5,
    score_floor: float | None = None,
    cap: int | None = None,
    max_swaps: int | None = None,
    keypoint_atol: float = KEYPOINT_ATOL,
) -> Match:
    """Match ``a`` with ``b`` by label and IoU and judge parity (see the module docstring)."""
    pairs = np.array(_pairs(a, b, iou_min, box_atol), int).reshape(-1, 2)  # boxes clipped flat at the border: by corners
    box_d = np.abs(a.boxes[pairs[:, 0]] - b.boxes[pairs[:, 1]]).max(axis=1, initial=0.0)
    score_d = np.abs(a.scores[pairs[:, 0]] - b.scores[pairs[:, 1]])
    loose = (box_d > box_atol) | (score_d > score_atol)
    tie = _borderline(a.scores[pairs[:, 0]], b.scores, score_floor, cap, score_atol) & _borderline(b.scores[pairs[:, 1]], a.scores, score_floor, cap, score_atol)
    keep = ~(loose & tie)
    pairs, box_d, score_d = pairs[keep], box_d[keep], score_d[keep]
    swapped = (box_d > box_atol) & (score_d <= TIE_ATOL)
    budget = max(1, int(0.02 * len(pairs))) if max_swaps is None else max_swaps
    swaps = int(swapped.sum())
    if 0 < swaps <= budget:  # within the budget: ties, left out of the diffs; above it: a real difference
        box_d, score_d, pairs_kept = box_d[~swapped], score_d[~swapped], pairs[~swapped]
    else:
        pairs_kept = pairs
    kp_diff, kp_score_diff = _keypoint_diffs(a, b, pairs_kept)
    rest_a = np.setdiff1d(np.arange(len(a)), pairs[:, 0])
    rest_b = np.setdiff1d(np.arange(len(b)), pairs[:, 1])
    edge_a = _borderline(a.scores[rest_a], b.scores, score_floor, cap, score_atol)
    edge_b = _borderline(b.scores[rest_b], a.scores, score_floor, cap, score_atol)
    box_diff = float(box_d.max(initial=0.0))
    score_diff = float(score_d.max(initial=0.0))
    unmatched_a, unmatched_b = int((~edge_a).sum()), int((~edge_b).sum())
    kp_ok = kp_diff <= keypoint_atol and kp_score_diff <= score_atol
    return Match(
        matched=len(pairs),
        unmatched_a=unmatched_a,
        unmatched_b=unmatched_b,
        borderline_a=int(edge_a.sum()),
        borderline_b=int(edge_b.sum()),
        swaps=swaps,
        max_box_diff=box_diff,
        max_score_diff=score_diff,
        ok=unmatched_a == 0 and unmatched_b == 0 and box_diff <= box_atol and score_diff <= score_atol and kp_ok,
        max_keypoint_diff=kp_diff,
        max_keypoint_score_diff=kp_score_diff,
    )


def _keypoint_diffs(a: Detections, b: Detections, pairs: np.ndarray) -> tuple[float, float]:
    """The largest keypoint position (pixels) and keypoint score differences over the matched ``pairs``
    (0, 0 when the detections carry no keypoints)."""
    if a.keypoints is None or b.keypoints is None or not len(pairs):
        return 0.0, 0.0
    ka, kb = a.keypoints[pairs[:, 0]].astype(np.float64), b.keypoints[pairs[:, 1]].astype(np.float64)
    return float(np.abs(ka[..., :2] - kb[..., :2]).max(initial=0.0)), float(np.abs(ka[..., 2] - kb[..., 2]).max(initial=0.0))


def _timed_predict(predictor: Predictor, image: np.ndarray) -> tuple[Detections, float]:
    start = time.perf_counter()
    det = predictor.predict(image, threshold=0.0)
    return det, (time.perf_counter() - start) * 1000


def check_parity(
    torch_pred: Predictor,
    onnx_pred: Predictor,
    images: dict[Path, np.ndarray],
    box_atol: float,
    score_atol: float,
    *,
    iou_min: float = 0.5,
    score_floor: float | None = None,
    cap: int | None = None,
    keypoint_atol: float = KEYPOINT_ATOL,
) -> list[dict[str, Any]]:
    """Run both predictors on each RGB image (threshold 0: every detection the graph returns); one
    record per image: counts, the match, max diffs, timings and ``ok``."""
    rows = []
    for path, image in images.items():
        if not rows:  # warm-up, so that the timings of the first image are not of allocation
            _timed_predict(torch_pred, image)
            _timed_predict(onnx_pred, image)
        t_det, t_ms = _timed_predict(torch_pred, image)
        o_det, o_ms = _timed_predict(onnx_pred, image)
        m = match_detections(t_det, o_det, box_atol=box_atol, score_atol=score_atol, iou_min=iou_min, score_floor=score_floor, cap=cap, keypoint_atol=keypoint_atol)
        fields = {k[:-2] + ("_torch" if k.endswith("_a") else "_onnx"): v for k, v in asdict(m).items() if k.endswith(("_a", "_b"))}
        rows.append(
            {
                "image": str(path),
                "width": int(image.shape[1]),
                "height": int(image.shape[0]),
                "torch_detections": len(t_det),
                "onnx_detections": len(o_det),
                "matched": m.matched,
                "nms_swaps": m.swaps,
                **fields,
                "max_box_diff_px": m.max_box_diff,
                "max_score_diff": m.max_score_diff,
                **({"max_keypoint_diff_px": m.max_keypoint_diff, "max_keypoint_score_diff": m.max_keypoint_score_diff} if t_det.keypoints is not None else {}),
                "torch_ms": round(t_ms, 2),
                "onnx_ms": round(o_ms, 2),
                "ok": m.ok,
            }
        )
        log.info(
            "parity %s: %d torch / %d onnx detections, %d matched (%d NMS swaps), unmatched %d/%d (+%d/%d at a cut), box diff %.2e px, score diff %.2e",
            path.name, len(t_det), len(o_det), m.matched, m.swaps, m.unmatched_a, m.unmatched_b, m.borderline_a, m.borderline_b,
            m.max_box_diff, m.max_score_diff,
        )  # fmt: skip
    return rows


def describe_failures(rows: list[dict[str, Any]], most: int = 3) -> str:
    """One clause per failing image (the first ``most``), for the error message."""
    bad = [r for r in rows if not r["ok"]][:most]
    return "; ".join(
        f"{Path(r['image']).name}: {r['torch_detections']} torch vs {r['onnx_detections']} onnx detections, "
        f"{r['matched']} matched, unmatched {r['unmatched_torch']} torch / {r['unmatched_onnx']} onnx, "
        f"box diff {r['max_box_diff_px']:.3g} px, score diff {r['max_score_diff']:.3g}"
        + (f", keypoint diff {r['max_keypoint_diff_px']:.3g} px, keypoint score diff {r['max_keypoint_score_diff']:.3g}" if "max_keypoint_diff_px" in r else "")
        for r in bad
    )
