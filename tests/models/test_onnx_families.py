"""ONNX export + onnxruntime parity for one model of each family (untrained, random init, seed 0).

Slow (each export traces a whole detector): run with ``-m slow``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from detection.data.images import read_image_rgb
from detection.data.sample import make_sample
from detection.engine.checkpoint import save_checkpoint
from detection.export.onnx import export_onnx
from detection.inference.predictor import to_chw_float
from detection.models import build_model, get_spec
from tests.conftest import shared_path
from tests.models.wake import wake

FAMILY_MODELS = [
    "fasterrcnn_mobilenet_v3_small_nano_head",  # faster_rcnn (automatic backbone, FPN)
    "retinanet_mobilenet_v3_small",  # retinanet
    "fcos_mobilenet_v3_small",  # fcos
    "ssdlite320_mobilenet_v3_large",  # ssd
    "keypointrcnn_resnet50_fpn",  # keypoint_rcnn (boxes, labels, scores exported)
]


def _distinct_scores(model: torch.nn.Module) -> torch.nn.Module:
    """Untrained dense heads score everything near their prior: RetinaNet/FCOS below the 0.05 threshold
    (nothing to compare), SSD's softmax near-uniform (near-ties whose order float rounding decides).
    Lift the classification bias / spread the logits so scores are distinct and above the threshold.
    An untrained regression head also gives zero-area boxes (clipped at the border, FCOS's ReLU'd
    distances at 0) whose IoU with themselves is 0, which the IoU matching cannot pair: regress to
    the anchors (RetinaNet) or one anchor size around them (FCOS) instead."""
    head = getattr(getattr(model, "head", None), "classification_head", None)
    with torch.no_grad():
        if hasattr(head, "cls_logits"):  # RetinaNet, FCOS
            head.cls_logits.bias.fill_(-1.0)
            head.cls_logits.weight.mul_(20.0)  # spread the scores: no near-ties for NMS to order by rounding
            reg = model.head.regression_head.bbox_reg
            reg.weight.zero_()
            reg.bias.fill_(1.0 if type(model).__name__ == "FCOS" else 0.0)
        elif head is not None:  # SSD / SSDlite
            for p in head.parameters():
                p.mul_(20.0)
    return model


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two images of the trace size and one of another size and aspect (a size baked in at trace time shows)."""
    wide = make_sample(tmp_path_factory.mktemp("sample") / "raw", images=2, width=160, height=96, video_frames=0)
    tall = make_sample(tmp_path_factory.mktemp("sample") / "tall", images=1, width=200, height=300, video_frames=0, seed=1)
    return sorted(wide.glob("*.ppm")) + sorted(tall.glob("*.ppm"))


@pytest.fixture(scope="module")
def real_images() -> list[Path]:
    """Real photos of two data sets: GTSDB (1360x800 road scenes) and BCCD (640x480 blood smears)."""
    return [shared_path("gtsdb", "00000.jpg"), shared_path("gtsdb", "00007.jpg"), shared_path("bccd_voc", "BCCD", "JPEGImages", "BloodImage_00000.jpg")]


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_onnx_parity_per_family(name: str, images: list[Path], tmp_path: Path) -> None:
    _export_with_parity(name, images, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_onnx_parity_per_family_on_real_photos(name: str, real_images: list[Path], tmp_path: Path) -> None:
    _export_with_parity(name, real_images, tmp_path)


def _export_with_parity(name: str, images: list[Path], tmp_path: Path) -> dict:
    torch.manual_seed(0)
    classes = ["person"] if name.startswith("keypoint") else ["a", "b", "c"]
    model = build_model(name, num_classes=len(classes) + 1, imgsz=160 if get_spec(name).family != "ssd" else 320)
    if get_spec(name).family in ("retinanet", "ssd"):  # near-constant untrained scores: see tests/models/wake.py
        wake(model, torch.from_numpy(to_chw_float(read_image_rgb(images[0]))))
    else:
        _distinct_scores(model)
    ckpt = save_checkpoint(tmp_path / "best.pt", model, model_name=name, class_names=classes, imgsz=160, epoch=1, params={})
    result = export_onnx(ckpt, tmp_path / "model.onnx", images, report=tmp_path / "export.json")
    assert result["ok"] and result["matched"] > 0, result
    assert (tmp_path / "model.onnx").stat().st_size > 0
    return result
