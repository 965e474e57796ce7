"""Predict on an image or a folder of images: annotated copies plus one JSON line per image.

``predict(source, weights, out)`` writes into ``out/``:

- one annotated image per input: the input's name when it is a .jpg/.jpeg/.png, else ``<stem>.png``
  (``<name>.png`` if two inputs would collide), so that every output opens in a browser;
- ``predictions.jsonl``: ``{"image", "annotated", "width", "height", "detections": [{"box": [x1, y1,
  x2, y2], "score", "label"}]}`` per image, boxes in pixels of the input image.

Each file is written to a temporary path and renamed; ``out/`` itself is created if needed and never
emptied (other files in it are left alone).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

import cv2

from detection.data.images import IMAGE_SUFFIXES, read_image_rgb
from detection.errors import DetectionError
from detection.inference.predictor import load_predictor
from detection.io import atomic_path
from detection.viz.draw import draw_detections

log = logging.getLogger(__name__)

_KEEP_SUFFIXES = (".jpg", ".jpeg", ".png")


def list_images(source: Path) -> list[Path]:
    """``source`` if it is an image file, else the images directly inside the folder ``source``, sorted."""
    source = Path(source)
    if source.is_file():
        if source.suffix.lower() not in IMAGE_SUFFIXES:
            raise DetectionError(f"{source}: not an image file (expected one of {', '.join(IMAGE_SUFFIXES)})", hint="pass an image or a folder of images")
        return [source]
    if not source.is_dir():
        raise DetectionError(f"image or folder not found: {source}", hint="check the path")
    images = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise DetectionError(f"no images in folder {source} (looked for {', '.join(IMAGE_SUFFIXES)})", hint="pass a folder that holds images")
    return images


def output_names(images: list[Path]) -> list[str]:
    """Annotated-image file names for ``images``: browser-friendly, unique within the batch."""
    names = [p.name if p.suffix.lower() in _KEEP_SUFFIXES else p.stem + ".png" for p in images]
    counts = Counter(names)
    return [n if counts[n] == 1 else p.name + ".png" for n, p in zip(names, images, strict=True)]


def write_image(path: Path, image_bgr: Any) -> None:
    """Write an image atomically; a DetectionError naming the file if OpenCV cannot."""
    with atomic_path(path) as tmp:  # tmp keeps the name, so OpenCV picks the format from the suffix
        if not cv2.imwrite(str(tmp), image_bgr):
            raise DetectionError(f"cannot write image {path}", hint="check that the output folder is writable")


def predict(source: Path, weights: Path, out: Path, threshold: float = 0.5) -> dict[str, Any]:
    """Detect objects in ``source`` (image or folder) with ``weights`` (.pt or .onnx); write into ``out``.

    Returns a summary: counts of images and detections (total and per class), backend, timings.
    """
    source, weights, out = Path(source), Path(weights), Path(out)
    images = list_images(source)
    predictor = load_predictor(weights)
    out.mkdir(parents=True, exist_ok=True)
    per_class: Counter[str] = Counter()
    model_s = 0.0
    start = time.perf_counter()
    with atomic_path(out / "predictions.jsonl") as jsonl_tmp, jsonl_tmp.open("w", encoding="utf-8") as jsonl:
        for path, name in zip(images, output_names(images), strict=True):
            rgb = read_image_rgb(path)
            t0 = time.perf_counter()
            det = predictor.predict(rgb, threshold)
            model_s += time.perf_counter() - t0
            per_class.update(det.names)
            bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
            write_image(out / name, draw_detections(bgr, det.boxes, det.names, det.scores))
            record = {"image": str(path), "annotated": name, "width": rgb.shape[1], "height": rgb.shape[0], "detections": det.to_records()}
            jsonl.write(json.dumps(record) + "\n")
            log.debug("%s: %d detections", path, len(det))
    total_s = time.perf_counter() - start
    summary = {
        "source": str(source),
        "weights": str(weights),
        "backend": predictor.backend,
        "threshold": threshold,
        "out": str(out),
        "predictions": str(out / "predictions.jsonl"),
        "images": len(images),
        "detections": sum(per_class.values()),
        "per_class": dict(sorted(per_class.items())),
        "model_seconds": round(model_s, 3),
        "total_seconds": round(total_s, 3),
    }
    log.info("predict: %d images, %d detections (%s) -> %s", len(images), summary["detections"], predictor.backend, out)
    return summary
