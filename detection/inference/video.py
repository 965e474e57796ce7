"""Video inference: stream frames through a predictor, write an annotated video, detections, tracks and speed.

``infer_video(source, weights, out)`` takes a video file, a folder of videos (each into
``out/<stem>/``) or a camera index (``"0"``; it runs until ``max_frames`` or Ctrl-C, which keeps what was recorded), decodes it frame by frame with ``cv2.VideoCapture``,
runs the model, and writes into ``out/``:

- ``annotated.mp4``: every decoded frame with its detections drawn (mp4v), at the source's fps and
  size, so it has the source's frame count (``max_frames`` cuts it; ``stride`` N runs the model on
  every N-th frame and draws its detections on the frames in between);
- ``detections.jsonl``: ``{"frame", "time", "inferred", "detections": [{"box", "score", "label"[,
  "track_id"]}]}`` per frame (``time`` = frame / fps; ``inferred`` is false on the stride's reused frames);
- ``tracks.csv``: with ``track``, one row per track (``detection.inference.tracking``); header only without;
- ``metrics.json``: frames, source frame count/fps/size, FPS of decode, model, encode (each step's frames
  per second of its own work) and end to end (frames / wall time), memory (RSS at frame 100 and at the end).

Decoding, inference and encoding run overlapped (``detection.inference.stream``: three threads, queues
of a few frames), so the end-to-end rate approaches the slowest step's and memory stays flat however
long the video. Each file goes to a temporary path and is renamed when complete. FFmpeg's and
OpenCV's own messages while opening a file (``moov atom not found``...) are captured and folded into
the one error line instead of reaching the terminal raw.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from detection.errors import DetectionError
from detection.inference.predict import keep_classes
from detection.inference.predictor import Predictor
from detection.inference.pretrained import open_predictor
from detection.inference.size import size_rule
from detection.inference.stream import pipeline
from detection.inference.tracking import Tracker, write_tracks_csv
from detection.io import atomic_path, write_json
from detection.viz.draw import draw_detections

log = logging.getLogger(__name__)

DEFAULT_FPS = 25.0  # when the container does not say
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
RSS_FRAME = 100  # the frame whose RSS is compared with the last frame's


@contextlib.contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """Capture what C libraries (FFmpeg, OpenCV) write to file descriptor 2 inside the block."""
    lines: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            lines.extend(line.strip() for line in tmp.read().decode("utf-8", "replace").splitlines() if line.strip())
            for line in lines:
                log.debug("opencv/ffmpeg: %s", line)


def _said(lines: list[str]) -> str:
    """FFmpeg's last message without its ``[mov,mp4 @ 0x...]`` prefix, for an error hint."""
    if not lines:
        return ""
    last = lines[-1].split("] ", 1)[-1]
    return f"; FFmpeg says: {last}"


def camera_index(source: str | Path | int) -> int | None:
    """The camera index if ``source`` names one (``0``, ``"1"``), else None."""
    if isinstance(source, int):
        return source
    text = str(source)
    return int(text) if text.isdigit() and not Path(text).exists() else None


def open_video(source: str | Path | int) -> cv2.VideoCapture:
    """An opened capture of a file or camera index; a one-line DetectionError if it cannot be read."""
    index = camera_index(source)
    if index is not None:
        with captured_stderr() as said:
            cap = cv2.VideoCapture(index)
        if not cap.isOpened():
            cap.release()
            raise DetectionError(f"cannot open camera {index}", hint=f"no camera at index {index} (see /dev/video*), or it is in use{_said(said)}")
        return cap
    source = Path(source)
    if not source.is_file():
        raise DetectionError(f"video not found: {source}", hint="check the path (or use `sample` for the fetched sample video)")
    if source.stat().st_size == 0:
        raise DetectionError(f"cannot read video {source}", hint="the file is empty (0 bytes)")
    with captured_stderr() as said:
        cap = cv2.VideoCapture(str(source))
        opened = cap.isOpened()
    if not opened:
        cap.release()
        raise DetectionError(f"cannot read video {source}", hint=f"not a video OpenCV can decode (try an .mp4/.avi), or it is corrupt{_said(said)}")
    return cap


def video_fps(cap: cv2.VideoCapture) -> float:
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    return fps if math.isfinite(fps) and 0 < fps < 1000 else DEFAULT_FPS


