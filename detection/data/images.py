"""Reading images: one place, one error message for a missing, empty, truncated or undecodable file.

Files are read as bytes (``Path.read_bytes``) and decoded with ``cv2.imdecode``: ``cv2.imread`` takes a
``str`` path and crashes (a segmentation fault in OpenCV 5) on file names that are not valid UTF-8,
and it decodes a JPEG or PNG that is cut short without an error (the missing rows come back grey).
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from detection.errors import DetectionError

# Image files the tool reads, in order of preference when several files share a stem (GTSDB's .ppm first).
IMAGE_SUFFIXES = (".ppm", ".png", ".jpg", ".jpeg", ".bmp")

_JPEG_SOI, _JPEG_EOI = b"\xff\xd8", b"\xff\xd9"
_PNG_SIGNATURE, _PNG_IEND = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"


def display_path(path: Path) -> str:
    """``path`` printable whatever its bytes (a file name that is not UTF-8 shows its bytes escaped)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def truncation(data: bytes) -> str | None:
    """Why the bytes of a JPEG or PNG are cut short, or None (other formats are not checked)."""
    tail = data.rstrip(b"\x00\r\n ")[-32:]  # some writers pad after the end marker
    if data.startswith(_JPEG_SOI) and _JPEG_EOI not in tail:
        return "truncated JPEG: no end-of-image marker (the file was cut short, e.g. an interrupted copy)"
    if data.startswith(_PNG_SIGNATURE) and _PNG_IEND not in tail:
        return "truncated PNG: no IEND chunk (the file was cut short, e.g. an interrupted copy)"
    return None


def image_problem(path: Path) -> str | None:
    """What is wrong with the image file at ``path`` (missing, empty, truncated, not an image), or None."""
    try:
        decode_image(path)
    except DetectionError as exc:
        return exc.hint
    return None


def decode_image(path: Path) -> np.ndarray:
    """The image file at ``path`` as BGR uint8 (OpenCV's order); a DetectionError naming the file and
    the reason if it is missing, empty, truncated or not an image."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DetectionError(f"cannot read image {display_path(path)}", hint="the file is missing") from None
    except OSError as exc:
        raise DetectionError(f"cannot read image {display_path(path)}", hint=f"the file cannot be opened: {exc.strerror}") from None
    if not data:
        raise DetectionError(f"cannot read image {display_path(path)}", hint="the file is empty (0 bytes)")
    cut = truncation(data)
    if cut:
        raise DetectionError(f"cannot read image {display_path(path)}", hint=cut)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise DetectionError(f"cannot read image {display_path(path)}", hint="the file is corrupt or not an image")
    return img


def read_image_rgb(path: Path) -> np.ndarray:
    """An image file as an RGB uint8 array; a DetectionError naming the file if it cannot be decoded."""
    return cv2.cvtColor(decode_image(path), cv2.COLOR_BGR2RGB)
