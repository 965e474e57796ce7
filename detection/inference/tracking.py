"""Multi-object tracking: persistent track IDs over a video's detections, with ByteTrack.

The tracker is ``supervision``'s ``ByteTrack`` (supervision 0.30.x, part of the default install; it
declares no OpenCV dependency, so ``opencv-python-headless`` stays the one OpenCV distribution and
``pip check`` stays clean). ByteTrack matches detections to Kalman-predicted tracks by IoU in two
passes (confident detections first, then the low-score ones), so a briefly occluded or low-scored
object keeps its ID. supervision 0.31 removed it (and 0.30 warns that it is deprecated; the warning is
silenced here), so the lock keeps supervision < 0.31; Roboflow's ``trackers`` package is its successor
but declares the non-headless ``opencv-python``.

``Tracker.update(det, frame)`` returns one track id per detection (-1 for a detection no track took,
e.g. below ``track_activation_threshold`` and matching no track), and keeps, per track, what
``tracks.csv`` reports: class (its most frequent label), first and last frame, frames seen, mean score.
"""

from __future__ import annotations

import csv
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from detection.inference.predictor import Detections
from detection.io import atomic_path

TRACK_COLUMNS = ("track_id", "label", "first_frame", "last_frame", "frames_seen", "mean_score")


@dataclass
class _Track:
    first: int
    last: int
    seen: int = 0
    score_sum: float = 0.0
    labels: Counter[str] = field(default_factory=Counter)


class Tracker:
    """ByteTrack over one video; ``fps`` scales how long (``lost_track_buffer`` frames at 30 fps) a lost track is kept."""

    def __init__(self, fps: float = 30.0, *, track_activation_threshold: float = 0.25, lost_track_buffer: int = 30, minimum_matching_threshold: float = 0.8) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "ByteTrack was deprecated since v0.28.0"
            import supervision as sv

            self._sv = sv
            self._bt = sv.ByteTrack(
                track_activation_threshold=track_activation_threshold,
                lost_track_buffer=lost_track_buffer,
                minimum_matching_threshold=minimum_matching_threshold,
                frame_rate=max(1.0, float(fps)),
            )
        self.tracks: dict[int, _Track] = {}

    def update(self, det: Detections, frame: int) -> np.ndarray:
        """Track ids (int64, -1 when untracked) for ``det``, the detections of frame ``frame``."""
        ids = np.full(len(det), -1, np.int64)
        sv_det = self._sv.Detections(
            xyxy=det.boxes.astype(np.float32).reshape(-1, 4),
            confidence=det.scores.astype(np.float32),
            class_id=det.labels.astype(int),
        )
        tracked = self._bt.update_with_detections(sv_det)
        if len(tracked) and len(det):
            # ByteTrack returns a subset of the input boxes with their ids: map them back by IoU.
            iou = self._sv.box_iou_batch(tracked.xyxy, det.boxes.astype(np.float32))
            for row, track_id in enumerate(tracked.tracker_id):
                col = int(iou[row].argmax())
                if iou[row, col] > 0.99 and ids[col] < 0:
                    ids[col] = int(track_id)
        for i in np.flatnonzero(ids >= 0):
            t = self.tracks.setdefault(int(ids[i]), _Track(first=frame, last=frame))
            t.last, t.seen, t.score_sum = frame, t.seen + 1, t.score_sum + float(det.scores[i])
            t.labels[det.names[i]] += 1
        return ids

    def rows(self) -> list[dict[str, object]]:
        """One row per track, by track id (the columns of ``tracks.csv``)."""
        return [
            {
                "track_id": tid,
                "label": t.labels.most_common(1)[0][0],
                "first_frame": t.first,
                "last_frame": t.last,
                "frames_seen": t.seen,
                "mean_score": round(t.score_sum / t.seen, 4),
            }
            for tid, t in sorted(self.tracks.items())
        ]


def write_tracks_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    """``tracks.csv`` (header only when nothing was tracked), atomically."""
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=TRACK_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return Path(path)
