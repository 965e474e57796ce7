from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from detection.config import DatasetConfig, ModelParams, TrainParams
from detection.engine.checkpoint import load_checkpoint, load_model
from detection.engine.device import resolve_device
from detection.engine.train import train
from detection.errors import DetectionError


def _params(tmp_path: Path, **kw: object) -> TrainParams:
    return TrainParams(epochs=1, batch=4, imgsz=128, warmup_iters=2, out=tmp_path / "models", reports=tmp_path / "reports", **kw)


def test_train_writes_checkpoints_that_hold_what_inference_needs(tiny_data: DatasetConfig, tmp_path: Path) -> None:
    summary = train(tiny_data, ModelParams(), _params(tmp_path))
    assert summary["epochs"] == 1 and 0.0 <= summary["best_val_map"] <= 1.0
    for name in ("best.pt", "last.pt"):
        ckpt = load_checkpoint(tmp_path / "models" / name)
        assert ckpt["model_name"] == "fasterrcnn_tiny"
        assert ckpt["class_names"] == tiny_data.names
        assert ckpt["imgsz"] == 128
        assert ckpt["params"]["train"]["epochs"] == 1
        assert {"torch", "torchvision", "detection"} <= set(ckpt["versions"])
    assert "optimizer" in load_checkpoint(tmp_path / "models/last.pt")
    assert "optimizer" not in load_checkpoint(tmp_path / "models/best.pt")
    model, meta = load_model(tmp_path / "models/best.pt")
    assert meta["class_names"] == tiny_data.names and not model.training
    with torch.no_grad():
        model([torch.rand(3, 96, 128)])
    history = pd.read_csv(tmp_path / "reports/history.csv")
    assert list(history["epoch"]) == [1]
    assert (tmp_path / "reports/curves.png").stat().st_size > 0


def test_resume_continues_from_last_epoch(tiny_data: DatasetConfig, tmp_path: Path) -> None:
    train(tiny_data, ModelParams(), _params(tmp_path))
    train(tiny_data, ModelParams(), _params(tmp_path).model_copy(update={"epochs": 2}), resume=True)
    history = pd.read_csv(tmp_path / "reports/history.csv")
    assert list(history["epoch"]) == [1, 2]
    assert load_checkpoint(tmp_path / "models/last.pt")["epoch"] == 2


def test_same_seed_same_weights(tiny_data: DatasetConfig, tmp_path: Path) -> None:
    a = train(tiny_data, ModelParams(), _params(tmp_path / "a"))
    b = train(tiny_data, ModelParams(), _params(tmp_path / "b"))
    assert a["best_val_map"] == b["best_val_map"]
    wa = load_checkpoint(tmp_path / "a/models/last.pt")["model"]
    wb = load_checkpoint(tmp_path / "b/models/last.pt")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_missing_images_name_the_root(tiny_data: DatasetConfig, tmp_path: Path) -> None:
    moved = tiny_data.model_copy(update={"root": tmp_path / "nowhere"})
    with pytest.raises(DetectionError, match="nowhere"):
        train(moved, ModelParams(), _params(tmp_path))


def test_unavailable_device_is_a_user_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(DetectionError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(DetectionError, match="unknown device"):
        resolve_device("tpu9")


def test_every_training_option_together_and_early_stopping(tiny_data: DatasetConfig, tmp_path: Path) -> None:
    params = _params(tmp_path).model_copy(update=dict(
        epochs=5, optimizer="adamw", lr=1e-3, schedule="onecycle", accumulate=2, clip_grad=1.0, ema=True,
        amp="on", monitor="val_loss", patience=1, min_delta=1e9, workers=1, device="cpu",
    ))  # fmt: skip
    summary = train(tiny_data, ModelParams(), params)
    history = pd.read_csv(tmp_path / "reports/history.csv")
    assert list(history["epoch"]) == [1, 2], "stopped after `patience` epochs without improvement"
    assert summary["epochs"] == 2 and summary["best_epoch"] == 1 and summary["monitor"] == "val_loss"
    assert history[["train_loss", "val_loss", "val_map", "lr", "images_per_s"]].notna().all().all()
    ckpt = load_checkpoint(tmp_path / "models/last.pt")
    assert ckpt["resume"]["bad_epochs"] == 1 and "ema" in ckpt
    assert (tmp_path / "reports/dvclive/metrics.json").is_file()
    assert (tmp_path / "reports/valid/confusion_matrix.png").stat().st_size > 0
