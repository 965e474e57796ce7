"""Generated videos of coloured squares on known paths, and a 'detector' that finds them by colour.

The detector is a real ``Predictor`` whose backend thresholds each colour channel and returns the
bounding boxes of its connected components (OpenCV), so a test runs the whole video pipeline and
the tracker on detections that follow the ground truth, without training a model.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from detection.inference.predictor import Predictor

COLOURS = ["blue", "green", "red"]  # BGR channel order: label 1 is channel 0 (blue) of the BGR frame


def _bounce(distance: float, span: float) -> float:
    """Position after ``distance`` along a segment of length ``span``, bouncing at both ends."""
    d = distance % (2 * span)
    return d if d <= span else 2 * span - d


def paths(frame: int, width: int, height: int) -> list[tuple[int, tuple[float, float]]]:
    """``(label, (cx, cy))`` of each object at ``frame``: a blue and a green square bouncing left and
    right in opposite directions, so they cross (and touch) on the upper band, a red one on a circle."""
    t, span = frame, width - 24
    return [
        (1, (12 + _bounce(t * 1.5, span), height * 0.3 + 6 * math.sin(t / 15))),
        (2, (width - 12 - _bounce(t * 1.2, span), height * 0.3 + 14 * math.sin(t / 25))),
        (3, (width / 2 + width / 4 * math.cos(t / 20), height * 0.72 + height / 8 * math.sin(t / 20))),
    ]


def make_video(path: Path, frames: int, width: int = 160, height: int = 120, fps: float = 25.0, half: int = 7) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    assert writer.isOpened()
    for f in range(frames):
        img = np.zeros((height, width, 3), np.uint8)
        for label, (cx, cy) in paths(f, width, height):
            colour = [0, 0, 0]
            colour[label - 1] = 255
            cv2.rectangle(img, (int(cx) - half, int(cy) - half), (int(cx) + half, int(cy) + half), tuple(colour), -1)
        writer.write(img)
    writer.release()
    return path


def colour_predictor(min_area: int = 20) -> Predictor:
    """A predictor that 'detects' each saturated colour blob (the model input is RGB CHW in [0, 1])."""

    def run(chw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        boxes, labels, scores = [], [], []
        for label, channel in ((1, 2), (2, 1), (3, 0)):  # blue is RGB channel 2
            others = [c for c in range(3) if c != channel]
            mask = ((chw[channel] > 0.5) & (chw[others[0]] < 0.4) & (chw[others[1]] < 0.4)).astype(np.uint8)
            n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
            for x, y, w, h, area in stats[1:n]:
                if area >= min_area:
                    boxes.append([x, y, x + w, y + h])
                    labels.append(label)
                    scores.append(min(0.99, 0.6 + area / 1000))
        return np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64), np.array(scores, np.float32)

    return Predictor(Path("colour-blobs"), "synthetic", "colour-blobs", list(COLOURS), 160, run)
