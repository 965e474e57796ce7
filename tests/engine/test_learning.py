"""Tests that fail when learning breaks: a fixed problem (tests/engine/problem.py) must be learnt to a
minimum mAP, and train -> evaluate -> predict must give boxes on the ground truth *in original pixels*
for images larger and smaller than ``imgsz``, square and not, portrait and landscape, some empty."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from detection.config import DatasetConfig, ModelParams, TrainParams
from detection.data.table import boxes_of, read_table
from detection.engine.evaluate import evaluate
from detection.engine.train import train
from detection.inference.predict import predict
from tests.engine.problem import SIZES, make_problem

IMGSZ = 128


@pytest.fixture(scope="module")
def learnt(tmp_path_factory: pytest.TempPathFactory) -> tuple[DatasetConfig, Path, dict]:
    base = tmp_path_factory.mktemp("problem")
    data = make_problem(base / "images")
    params = TrainParams(
        epochs=15, batch=4, imgsz=IMGSZ, lr=0.02, warmup_iters=5, device="cpu", val_loss=False, dvclive=False,
        out=base / "models", reports=base / "reports",
    )  # fmt: skip
    return data, base, train(data, ModelParams(), params)


def test_the_problem_has_images_larger_and_smaller_than_imgsz() -> None:
    assert any(max(s) > IMGSZ for s in SIZES) and any(max(s) < IMGSZ for s in SIZES)
    assert any(w > h for w, h in SIZES) and any(w < h for w, h in SIZES)


def test_training_reaches_a_minimum_map(learnt: tuple[DatasetConfig, Path, dict]) -> None:
    _, base, summary = learnt
    assert summary["best_val_map50"] >= 0.4, summary
    history = json.loads((base / "reports/summary.json").read_text())
    assert history["valid_map50"] == pytest.approx(summary["best_val_map50"], abs=1e-3)


def test_evaluate_and_predict_match_ground_truth_in_original_pixels(learnt: tuple[DatasetConfig, Path, dict]) -> None:
    data, base, _ = learnt
    metrics = evaluate(base / "models/best.pt", data, base / "eval", base / "metrics.json", score_threshold=0.1, samples=2, device="cpu")
    assert metrics["map50"] >= 0.4 and metrics["recall"] > 0.4, metrics
    cm = np.loadtxt(base / "eval/confusion_matrix.csv", delimiter=",", skiprows=1, usecols=(1, 2, 3))
    assert np.trace(cm[:2, :2]) > cm[:2, 2].sum(), "most boxes are found with their class"
    assert len(list((base / "eval/samples").glob("*.jpg"))) == 2

    summary = predict(Path(data.root), base / "models/best.pt", base / "pred", threshold=0.1)
    rows = {Path(r["image"]).name: r for r in map(json.loads, (base / "pred/predictions.jsonl").read_text().splitlines())}
    assert summary["images"] == len(rows) == 12
    groups = boxes_of(read_table(data.valid))
    found = total = 0
    for name, gt in groups.items():
        row = rows[name]
        assert (row["width"], row["height"]) == (int(gt["width"].iloc[0]) if len(gt) else row["width"], int(gt["height"].iloc[0]) if len(gt) else row["height"])
        for d in row["detections"]:
            x1, y1, x2, y2 = d["box"]
            assert -1 <= x1 < x2 <= row["width"] + 1 and -1 <= y1 < y2 <= row["height"] + 1
        for box, label in zip(gt[["xmin", "ymin", "xmax", "ymax"]].to_numpy(np.float32), gt["label"], strict=True):
            total += 1
            same = [d["box"] for d in row["detections"] if d["label"] == label]
            if same and box_iou(torch.from_numpy(box[None]), torch.tensor(same, dtype=torch.float32)).max() >= 0.5:
                found += 1
    assert total and found / total >= 0.6, f"{found}/{total} ground-truth boxes found in original pixels"
