"""Keypoint R-CNN for any number of keypoints: the registry, COCO weights with a new keypoint head,
checkpoints that carry the keypoints, and ONNX export with parity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torchvision.models import get_model, get_model_weights

from detection.data.images import read_image_rgb
from detection.data.sample import make_sample
from detection.engine.checkpoint import load_model, save_checkpoint
from detection.errors import DetectionError
from detection.export.onnx import export_onnx
from detection.inference.predictor import load_predictor
from detection.inference.video import infer_video
from detection.models import build_model, get_spec
from tests.models.test_weights import _randomised, _save, hub  # noqa: F401 - the fixture

SMALL = "keypointrcnn_resnet18_single_nano_head"


def test_pattern_keypoint_rcnn_takes_any_number_of_keypoints() -> None:
    assert get_spec(SMALL).family == "keypoint_rcnn"
    model = build_model(SMALL, num_classes=3, imgsz=96, num_keypoints=5).eval()
    with torch.inference_mode():
        (det,) = model([torch.rand(3, 64, 96)])
    assert det["keypoints"].shape[1:] == (5, 3)
    zoo = build_model("keypointrcnn_resnet50_fpn", num_classes=2, imgsz=96, num_keypoints=4)
    assert zoo.roi_heads.keypoint_predictor.kps_score_lowres.out_channels == 4
    with pytest.raises(DetectionError, match="fasterrcnn_tiny is not a keypoint model"):
        build_model("fasterrcnn_tiny", num_classes=2, num_keypoints=4)


def test_checkpoint_carries_keypoints_and_rebuilds_the_model(tmp_path: Path) -> None:
    model = build_model(SMALL, num_classes=2, imgsz=96, num_keypoints=3)
    spec = {"names": ["a", "b", "c"], "flip": [0, 2, 1], "sigmas": [0.07] * 3}
    save_checkpoint(tmp_path / "best.pt", model, model_name=SMALL, class_names=["x"], imgsz=96, epoch=1, params={}, keypoints=spec)
    loaded, meta = load_model(tmp_path / "best.pt")
    assert meta["keypoints"] == spec and loaded.roi_heads.keypoint_predictor.kps_score_lowres.out_channels == 3


@pytest.mark.slow
def test_coco_keypoint_weights_with_a_new_keypoint_head(hub: Path) -> None:  # noqa: F811
    name = "keypointrcnn_resnet50_fpn"
    coco = _save(get_model_weights(name).DEFAULT.url, _randomised(get_model(name, weights=None, weights_backbone=None)).state_dict())
    model = build_model(name, num_classes=2, weights="default", num_keypoints=4)
    own = model.state_dict()
    assert own["roi_heads.keypoint_predictor.kps_score_lowres.weight"].shape[1] == 4
    assert torch.equal(own["roi_heads.keypoint_head.0.weight"], coco["roi_heads.keypoint_head.0.weight"])  # the COCO keypoint head is kept
    assert torch.equal(own["backbone.body.layer1.0.conv1.weight"], coco["backbone.body.layer1.0.conv1.weight"])


def test_keypoint_model_exports_to_onnx_with_parity(tmp_path: Path) -> None:
    images = sorted(make_sample(tmp_path / "raw", images=2, width=160, height=96, video_frames=4).glob("*.ppm"))
    torch.manual_seed(0)
    model = build_model(SMALL, num_classes=2, imgsz=128, num_keypoints=4)
    ckpt = save_checkpoint(tmp_path / "best.pt", model, model_name=SMALL, class_names=["quad"], imgsz=128, epoch=1, params={},
                           keypoints={"names": ["a", "b", "c", "d"], "flip": None, "sigmas": [0.07] * 4})  # fmt: skip
    result = export_onnx(ckpt, tmp_path / "model.onnx", images, report=tmp_path / "export.json")
    assert result["ok"] and result["matched"] > 0, result
    assert result["outputs"] == ["boxes", "labels", "scores", "keypoints"] and result["max_keypoint_diff_px"] <= 1.5
    onnx_pred, torch_pred = load_predictor(tmp_path / "model.onnx"), load_predictor(ckpt)
    image = read_image_rgb(images[0])
    o, t = onnx_pred.predict(image, threshold=0.0), torch_pred.predict(image, threshold=0.0)
    assert o.keypoints is not None and o.keypoints.shape == (len(o), 4, 3) and len(o) == len(t) > 0
    np.testing.assert_allclose(np.sort(o.keypoints[..., :2].ravel()), np.sort(t.keypoints[..., :2].ravel()), atol=1e-2)
    assert all(len(r["keypoints"]) == 4 for r in o.to_records())
    meta = onnx.load(str(tmp_path / "model.onnx")).metadata_props
    assert json.loads({p.key: p.value for p in meta}["detection.keypoints"])["names"] == ["a", "b", "c", "d"]
    video = infer_video(tmp_path / "raw" / "sample.mp4", tmp_path / "model.onnx", tmp_path / "video", threshold=0.0, max_frames=2)
    frames = [json.loads(line) for line in (tmp_path / "video" / "detections.jsonl").read_text().splitlines()]
    assert video["frames"] == 2 and all(len(d["keypoints"]) == 4 for f in frames for d in f["detections"]) and frames[0]["detections"]
