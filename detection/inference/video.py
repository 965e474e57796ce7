"""Video inference: stream frames through a predictor, write an annotated video, detections and speed.

``infer_video(source, weights, out)`` reads ``source`` frame by frame with ``cv2.VideoCapture`` (the
video is never held in memory) and writes into ``out/``:

- ``annotated.mp4``: the frames with their detections drawn (mp4v, same fps and size as the input);
- ``detections.jsonl``: ``{"frame", "time", "detections": [{"box", "score", "label"}]}`` per frame
  (``time`` in seconds = frame / fps);
- ``metrics.json``: frames, ``fps_model`` (frames / seconds spent in the predictor, pre- and
  post-processing included), ``fps_end_to_end`` (frames / wall time of decode + predict + draw +
  encode), source, weights, backend, threshold and the video's own fps and size.

Each file goes to a temporary path and is renamed when complete. A progress bar (rich) is shown on a
terminal; otherwise progress goes to the log, about every 10 %.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2

from detection.errors import DetectionError
from detection.inference.predictor import load_predictor
from detection.io import atomic_path, write_json
from detection.viz.draw import draw_detections

log = logging.getLogger(__name__)

DEFAULT_FPS = 25.0  # when the container does not say


def open_video(source: Path) -> cv2.VideoCapture:
    """An opened capture of ``source``; a DetectionError naming the file if it is missing or not a video."""
    source = Path(source)
    if not source.is_file():
        raise DetectionError(f"video not found: {source}", hint="check the path (or use `sample` for the fetched sample video)")
    cap = cv2.VideoCapture(str(source))
    if not cap.isOpened():
        cap.release()
        raise DetectionError(f"cannot read video {source}", hint="the file is not a video OpenCV can decode (try an .mp4/.avi), or it is corrupt")
    return cap


def video_fps(cap: cv2.VideoCapture) -> float:
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    return fps if math.isfinite(fps) and 0 < fps < 1000 else DEFAULT_FPS


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


def infer_video(
    source: Path,
    weights: Path,
    out: Path,
    threshold: float = 0.5,
    max_frames: int | None = None,
) -> dict[str, Any]:
    """Run ``weights`` (.pt or .onnx) on every frame of ``source`` (the first ``max_frames`` if given).

    Writes ``out/annotated.mp4``, ``out/detections.jsonl``, ``out/metrics.json``; returns the metrics.
    """
    source, weights, out = Path(source), Path(weights), Path(out)
    if max_frames is not None and max_frames < 1:
        raise DetectionError(f"max_frames must be at least 1, got {max_frames}", hint="leave it unset for the whole video")
    cap = open_video(source)
    predictor = load_predictor(weights)
    fps = video_fps(cap)
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    total = min(count, max_frames) if count > 0 and max_frames else (count or max_frames or None)
    out.mkdir(parents=True, exist_ok=True)
    frames = detections = 0
    size: tuple[int, int] | None = None
    model_s = 0.0
    start = time.perf_counter()
    writer: cv2.VideoWriter | None = None
    try:
        with (
            atomic_path(out / "annotated.mp4") as mp4_tmp,
            atomic_path(out / "detections.jsonl") as jsonl_tmp,
            jsonl_tmp.open("w", encoding="utf-8") as jsonl,
            progress(total, f"video {source.name}") as update,
        ):
            while max_frames is None or frames < max_frames:
                ok, frame = cap.read()
                if not ok:
                    break
                if writer is None:
                    size = (frame.shape[1], frame.shape[0])
                    writer = cv2.VideoWriter(str(mp4_tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
                    if not writer.isOpened():
                        raise DetectionError(f"OpenCV cannot write an mp4 video to {out / 'annotated.mp4'}", hint="check that the folder is writable")
                t0 = time.perf_counter()
                det = predictor.predict(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), threshold)
                model_s += time.perf_counter() - t0
                writer.write(draw_detections(frame, det.boxes, det.names, det.scores))
                jsonl.write(json.dumps({"frame": frames, "time": round(frames / fps, 4), "detections": det.to_records()}) + "\n")
                frames += 1
                detections += len(det)
                update(frames)
            if writer is None:
                raise DetectionError(f"cannot read video {source}: no frame could be decoded", hint="the file is corrupt or empty")
            writer.release()  # finish the file before atomic_path renames it
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    total_s = time.perf_counter() - start
    width, height = size or (0, 0)  # size is set: no frame raised above
    metrics = {
        "frames": frames,
        "fps_model": round(frames / model_s, 2) if model_s > 0 else None,
        "fps_end_to_end": round(frames / total_s, 2) if total_s > 0 else None,
        "model_seconds": round(model_s, 3),
        "total_seconds": round(total_s, 3),
        "detections": detections,
        "source": str(source),
        "weights": str(weights),
        "backend": predictor.backend,
        "threshold": threshold,
        "max_frames": max_frames,
        "video_fps": fps,
        "width": width,
        "height": height,
        "annotated": str(out / "annotated.mp4"),
        "detections_jsonl": str(out / "detections.jsonl"),
    }
    write_json(out / "metrics.json", metrics)
    log.info(
        "video %s: %d frames, %d detections, %.1f fps model, %.1f fps end to end (%s) -> %s",
        source, frames, detections, metrics["fps_model"] or 0, metrics["fps_end_to_end"] or 0, predictor.backend, out,
    )
    return metrics
