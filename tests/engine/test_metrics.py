"""Matching, P/R/F1, confusion matrix and COCO mAP on hand-made detections, with VOC difficult and COCO crowd boxes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detection.data.table import normalize
from detection.engine.evaluate import coco_metrics
from detection.engine.metrics import confusion_matrix, counts_at, match, threshold_curves

NAMES = ["cat", "dog"]


def _table(extra: list[dict] | None = None) -> pd.DataFrame:
    rows = [
        {"image": "a.jpg", "width": 100, "height": 80, "xmin": 10, "ymin": 10, "xmax": 40, "ymax": 40, "label": "cat"},
        {"image": "a.jpg", "width": 100, "height": 80, "xmin": 50, "ymin": 20, "xmax": 90, "ymax": 70, "label": "dog"},
        {"image": "b.jpg", "width": 60, "height": 90, "xmin": 5, "ymin": 5, "xmax": 30, "ymax": 50, "label": "dog"},
        {"image": "c.jpg", "width": 50, "height": 50, "xmin": None, "ymin": None, "xmax": None, "ymax": None, "label": ""},
    ]
    return normalize(pd.DataFrame(rows + (extra or [])))


def _det(boxes, scores, labels) -> dict[str, np.ndarray]:
    return {"boxes": np.array(boxes, np.float32).reshape(-1, 4), "scores": np.array(scores, np.float32), "labels": np.array(labels, np.int64)}


def _dets() -> list[dict[str, np.ndarray]]:
    return [
        _det([[10, 10, 40, 40], [50, 20, 90, 70], [0, 60, 20, 78]], [0.9, 0.4, 0.8], [1, 1, 2]),  # cat ok, dog called cat, a false dog
        _det([[5, 5, 30, 50]], [0.7], [2]),  # dog ok
        _det([[1, 1, 20, 20]], [0.3], [1]),  # a false cat on an empty image
    ]


def test_counts_and_curves_at_a_threshold() -> None:
    m = match(_table(), NAMES, _dets())
    assert counts_at(m["cat"], 0.5) == {"tp": 1, "fp": 0, "fn": 0, "precision": 1.0, "recall": 1.0, "f1": 1.0}
    dog = counts_at(m["dog"], 0.5)
    assert (dog["tp"], dog["fp"], dog["fn"]) == (1, 1, 1)
    cat0 = counts_at(m["cat"], 0.0)
    assert (cat0["tp"], cat0["fp"]) == (1, 2)
    curves = threshold_curves(m)
    assert set(curves["class"]) == {"cat", "dog", "all"} and len(curves) == 3 * 101
    row = curves[(curves["class"] == "cat") & (curves["threshold"] == 0.5)].iloc[0]
    assert row["f1"] == 1.0


def test_confusion_matrix_has_a_background_row_and_column() -> None:
    cm = confusion_matrix(_table(), NAMES, _dets(), threshold=0.25)
    # rows = truth (cat, dog, background), columns = predicted (cat, dog, background)
    assert cm.tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 0]]
    cm_high = confusion_matrix(_table(), NAMES, _dets(), threshold=0.75)
    assert cm_high.tolist() == [[1, 0, 0], [0, 0, 2], [0, 1, 0]]


@pytest.mark.parametrize("flag", ["difficult", "iscrowd"])
def test_difficult_and_crowd_boxes_are_neither_hits_nor_misses(flag: str) -> None:
    hard = {"image": "b.jpg", "width": 60, "height": 90, "xmin": 35, "ymin": 40, "xmax": 58, "ymax": 88, "label": "dog", flag: 1}
    table = _table([hard])
    perfect = [_det([[10, 10, 40, 40], [50, 20, 90, 70]], [0.9, 0.9], [1, 2]), _det([[5, 5, 30, 50]], [0.9], [2]), _det([], [], [])]
    assert coco_metrics(table, NAMES, perfect)["map50"] == pytest.approx(1.0)  # not a miss
    m = match(table, NAMES, perfect)
    assert m["dog"]["n_gt"] == 2 and counts_at(m["dog"], 0.5)["fn"] == 0
    on_hard = [perfect[0], _det([[5, 5, 30, 50], [35, 40, 58, 88]], [0.9, 0.95], [2, 2]), perfect[2]]
    assert coco_metrics(table, NAMES, on_hard)["map50"] == pytest.approx(1.0)  # not a false positive
    assert counts_at(match(table, NAMES, on_hard)["dog"], 0.5)["fp"] == 0
    assert confusion_matrix(table, NAMES, on_hard, 0.5)[:, 2].sum() == 0
