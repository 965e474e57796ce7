"""The one image-size rule of every stage: the longest side becomes ``imgsz``, the aspect ratio is kept.

Training, evaluation, predict, video and export all feed the model the original image; the model's
own transform (torchvision's ``GeneralizedRCNNTransform``, built by ``detection.models`` with
``min_size = max_size = imgsz`` from the checkpoint) resizes it, so the rule cannot differ between
stages: a 1280x720 (16:9) frame runs at 320x180 when ``imgsz`` is 320, a 160x96 image at 320x192.
Boxes come back in pixels of the original image. SSD models resize to a fixed square instead.
This module states the rule (for reports, benchmarks and the README) and computes it, as torchvision
does, so a test can hold the models to it.
"""

from __future__ import annotations

import math


def model_input_size(height: int, width: int, imgsz: int) -> tuple[int, int]:
    """``(height, width)`` the model runs an ``height x width`` image at: the longest side scaled to
    ``imgsz`` (``floor(side * imgsz / longest)``, torchvision's float arithmetic)."""
    if height < 1 or width < 1 or imgsz < 1:
        raise ValueError(f"sizes must be positive, got {height}x{width} at imgsz {imgsz}")
    scale = min(float(imgsz) / min(height, width), float(imgsz) / max(height, width))
    return math.floor(height * scale), math.floor(width * scale)


def size_rule(imgsz: int) -> str:
    """The rule in words, with an example, for reports and ONNX metadata."""
    h, w = model_input_size(720, 1280, imgsz)
    return f"longest side resized to imgsz={imgsz}, aspect ratio kept (1280x720 -> {w}x{h}); boxes in original pixels"
