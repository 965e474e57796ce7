"""Faster CPU versions of torchvision ops, checked against torchvision (tests/ops)."""

from detection.ops.roi_align import ThreadedMultiScaleRoIAlign, threaded_roi_align

__all__ = ["ThreadedMultiScaleRoIAlign", "threaded_roi_align"]
