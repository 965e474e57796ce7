"""A small fixed detection problem that a working pipeline learns in well under a minute on the CPU.

Flat-coloured rectangles (red = ``red``, blue = ``blue``) on a noisy grey background, in images of
several sizes and aspect ratios, larger and smaller than the model's input size, with some images
without any object. Boxes are in the original pixels, so a run that forgets to map predictions back
from the resized input fails.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from detection.config import DatasetConfig
from detection.data.table import write_table

NAMES = ["red", "blue"]
COLORS = {"red": (40, 40, 230), "blue": (230, 60, 40)}  # BGR
SIZES = [(224, 144), (80, 56), (96, 160), (176, 112), (64, 96), (200, 200)]  # (width, height): > and < 128


def make_problem(root: Path, images: int = 12, seed: int = 0, empty_every: int = 6) -> DatasetConfig:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(images):
        w, h = SIZES[i % len(SIZES)]
        img = rng.normal(128, 12, (h, w, 3)).clip(0, 255).astype(np.uint8)
        name = f"img{i:03d}.png"
        n_obj = 0 if empty_every and i % empty_every == empty_every - 1 else 1 + i % 2
        placed: list[tuple[int, int, int, int]] = []
        for k in range(n_obj):
            label = NAMES[(i + k) % 2]
            for _ in range(50):
                bw, bh = int(rng.uniform(0.25, 0.4) * w), int(rng.uniform(0.25, 0.4) * h)
                x1, y1 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
                box = (x1, y1, x1 + bw, y1 + bh)
                if all(box[2] <= p[0] or box[0] >= p[2] or box[3] <= p[1] or box[1] >= p[3] for p in placed):
                    break
            placed.append(box)
            cv2.rectangle(img, box[:2], (box[2] - 1, box[3] - 1), COLORS[label], thickness=-1)
            rows.append({"image": name, "width": w, "height": h, "xmin": box[0], "ymin": box[1], "xmax": box[2], "ymax": box[3], "label": label})
        if not n_obj:
            rows.append({"image": name, "width": w, "height": h, "xmin": None, "ymin": None, "xmax": None, "ymax": None, "label": ""})
        cv2.imwrite(str(root / name), img)
    table = write_table(pd.DataFrame(rows), root / "all.csv")
    return DatasetConfig(name="problem", format="csv", names=NAMES, root=root, train=table, valid=table)
