"""Speed levers applied to a built model: RPN/RoI sampling sizes and channels-last memory format.

The sampling sizes are those of torchvision's two-stage detectors (``rpn.fg_bg_sampler``,
``roi_heads.fg_bg_sampler``, the training proposal count); a model without them is left unchanged
(with a warning when a size was asked for).

``set_inference_proposals`` is the inference-time lever: how many RPN proposals per image reach the box
head (torchvision's ``rpn_post_nms_top_n_test``). The box head's two fully connected layers and the
RoI pooling run once per proposal, so on a small-backbone model on the CPU its cost is nearly
proportional to this count; fewer proposals trade recall for speed (``detection export
--proposals``, checked by mAP on the valid split).
"""

from __future__ import annotations

import logging

import torch
from torch import nn
from torchvision.ops import MultiScaleRoIAlign

from detection.errors import DetectionError
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


def inference_proposals(model: nn.Module) -> int | None:
    """RPN proposals per image at inference (post-NMS top-n) of a two-stage detector; None for others."""
    rpn = getattr(model, "rpn", None)
    return int(rpn._post_nms_top_n["testing"]) if rpn is not None else None


def set_inference_proposals(model: nn.Module, proposals: int) -> int:
    """Keep ``proposals`` RPN proposals per image at inference (the pre-NMS top-n per level is raised
    to at least that); returns the model's own count. A model without an RPN is a ``DetectionError``."""
    own = inference_proposals(model)
    if own is None:
        raise DetectionError(
            f"proposals apply to two-stage detectors (Faster/Mask/Keypoint R-CNN), not {type(model).__name__}",
            hint="drop --proposals (export.proposals: null) for this model",
        )
    if proposals < 1:
        raise DetectionError(f"proposals must be >= 1, got {proposals}", hint=f"e.g. {max(1, own * 2 // 3)} (this model's own count is {own})")
    rpn = model.rpn
    rpn._post_nms_top_n["testing"] = int(proposals)
    rpn._pre_nms_top_n["testing"] = max(rpn._pre_nms_top_n["testing"], int(proposals))
    if proposals != own:
        log.info("RPN proposals per image at inference: %d (the model's own: %d)", proposals, own)
    return own
