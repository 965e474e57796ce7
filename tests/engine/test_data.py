"""DetectionDataset: the training targets of a canonical table, on real image files."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from detection.engine.data import DetectionDataset


def test_crowd_regions_are_not_training_targets(tmp_path: Path) -> None:
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / name), np.full((48, 64, 3), 127, np.uint8))
    rows = [
        ("a.png", 10, 10, 30, 30, "person", 0),
        ("a.png", 0, 0, 64, 48, "person", 1),  # a crowd region
        ("b.png", 5, 5, 20, 20, "person", 1),  # only a crowd region: an image with no objects
    ]
    table = pd.DataFrame(
        [{"image": n, "width": 64, "height": 48, "xmin": x0, "ymin": y0, "xmax": x1, "ymax": y1, "label": lab, "difficult": 0, "iscrowd": c, "truncated": 0}
         for n, x0, y0, x1, y1, lab, c in rows]
    )  # fmt: skip
    ds = DetectionDataset(table, tmp_path, ["person"])
    by_name = {ds.images.at[i, "image"]: ds[i][1] for i in range(len(ds))}
    assert by_name["a.png"]["boxes"].tolist() == [[10.0, 10.0, 30.0, 30.0]] and by_name["a.png"]["labels"].tolist() == [1]
    assert by_name["b.png"]["boxes"].shape == (0, 4) and by_name["b.png"]["labels"].shape == (0,)
