"""--track: ByteTrack ids that stay with each object, drawn, in detections.jsonl and in tracks.csv."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from detection.export.parity import box_iou
from detection.inference.predictor import Detections
from detection.inference.tracking import TRACK_COLUMNS, Tracker
from detection.inference.video import infer_video
from tests.conftest import shared_path
from tests.inference.synthetic import COLOURS, colour_predictor, make_video, paths

FRAMES, W, H = 240, 160, 120


def _id_purity(rows: list[dict]) -> dict[int, float]:
    """Per true object: the share of its frames whose matched detection carries its most common track id."""
    ids: dict[int, list[int | None]] = {}
    for row in rows:
        boxes = np.array([d["box"] for d in row["detections"]], np.float64).reshape(-1, 4)
        for obj, (label, (cx, cy)) in enumerate(paths(row["frame"], W, H)):
            truth = np.array([[cx - 7, cy - 7, cx + 8, cy + 8]])
            iou = box_iou(truth, boxes)[0] if len(boxes) else np.zeros(0)
            best = int(iou.argmax()) if len(iou) and iou.max() > 0.5 else None
            ok = best is not None and row["detections"][best]["label"] == COLOURS[label - 1]
            ids.setdefault(obj, []).append(row["detections"][best]["track_id"] if ok else None)
    purity = {}
    for obj, seen in ids.items():
        top, count = Counter(i for i in seen if i is not None).most_common(1)[0]
        purity[obj] = count / len(seen)
    return purity


def test_each_object_keeps_one_id(tmp_path: Path) -> None:
    video = make_video(tmp_path / "moving.mp4", FRAMES, W, H)
    metrics = infer_video(video, "unused", tmp_path / "out", threshold=0.3, track=True, predictor=colour_predictor())
    rows = [json.loads(line) for line in (tmp_path / "out" / "detections.jsonl").read_text().splitlines()]
    assert len(rows) == FRAMES == metrics["frames"]
    purity = _id_purity(rows)
    assert all(p >= 0.95 for p in purity.values()), purity
    tracks = list(csv.DictReader((tmp_path / "out" / "tracks.csv").open()))
    assert tuple(tracks[0]) == TRACK_COLUMNS
    long_tracks = [t for t in tracks if int(t["frames_seen"]) >= 0.95 * FRAMES * 0.9]
    assert sorted(t["label"] for t in long_tracks) == ["blue", "green", "red"]
    for t in long_tracks:
        assert 0 < float(t["mean_score"]) <= 1 and int(t["first_frame"]) <= int(t["last_frame"]) < FRAMES
    assert metrics["tracks"] == len(tracks)


def test_ids_survive_missed_detections_and_stride(tmp_path: Path) -> None:
    video = make_video(tmp_path / "moving.mp4", FRAMES, W, H)
    blobs = colour_predictor()
    calls = {"n": 0}

    def flaky(chw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # every 7th call misses everything
        calls["n"] += 1
        boxes, labels, scores = blobs.run(chw)
        return (boxes[:0], labels[:0], scores[:0]) if calls["n"] % 7 == 0 else (boxes, labels, scores)

    from dataclasses import replace

    metrics = infer_video(video, "unused", tmp_path / "out", threshold=0.3, track=True, stride=2, predictor=replace(blobs, run=flaky))
    assert metrics["frames"] == FRAMES and metrics["frames_inferred"] == FRAMES // 2
    rows = [json.loads(line) for line in (tmp_path / "out" / "detections.jsonl").read_text().splitlines()]
    assert [r["inferred"] for r in rows[:4]] == [True, False, True, False]
    hit = [r for r in rows if r["detections"]]
    ids_per_object = _id_purity(hit)
    # The red object (a circle, never occluded) keeps its id through the gaps; blue and green cross
    # each other, and a gap that falls on the crossing may restart one of them (seen: 57% / 43%).
    assert ids_per_object[2] >= 0.95 and min(ids_per_object.values()) >= 0.5, ids_per_object


def test_tracker_gives_minus_one_to_untracked_and_counts_tracks() -> None:
    tracker = Tracker(fps=25)
    det = Detections(np.array([[10, 10, 40, 40], [60, 60, 90, 90]], np.float32), np.array([0.9, 0.1], np.float32), np.array([1, 2]), ["a", "b"])
    for frame in range(5):
        ids = tracker.update(det, frame)
    assert ids[0] >= 1 and ids[1] == -1  # 0.1 is below the activation threshold and matches no track
    assert tracker.rows() == [{"track_id": int(ids[0]), "label": "a", "first_frame": 0, "last_frame": 4, "frames_seen": 5, "mean_score": 0.9}]
    empty = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), [])
    assert tracker.update(empty, 5).shape == (0,)


@pytest.mark.slow
def test_cli_tracks_the_person_video(tmp_path: Path, cli_env: dict) -> None:
    """`detection video one-by-one-person-detection.mp4 --track` with a model writes tracks.csv (any model; untrained here)."""
    video = shared_path("videos", "one-by-one-person-detection.mp4")
    import torch

    from detection.engine.checkpoint import save_checkpoint
    from detection.models import build_model

    torch.manual_seed(0)  # untrained, but confident in class 1, so that it has detections to track
    model = build_model("fasterrcnn_tiny", num_classes=2, imgsz=320)
    model.roi_heads.box_predictor.cls_score.bias.data[1] = 8.0
    weights = save_checkpoint(tmp_path / "best.pt", model, model_name="fasterrcnn_tiny", class_names=["person"], imgsz=320, epoch=0, params={})
    run = subprocess.run(
        [sys.executable, "-m", "detection", "video", str(video), "--weights", str(weights), "--track", "--max-frames", "60", "--threshold", "0.5", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=600, env=cli_env,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    rows = list(csv.DictReader((tmp_path / "out" / "tracks.csv").open()))
    assert rows and all(int(r["frames_seen"]) >= 1 for r in rows)
