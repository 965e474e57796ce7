"""Speed levers applied to a built model: RPN/RoI sampling sizes and channels-last memory format.

The sampling sizes are those of torchvision's two-stage detectors (``rpn.fg_bg_sampler``,
``roi_heads.fg_bg_sampler``, the training proposal count); a model without them is left unchanged
(with a warning when a size was asked for).
"""

from __future__ import annotations

import logging

import torch
from torch import nn
from torchvision.ops import MultiScaleRoIAlign

from detection.ops import ThreadedMultiScaleRoIAlign

log = logging.getLogger(__name__)

# train.speed presets: sampling sizes set unless the params give their own. "fast" was measured on BCCD
# (fasterrcnn_mobilenet_v3_large_320_fpn, scratch, 5 epochs): valid mAP@0.5 0.520 vs 0.526 (mAP 0.306
# both) at 3.25x the reference loop's images/s (defaults: 1.17x); see the README "Training" section.
SPEED_PRESETS: dict[str, dict[str, int]] = {"default": {}, "fast": {"roi_batch": 128, "rpn_post_nms": 1000}}


def apply_speed_params(
    model: nn.Module, roi_batch: int | None = None, rpn_batch: int | None = None, rpn_post_nms: int | None = None,
    channels_last: bool = False, threaded_roi_align: bool = True, speed: str = "default",
) -> nn.Module:
    """Set the sampling sizes that are not None (``speed`` names a preset of ``SPEED_PRESETS`` for those
    left None); ``threaded_roi_align`` swaps the box head's RoI pooler for
    ``detection.ops.ThreadedMultiScaleRoIAlign`` (same results, multi-threaded on the CPU)."""
    preset = SPEED_PRESETS[speed]
    roi_batch = preset.get("roi_batch") if roi_batch is None else roi_batch
    rpn_batch = preset.get("rpn_batch") if rpn_batch is None else rpn_batch
    rpn_post_nms = preset.get("rpn_post_nms") if rpn_post_nms is None else rpn_post_nms
    rpn, roi = getattr(model, "rpn", None), getattr(model, "roi_heads", None)
    asked = {"roi_batch": roi_batch, "rpn_batch": rpn_batch, "rpn_post_nms": rpn_post_nms}
    if any(v is not None for v in asked.values()) and (rpn is None or roi is None):
        log.warning("%s has no RPN/RoI heads: %s ignored", type(model).__name__, {k: v for k, v in asked.items() if v is not None})
    else:
        if roi_batch is not None:
            roi.fg_bg_sampler.batch_size_per_image = roi_batch
        if rpn_batch is not None:
            rpn.fg_bg_sampler.batch_size_per_image = rpn_batch
        if rpn_post_nms is not None:
            rpn._post_nms_top_n["training"] = rpn_post_nms
            rpn._pre_nms_top_n["training"] = max(rpn._pre_nms_top_n["training"], rpn_post_nms)
    if threaded_roi_align and roi is not None and type(roi.box_roi_pool) is MultiScaleRoIAlign:
        roi.box_roi_pool = ThreadedMultiScaleRoIAlign.like(roi.box_roi_pool)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model
