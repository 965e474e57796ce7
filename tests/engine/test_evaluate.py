from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from detection.config import DatasetConfig, ModelParams, TrainParams
from detection.data.table import has_box, images, label_ids, read_table
from detection.engine.evaluate import coco_metrics, evaluate
from detection.engine.train import train


def _gt_as_detections(table, names, drop_class: str | None = None):
    ids = label_ids(names)
    out = []
    for name in images(table)["image"]:
        rows = table[(table["image"] == name) & has_box(table)]
        if drop_class:
            rows = rows[rows["label"] != drop_class]
        out.append({
            "boxes": rows[["xmin", "ymin", "xmax", "ymax"]].to_numpy(np.float32).reshape(-1, 4),
            "scores": np.ones(len(rows), np.float32),
            "labels": np.array([ids[n] for n in rows["label"]], np.int64),
        })  # fmt: skip
    return out


def test_perfect_detections_score_one(tiny_data: DatasetConfig) -> None:
    table = read_table(tiny_data.valid)
    m = coco_metrics(table, tiny_data.names, _gt_as_detections(table, tiny_data.names))
    assert m["map"] == pytest.approx(1.0) and m["map50"] == pytest.approx(1.0)
    present = set(table.loc[has_box(table), "label"])
    for name in tiny_data.names:
        assert (m["per_class"][name]["ap"] is not None) == (name in present)


def test_a_missed_class_scores_zero_for_that_class(tiny_data: DatasetConfig) -> None:
    table = read_table(tiny_data.valid)
    missed = sorted(set(table.loc[has_box(table), "label"]))[0]
    m = coco_metrics(table, tiny_data.names, _gt_as_detections(table, tiny_data.names, drop_class=missed))
    assert m["per_class"][missed]["ap50"] == 0.0
    assert m["map50"] < 1.0


def test_evaluate_stage_writes_metrics_plots_and_samples(tiny_data: DatasetConfig, tmp_path: Path) -> None:
    train(tiny_data, ModelParams(), TrainParams(epochs=1, imgsz=128, warmup_iters=2, out=tmp_path / "models", reports=tmp_path / "train"))
    with_test = tiny_data.model_copy(update={"test": tiny_data.train})
    metrics = evaluate(tmp_path / "models/best.pt", with_test, tmp_path / "eval", tmp_path / "metrics.json", score_threshold=0.0, samples=2)
    assert metrics["split"] == str(tiny_data.valid) and metrics["test"]["split"] == str(tiny_data.train)
    assert metrics["test"]["images"] == read_table(tiny_data.train)["image"].nunique()
    for name in ("per_class.csv", "confusion_matrix.csv", "f1_curve.csv", "f1_curve.png", "confusion_matrix.png"):
        assert (tmp_path / "eval" / name).stat().st_size > 0 and (tmp_path / "eval/test" / name).stat().st_size > 0
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    per_class = pd.read_csv(tmp_path / "eval/per_class.csv")
    assert {"ap", "ap50", "precision", "recall", "f1", "tp", "fp", "fn"} <= set(per_class.columns)
    assert set(on_disk["per_class"]) == set(tiny_data.names)
    for name in ("per_class.csv", "pr_curve.csv", "pr_curve.png", "per_class_ap.png"):
        assert (tmp_path / "eval" / name).stat().st_size > 0
    assert len(list((tmp_path / "eval/samples").glob("*.jpg"))) == 2
