"""Reading images: one place, one error message for a missing or undecodable file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from detection.errors import DetectionError

# Image files the tool reads, in order of preference when several files share a stem (GTSDB's .ppm first).
IMAGE_SUFFIXES = (".ppm", ".png", ".jpg", ".jpeg", ".bmp")


def read_image_rgb(path: Path) -> np.ndarray:
    """An image file as an RGB uint8 array; a DetectionError naming the file if it cannot be decoded."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        hint = "the file is missing" if not Path(path).exists() else "the file is corrupt or not an image"
        raise DetectionError(f"cannot read image {path}", hint=hint)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
