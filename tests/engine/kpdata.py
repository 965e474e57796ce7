"""A tiny keypoint data set for tests, written as real files: PNG images and one kpjson file per image.

Each image (96-160 px) holds one filled quadrilateral (a jittered rectangle, one colour) whose four
corners are its keypoints, in the order ``top_left, top_right, bottom_right, bottom_left``: a mirror
swaps left and right, hence the flip map ``FLIP``. One image in ``empty_every`` has no object.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import yaml

NAMES = ("top_left", "top_right", "bottom_right", "bottom_left")
FLIP = [["top_left", "top_right"], ["bottom_left", "bottom_right"]]


def write_kpjson(root: Path, images: int = 10, seed: int = 0, empty_every: int = 6, size: tuple[int, int] = (96, 160)) -> Path:
    """Write ``root/images/*.png`` and ``root/annotations/*.json``; return ``root``."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for i in range(images):
        w, h = (int(v) for v in rng.integers(size[0], size[1] + 1, 2))
        img = np.clip(rng.normal(90, 12, (h, w, 3)), 0, 255).astype(np.uint8)
        data: dict[str, list] = {"bboxes": [], "keypoints": [], "labels": []}
        if empty_every and i % empty_every != empty_every - 1:
            bw, bh = rng.uniform(0.35, 0.6) * w, rng.uniform(0.35, 0.6) * h
            x0, y0 = rng.uniform(4, w - bw - 4), rng.uniform(4, h - bh - 4)
            corners = np.array([[x0, y0], [x0 + bw, y0], [x0 + bw, y0 + bh], [x0, y0 + bh]])
            corners += rng.uniform(-0.12, 0.12, (4, 2)) * [bw, bh]
            corners = np.clip(corners, 1, [w - 2, h - 2]).round()
            cv2.fillConvexPoly(img, corners.astype(np.int32), (40, 40, 230))
            (x1, y1), (x2, y2) = corners.min(0), corners.max(0) + 1
            data["bboxes"].append([float(x1), float(y1), float(x2), float(y2)])
            data["keypoints"].append([[float(x), float(y), 2] for x, y in corners])
            data["labels"].append("quad")
        cv2.imwrite(str(root / "images" / f"{i:03d}.png"), img)
        (root / "annotations" / f"{i:03d}.json").write_text(json.dumps(data))
    return root


def write_config(path: Path, root: Path, tables: Path, **extra: object) -> Path:
    """A dataset config for the data set of ``write_kpjson`` (its split tables under ``tables``)."""
    config = {"name": "quads", "format": "kpjson", "names": ["quad"], "root": str(root), "train": str(tables / "train.csv"),
              "valid": str(tables / "valid.csv"), "keypoints": list(NAMES), "keypoint_flip": FLIP, **extra}  # fmt: skip
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
