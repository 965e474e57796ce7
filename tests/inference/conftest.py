"""Fixtures of the inference tests: the small sample (images + mp4), a random-init checkpoint, its ONNX export."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from detection.data.sample import make_sample
from detection.engine.checkpoint import save_checkpoint
from detection.export.onnx import export_onnx
from detection.models import build_model
from tests.conftest import shared_path

CLASS_NAMES = ["stop", "give_way", "priority_road", "no_entry", "keep_right"]


def random_checkpoint(path: Path) -> Path:
    """An untrained fasterrcnn_tiny saved as a checkpoint (random boxes: fine for I/O and parity)."""
    torch.manual_seed(0)
    model = build_model("fasterrcnn_tiny", num_classes=len(CLASS_NAMES) + 1, imgsz=320)
    return save_checkpoint(path, model, model_name="fasterrcnn_tiny", class_names=CLASS_NAMES, imgsz=320, epoch=0, params={})


@pytest.fixture(scope="session")
def class_names() -> list[str]:
    return list(CLASS_NAMES)


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 images 160x96 (00000.ppm ...) and sample.mp4 (20 frames, 15 fps). Read-only."""
    return make_sample(tmp_path_factory.mktemp("sample") / "sample", images=4, width=160, height=96, video_frames=20)


@pytest.fixture(scope="session")
def checkpoint_pt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_checkpoint(tmp_path_factory.mktemp("weights") / "best.pt")


@pytest.fixture(scope="session")
def model_onnx(checkpoint_pt: Path, sample_dir: Path) -> Path:
    out = checkpoint_pt.parent / "model.onnx"
    export_onnx(checkpoint_pt, out, sorted(sample_dir.glob("*.ppm"))[:2])
    return out


@pytest.fixture
def car_video() -> Path:
    return shared_path("videos", "car-detection.mp4")
