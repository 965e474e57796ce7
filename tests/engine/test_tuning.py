"""train.speed presets set the RPN/RoI sampling sizes of a torchvision two-stage detector; explicit values win.
set_inference_proposals sets the proposals per image at inference, and only on a model with an RPN."""

from __future__ import annotations

import pytest
from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

from detection.engine.tuning import apply_speed_params, inference_proposals, set_inference_proposals
from detection.errors import DetectionError
from detection.models import build_model


def _model():
    return fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, num_classes=3)


def test_fast_preset_sets_sampling_sizes_and_explicit_values_win() -> None:
    default = apply_speed_params(_model())
    assert default.roi_heads.fg_bg_sampler.batch_size_per_image == 512 and default.rpn._post_nms_top_n["training"] == 2000
    fast = apply_speed_params(_model(), speed="fast")
    assert fast.roi_heads.fg_bg_sampler.batch_size_per_image == 128 and fast.rpn._post_nms_top_n["training"] == 1000
    assert fast.rpn._post_nms_top_n["testing"] == default.rpn._post_nms_top_n["testing"]  # inference unchanged
    mixed = apply_speed_params(_model(), roi_batch=256, speed="fast")
    assert mixed.roi_heads.fg_bg_sampler.batch_size_per_image == 256 and mixed.rpn._post_nms_top_n["training"] == 1000


def test_set_inference_proposals_on_models_with_and_without_an_rpn() -> None:
    tiny = build_model("fasterrcnn_tiny", num_classes=3, imgsz=160)
    assert inference_proposals(tiny) == 100 and set_inference_proposals(tiny, 7) == 100
    assert inference_proposals(tiny) == 7 and tiny.rpn._post_nms_top_n["training"] == 300  # training untouched
    assert tiny.rpn._pre_nms_top_n["testing"] >= 7
    with pytest.raises(DetectionError, match="proposals must be >= 1"):
        set_inference_proposals(tiny, 0)
    fcos = build_model("fcos_mobilenet_v3_large", num_classes=3, imgsz=160)
    assert inference_proposals(fcos) is None
    with pytest.raises(DetectionError, match="two-stage detectors .* not FCOS") as info:
        set_inference_proposals(fcos, 50)
    assert "export.proposals: null" in info.value.hint
