"""Draw detections on an image: one box and a ``"name 0.87"`` caption per detection (``"name"`` for ground
truth), keypoints as dots; ``write_image`` writes the result atomically.

Written for OpenCV 5, which is stricter than 4.x: its drawing functions accept only 8-bit images
(``putText`` on a float image fails an assertion), Python ``int`` coordinates (floats are rejected)
and colours made of Python numbers (numpy scalars are rejected). Everything passed to cv2 here is
converted accordingly; a float image in [0, 1] or [0, 255] and a grey image are accepted and drawn
on as uint8 BGR.
"""

from __future__ import annotations

import colorsys
import zlib
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from detection.data.images import display_path
from detection.errors import DetectionError
from detection.io import atomic_path

FONT = cv2.FONT_HERSHEY_SIMPLEX

Color = tuple[int, int, int]


def class_color(name: str) -> Color:
    """A stable, saturated BGR colour for a class name (same name, same colour, in every process)."""
    hue = (zlib.crc32(name.encode("utf-8")) % 360) / 360.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def _text_color(bg: Color) -> Color:
    """Black or white, whichever reads better on ``bg`` (BGR)."""
    b, g, r = bg
    return (0, 0, 0) if 0.114 * b + 0.587 * g + 0.299 * r > 140 else (255, 255, 255)


def _as_bgr_uint8(image: np.ndarray) -> np.ndarray:
    """A contiguous uint8 HxWx3 copy of ``image`` (uint8 or float, grey or BGR)."""
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an HxW, HxWx1, HxWx3 or HxWx4 image, got shape {img.shape}")
    if img.dtype != np.uint8:
        img = img.astype(np.float32)
        if img.size and float(np.nanmax(img)) <= 1.0:
            img = img * 255.0
        img = np.nan_to_num(img).clip(0, 255).round().astype(np.uint8)
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    elif img.shape[2] == 4:
        img = img[:, :, :3]
    return np.ascontiguousarray(img).copy()


def draw_detections(
    image_bgr: np.ndarray,
    boxes: np.ndarray | Sequence[Sequence[float]],
    labels: Sequence[str],
    scores: np.ndarray | Sequence[float] | None,
    track_ids: np.ndarray | Sequence[int] | None = None,
    keypoints: np.ndarray | Sequence[Sequence[Sequence[float]]] | None = None,
) -> np.ndarray:
    """Return a copy of ``image_bgr`` with each box ``(x1, y1, x2, y2)`` in pixels and its caption, and
    with ``keypoints`` (one ``(K, 2|3)`` set per box, ``draw_keypoints``) when given.

    ``labels`` are class names; ``scores`` None draws ground truth (captions without a score); the colour of a box follows its name, or its track id when
    ``track_ids`` are given (captions ``"#7 person 0.91"``; an id < 0 means untracked). Line width and font size
    follow the image size, so captions stay legible on a 160x96 image and on a 4K frame.
    """
    out = _as_bgr_uint8(image_bgr)
    boxes_arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    truth = scores is None
    scores_arr = np.ones(len(boxes_arr)) if truth else np.asarray(scores, dtype=np.float64).reshape(-1)
    if not len(boxes_arr) == len(labels) == len(scores_arr):
        raise ValueError(f"boxes ({len(boxes_arr)}), labels ({len(labels)}) and scores ({len(scores_arr)}) differ in length")
    ids = None if track_ids is None else np.asarray(track_ids, dtype=np.int64).reshape(-1)
    if ids is not None and len(ids) != len(boxes_arr):
        raise ValueError(f"track_ids ({len(ids)}) and boxes ({len(boxes_arr)}) differ in length")
    h, w = out.shape[:2]
    side = min(h, w)
    thickness = max(1, round(side / 250))
    font_scale = float(np.clip(side / 700, 0.3, 1.2))
    font_thick = max(1, round(font_scale * 1.5))
    # Draw low scores first so that the most confident boxes and captions end up on top.
    for i in np.argsort(scores_arr, kind="stable"):
        box = boxes_arr[i]
        if not np.all(np.isfinite(box)):
            continue
        x1, x2 = (int(round(v)) for v in np.clip(sorted(box[[0, 2]]), 0, w - 1))
        y1, y2 = (int(round(v)) for v in np.clip(sorted(box[[1, 3]]), 0, h - 1))
        tracked = ids is not None and ids[i] >= 0
        color = class_color(f"track {ids[i]}" if tracked else str(labels[i]))
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness, cv2.LINE_8)  # axis-aligned: no anti-aliasing needed
        text = f"{labels[i]}" if truth else f"{labels[i]} {scores_arr[i]:.2f}"
        text = f"#{ids[i]} {text}" if tracked else text
        _caption(out, text, x1, y1, y2, color, font_scale, font_thick)
    return out if keypoints is None else draw_keypoints(out, keypoints)


def _caption(img: np.ndarray, text: str, x1: int, y1: int, y2: int, color: Color, scale: float, thick: int) -> None:
    """A filled label above the box (inside its top edge when there is no room above), kept in the image."""
    h, w = img.shape[:2]
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thick)
    pad = max(1, thick)
    box_h = th + base + 2 * pad
    top = y1 - box_h if y1 - box_h >= 0 else min(y1, max(0, y2 - box_h), h - box_h)
    top = max(0, top)
    left = int(np.clip(x1, 0, max(0, w - tw - 2 * pad)))
    cv2.rectangle(img, (left, top), (left + tw + 2 * pad, top + box_h), color, -1)
    cv2.putText(img, text, (left + pad, top + pad + th), FONT, scale, _text_color(color), thick, cv2.LINE_AA)


def write_image(path: Path, image_bgr: np.ndarray) -> Path:
    """Write an image atomically (format from the suffix); a DetectionError naming the file if OpenCV cannot."""
    path = Path(path)
    try:
        ok, data = cv2.imencode(path.suffix, image_bgr)
    except cv2.error:  # OpenCV 5 raises on an unknown suffix
        ok = False
    if not ok:
        raise DetectionError(f"cannot write image {display_path(path)}", hint="check the output suffix (.jpg, .png)")
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.tobytes())  # bytes: no cv2 call on a path that may not be UTF-8
    return path


def draw_keypoints(image_bgr: np.ndarray, keypoints: np.ndarray | Sequence[Sequence[Sequence[float]]]) -> np.ndarray:
    """Return a copy of ``image_bgr`` with a dot per keypoint: ``keypoints`` is ``(N, K, 2)`` or
    ``(N, K, 3)`` (``x, y, v``; points with ``v`` = 0, absent, are not drawn). Keypoint ``k`` has one
    colour in every box (so ``left_eye`` and ``right_eye`` are told apart), ringed in black."""
    out = _as_bgr_uint8(image_bgr)
    points = np.asarray(keypoints, dtype=np.float64)
    if points.size == 0:
        return out
    if points.ndim != 3 or points.shape[2] not in (2, 3):
        raise ValueError(f"expected keypoints of shape (N, K, 2) or (N, K, 3), got {points.shape}")
    h, w = out.shape[:2]
    radius = max(2, round(min(h, w) / 120))
    for box in points:
        for k, point in enumerate(box):
            if (len(point) == 3 and point[2] <= 0) or not np.all(np.isfinite(point[:2])):
                continue
            centre = (int(round(float(np.clip(point[0], 0, w - 1)))), int(round(float(np.clip(point[1], 0, h - 1)))))
            cv2.circle(out, centre, radius + 1, (0, 0, 0), -1, cv2.LINE_AA)
            cv2.circle(out, centre, radius, class_color(f"keypoint {k}"), -1, cv2.LINE_AA)
    return out