def list_videos(folder: Path) -> list[Path]:
    videos = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        raise DetectionError(f"no videos in folder {folder} (looked for {', '.join(VIDEO_SUFFIXES)})", hint="pass a video file, a folder of videos or a camera index")
    return videos


@contextlib.contextmanager
def progress(total: int | None, label: str) -> Iterator[Callable[[int], None]]:
    """Yield ``update(done)``: a rich progress bar on a terminal, a log line about every 10 % otherwise."""
    if sys.stderr.isatty():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True) as bar:
            task = bar.add_task(label, total=total)
            yield lambda done: bar.update(task, completed=done)
        return
    step = max(1, (total or 100) // 10)
    yield lambda done: log.info("%s: %d/%s frames", label, done, total or "?") if done % step == 0 else None


def _rss_mb() -> float:
    import psutil

    return round(psutil.Process().memory_info().rss / 2**20, 1)


def _fps(frames: int, seconds: float) -> float | None:
    return round(frames / seconds, 2) if seconds > 0 else None


def infer_video(
    source: str | Path | int,
    weights: str | Path,
    out: Path,
    threshold: float = 0.5,
    max_frames: int | None = None,
    *,
    stride: int = 1,
    track: bool = False,
    classes: list[str] | None = None,
    model: str | None = None,
    imgsz: int | None = None,
    device: str = "cpu",
    proposals: int | None = None,
    overlap: bool = True,
    predictor: Predictor | None = None,
) -> dict[str, Any]:
    """Run the model over a video file, each video of a folder, or a camera; see the module docstring.

    Returns the metrics (for a folder: ``{"videos": [...per-video metrics], ...totals}``, also in
    ``out/summary.json``).
    """
    if max_frames is not None and max_frames < 1:
        raise DetectionError(f"max_frames must be at least 1, got {max_frames}", hint="leave it unset for the whole video")
    if stride < 1:
        raise DetectionError(f"stride must be at least 1, got {stride}", hint="1 runs the model on every frame")
    out = Path(out)
    folder = camera_index(source) is None and Path(source).is_dir()
    videos = list_videos(Path(source)) if folder else [source]
    caps = None if folder else open_video(source)  # a bad file or camera fails before the model loads
    predictor = predictor or open_predictor(weights, model, imgsz, device, proposals)
    ids = predictor.class_ids(classes)
    options = {"threshold": threshold, "max_frames": max_frames, "stride": stride, "track": track, "class_ids": ids, "overlap": overlap}
    if not folder:
        return _one_video(source, caps, predictor, out, **options)
    results = [_one_video(v, open_video(v), predictor, out / v.stem, **options) for v in videos]
    frames, seconds = sum(r["frames"] for r in results), sum(r["total_seconds"] for r in results)
    summary = {"source": str(source), "videos": results, "frames": frames, "fps_end_to_end": _fps(frames, seconds), "backend": predictor.backend}
    write_json(out / "summary.json", summary)
    return summary


def _one_video(
    source: str | Path | int,
    cap: cv2.VideoCapture,
    predictor: Predictor,
    out: Path,
    *,
    threshold: float,
    max_frames: int | None,
    stride: int,
    track: bool,
    class_ids: np.ndarray | None,
    overlap: bool,
) -> dict[str, Any]:
    fps = video_fps(cap)
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    count = count if count > 0 else 0
    total = min(count, max_frames) if count and max_frames else (count or max_frames or None)
    tracker = Tracker(fps / stride) if track else None
    out.mkdir(parents=True, exist_ok=True)
    t = {"decode": 0.0, "model": 0.0, "encode": 0.0}
    state: dict[str, Any] = {"frames": 0, "inferred": 0, "detections": 0, "size": None, "writer": None, "rss": {}, "last": None}
    name = f"camera {source}" if camera_index(source) is not None else Path(str(source)).name

    def frames() -> Iterator[tuple[int, np.ndarray]]:
        index = 0
        while max_frames is None or index < max_frames:
            t0 = time.perf_counter()
            ok, frame = cap.read()
            t["decode"] += time.perf_counter() - t0
            if not ok:
                return
            yield index, frame
            index += 1

    def infer(item: tuple[int, np.ndarray]) -> tuple[int, np.ndarray, Any, np.ndarray | None, bool]:
        index, frame = item
        if index % stride == 0 or state["last"] is None:
            t0 = time.perf_counter()
            det = keep_classes(predictor.predict(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), threshold), class_ids)
            track_ids = tracker.update(det, index) if tracker is not None else None
            t["model"] += time.perf_counter() - t0
            state["last"] = (det, track_ids)
            state["inferred"] += 1
            return index, frame, det, track_ids, True
        return index, frame, *state["last"], False

    start = time.perf_counter()
    try:
        with (
            atomic_path(out / "annotated.mp4") as mp4_tmp,
            atomic_path(out / "detections.jsonl") as jsonl_tmp,
            jsonl_tmp.open("w", encoding="utf-8") as jsonl,
            progress(total, f"video {name}") as update,
        ):

            def write(item: tuple[int, np.ndarray, Any, np.ndarray | None, bool]) -> None:
                index, frame, det, track_ids, inferred = item
                t0 = time.perf_counter()
                if state["writer"] is None:
                    state["size"] = (frame.shape[1], frame.shape[0])
                    state["writer"] = cv2.VideoWriter(str(mp4_tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, state["size"])
                    if not state["writer"].isOpened():
                        raise DetectionError(f"OpenCV cannot write an mp4 video to {out / 'annotated.mp4'}", hint="check that the folder is writable")
                state["writer"].write(draw_detections(frame, det.boxes, det.names, det.scores, track_ids, det.keypoint_xy))
                records = det.to_records()
                if track_ids is not None:
                    for r, tid in zip(records, track_ids, strict=True):
                        r["track_id"] = int(tid) if tid >= 0 else None
                jsonl.write(json.dumps({"frame": index, "time": round(index / fps, 4), "inferred": inferred, "detections": records}) + "\n")
                t["encode"] += time.perf_counter() - t0
                state["frames"] = index + 1
                state["detections"] += len(det)
                if index + 1 == RSS_FRAME:
                    state["rss"]["frame_100"] = _rss_mb()
                update(index + 1)

            try:
                pipeline(frames(), infer, write, overlap=overlap)
            except KeyboardInterrupt:
                if camera_index(source) is None:
                    raise
                log.info("camera %s: stopped by the user after %d frames", source, state["frames"])  # keep what was recorded
            if state["writer"] is None:
                raise DetectionError(f"cannot read video {source}: no frame could be decoded", hint="the file is corrupt or empty")
            state["writer"].release()  # finish the file before atomic_path renames it
            write_tracks_csv(out / "tracks.csv", tracker.rows() if tracker is not None else [])
    finally:
        cap.release()
        if state["writer"] is not None:
            state["writer"].release()
    total_s = time.perf_counter() - start
    n = state["frames"]
    width, height = state["size"] or (0, 0)
    metrics = {
        "frames": n,
        "frames_inferred": state["inferred"],
        "fps_decode": _fps(n, t["decode"]),
        "fps_model": _fps(state["inferred"], t["model"]),
        "fps_encode": _fps(n, t["encode"]),
        "fps_end_to_end": _fps(n, total_s),
        "decode_seconds": round(t["decode"], 3),
        "model_seconds": round(t["model"], 3),
        "encode_seconds": round(t["encode"], 3),
        "total_seconds": round(total_s, 3),
        "overlap": overlap,
        "detections": state["detections"],
        "tracks": len(tracker.tracks) if tracker is not None else None,
        "source": str(source),
        "weights": str(predictor.weights),
        "model_name": predictor.model_name,
        "backend": predictor.backend,
        "proposals": predictor.proposals,
        "threshold": threshold,
        "max_frames": max_frames,
        "stride": stride,
        "size_rule": size_rule(predictor.imgsz),
        "video_fps": fps,
        "source_frames": count or None,
        "width": width,
        "height": height,
        "rss_mb_frame_100": state["rss"].get("frame_100"),
        "rss_mb_end": _rss_mb(),
        "annotated": str(out / "annotated.mp4"),
        "detections_jsonl": str(out / "detections.jsonl"),
        "tracks_csv": str(out / "tracks.csv"),
    }
    write_json(out / "metrics.json", metrics)
    log.info(
        "video %s: %d frames (%d inferred), %d detections; fps decode %s, model %s, encode %s, end to end %s (%s) -> %s",
        name, n, state["inferred"], state["detections"], metrics["fps_decode"], metrics["fps_model"], metrics["fps_encode"], metrics["fps_end_to_end"], predictor.backend, out,
    )  # fmt: skip
    return metrics
