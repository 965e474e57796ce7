"""Predict on images: annotated copies, detections as JSON lines and CSV, a summary with images/s.

``predict(source, weights, out)`` takes SOURCE as ``detection.inference.sources`` reads it (an image, a
folder searched recursively, a glob, a list file, URLs) and writes into ``out/``:

- one annotated image per readable input: its name (relative to the folder, ``/`` as ``__``) when it
  is a .jpg/.jpeg/.png, else ``<name>.png`` (``<name>.<suffix>.png`` if two would collide);
- ``predictions.jsonl``: ``{"image", "annotated", "width", "height", "detections": [{"box": [x1, y1,
  x2, y2], "score", "label"}]}`` per image, boxes in pixels of the input image (a keypoint model's
  detections also hold ``"keypoints": [[x, y, score], ...]``);
- ``predictions.csv``: one row per detection: ``image, xmin, ymin, xmax, ymax, label, score``;
- ``summary.json``: counts (images, skipped, detections, per class), the skipped files with their
  reason, timings and images/s (model only and end to end), the size rule.

An input that cannot be read (missing, empty, truncated, not an image, a failed download) is logged
with its reason, counted in ``skipped`` and left out; the others are still processed. If no input can
be read, a ``DetectionError`` names the first one. Each file is written to a temporary path and
renamed, so an interrupted run leaves the previous outputs or none; ``out/`` is never emptied.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from detection.data.images import display_path
from detection.errors import DetectionError
from detection.inference.predictor import Detections, Predictor
from detection.inference.pretrained import open_predictor
from detection.inference.size import size_rule
from detection.inference.sources import item_name, list_sources, read_source
from detection.inference.stream import pipeline
from detection.io import atomic_path, write_json
from detection.viz.draw import draw_detections, write_image

log = logging.getLogger(__name__)

_KEEP_SUFFIXES = (".jpg", ".jpeg", ".png")
CSV_COLUMNS = ("image", "xmin", "ymin", "xmax", "ymax", "label", "score")


def output_names(images: list[Path | str], shown: list[str] | None = None) -> list[str]:
    """Annotated-image file names for ``images``: browser-friendly, flat, unique within the run."""
    shown = shown or [Path(str(p)).name for p in images]
    flat = [s.replace("://", "_").replace("/", "__") for s in shown]
    names = [f if Path(f).suffix.lower() in _KEEP_SUFFIXES else Path(f).stem + ".png" for f in flat]
    counts = Counter(names)
    return [n if counts[n] == 1 else f + ".png" for n, f in zip(names, flat, strict=True)]


def keep_classes(det: Detections, ids: np.ndarray | None) -> Detections:
    return det if ids is None else det.select(np.isin(det.labels, ids))


def predict(
    source: str | Path,
    weights: str | Path,
    out: Path,
    threshold: float = 0.5,
    *,
    classes: list[str] | None = None,
    batch: int = 1,
    model: str | None = None,
    imgsz: int | None = None,
    device: str = "cpu",
    proposals: int | None = None,
    predictor: Predictor | None = None,
) -> dict[str, Any]:
    """Detect objects in SOURCE with ``weights`` (.pt, .onnx, or ``default`` with ``model``); write into ``out``.

    Returns the summary (also written to ``out/summary.json``).
    """
    if batch < 1:
        raise DetectionError(f"batch must be at least 1, got {batch}")
    items, root = list_sources(source)
    predictor = predictor or open_predictor(weights, model, imgsz, device, proposals)
    ids = predictor.class_ids(classes)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shown = [item_name(i, root) for i in items]
    names = output_names(items, shown if root is not None else [display_path(Path(str(i)).name) for i in items])
    per_class: Counter[str] = Counter()
    skipped: list[dict[str, str]] = []
    timer = {"model": 0.0, "images": 0}
    start = time.perf_counter()

    def batches() -> Any:  # decode thread: groups of (index, rgb) of readable images
        group: list[tuple[int, np.ndarray]] = []
        for index, item in enumerate(items):
            try:
                group.append((index, read_source(item)))
            except DetectionError as exc:
                skipped.append({"image": shown[index], "reason": exc.hint or exc.message})
                log.warning("skipped %s: %s", shown[index], exc.hint or exc.message)
            if len(group) == batch:
                yield group
                group = []
        if group:
            yield group

    def infer(group: list[tuple[int, np.ndarray]]) -> list[tuple[int, np.ndarray, Detections]]:
        t0 = time.perf_counter()
        dets = predictor.predict_batch([rgb for _, rgb in group], threshold)
        timer["model"] += time.perf_counter() - t0
        return [(i, rgb, keep_classes(d, ids)) for (i, rgb), d in zip(group, dets, strict=True)]

    with (
        atomic_path(out / "predictions.jsonl") as jsonl_tmp,
        atomic_path(out / "predictions.csv") as csv_tmp,
        jsonl_tmp.open("w", encoding="utf-8") as jsonl,
        csv_tmp.open("w", encoding="utf-8", newline="") as csv_file,
    ):
        rows = csv.writer(csv_file)
        rows.writerow(CSV_COLUMNS)

        def write(results: list[tuple[int, np.ndarray, Detections]]) -> None:  # encode thread
            for index, rgb, det in results:
                per_class.update(det.names)
                bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
                write_image(out / names[index], draw_detections(bgr, det.boxes, det.names, det.scores, keypoints=det.keypoint_xy))
                records = det.to_records()
                jsonl.write(json.dumps({"image": shown[index], "annotated": names[index], "width": rgb.shape[1], "height": rgb.shape[0], "detections": records}) + "\n")
                rows.writerows([shown[index], *r["box"], r["label"], r["score"]] for r in records)
                timer["images"] += 1

        pipeline(batches(), infer, write)
        if timer["images"] == 0:
            first = skipped[0]
            raise DetectionError(f"no image could be read from {source} ({len(skipped)} skipped; first: {first['image']}: {first['reason']})", hint="fix or remove the files named in the log")
    total_s = time.perf_counter() - start
    done = timer["images"]
    summary = {
        "source": str(source),
        "weights": str(predictor.weights),
        "model_name": predictor.model_name,
        "backend": predictor.backend,
        "proposals": predictor.proposals,
        "threshold": threshold,
        "classes": classes or None,
        "batch": batch,
        "size_rule": size_rule(predictor.imgsz),
        "out": str(out),
        "predictions": str(out / "predictions.jsonl"),
        "csv": str(out / "predictions.csv"),
        "images": done,
        "skipped": len(skipped),
        "detections": sum(per_class.values()),
        "per_class": dict(sorted(per_class.items())),
        "model_seconds": round(timer["model"], 3),
        "total_seconds": round(total_s, 3),
        "images_per_second_model": round(done / timer["model"], 2) if timer["model"] > 0 else None,
        "images_per_second": round(done / total_s, 2) if total_s > 0 else None,
        "skipped_files": skipped,
    }
    write_json(out / "summary.json", summary)
    log.info("predict: %d images (%d skipped), %d detections, %.2f images/s (%s) -> %s", done, len(skipped), summary["detections"], summary["images_per_second"] or 0, predictor.backend, out)
    return summary


def skipped_lines(summary: dict[str, Any]) -> list[str]:
    """One ``skipped FILE: REASON`` line per unreadable input, for the CLI."""
    return [f"skipped {s['image']}: {s['reason']}" for s in summary.get("skipped_files", [])]


__all__ = ["CSV_COLUMNS", "keep_classes", "output_names", "predict", "skipped_lines", "write_image"]
