"""--model NAME --weights default: torchvision's COCO detector with COCO's class names, offline-aware."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.models import get_model, get_model_weights

from detection.errors import DetectionError
from detection.inference.predict import predict
from detection.inference.pretrained import coco_weights_file, open_predictor
from detection.inference.video import infer_video

NAME = "fasterrcnn_mobilenet_v3_large_320_fpn"


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("DETECTION_OFFLINE", "1")
    return tmp_path / "torch"


def test_offline_error_names_the_file_and_folder(torch_home: Path, sample_dir: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from detection.cli import main

    path, url = coco_weights_file(NAME)
    assert path == torch_home / "hub" / "checkpoints" / Path(url).name
    capfd.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["-q", "predict", str(sample_dir / "00000.ppm"), "--model", NAME, "--weights", "default", "--out", str(tmp_path / "o")])
    lines = capfd.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    assert str(path) in lines[-1] and "$TORCH_HOME/hub/checkpoints" in lines[-1] and url in lines[-1]


def test_coco_names_and_class_filter_with_a_cached_weights_file(torch_home: Path, sample_dir: Path, tmp_path: Path) -> None:
    path, _ = coco_weights_file(NAME)
    path.parent.mkdir(parents=True)
    torch.manual_seed(0)
    model = get_model(NAME, weights=None, weights_backbone=None, num_classes=91)
    model.roi_heads.box_predictor.cls_score.bias.data[[1, 3]] = 6.0  # untrained, but sure of person and car
    torch.save(model.state_dict(), path)  # the file torchvision would have downloaded, by its exact name
    predictor = open_predictor("default", NAME, imgsz=160)
    assert predictor.class_names == get_model_weights(NAME).DEFAULT.meta["categories"][1:] and predictor.class_names[0] == "person"
    summary = predict(sample_dir, "default", tmp_path / "pred", threshold=0.3, classes=["person"], predictor=predictor)
    assert summary["detections"] > 0 and set(summary["per_class"]) == {"person"} and summary["model_name"] == NAME
    metrics = infer_video(sample_dir / "sample.mp4", "default", tmp_path / "video", threshold=0.3, max_frames=4, classes=["person", "car"], track=True, predictor=predictor)
    assert metrics["frames"] == 4 and metrics["detections"] > 0
    with pytest.raises(DetectionError, match="unknown class 'persn'.*did you mean person"):
        open_predictor("default", NAME, imgsz=320).class_ids(["persn"])


def test_default_needs_a_model_name_and_a_file_refuses_one(tmp_path: Path) -> None:
    with pytest.raises(DetectionError, match="--weights default needs --model NAME"):
        open_predictor("default")
    with pytest.raises(DetectionError, match="--model x is only for --weights default"):
        open_predictor(tmp_path / "best.pt", "x")
    with pytest.raises(DetectionError, match="unknown model 'fasterrcnn_mobilenet'"):
        coco_weights_file("fasterrcnn_mobilenet")
