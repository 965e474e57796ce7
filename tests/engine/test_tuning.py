"""train.speed presets set the RPN/RoI sampling sizes of a torchvision two-stage detector; explicit values win."""

from __future__ import annotations

from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

from detection.engine.tuning import apply_speed_params


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
