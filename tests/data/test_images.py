"""read_image_rgb / image_problem on real files: good, truncated, empty, text named .jpg, non-UTF-8 names."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from detection.data.images import image_problem, read_image_rgb
from detection.errors import DetectionError


@pytest.fixture
def photo() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = cv2.resize(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8), (160, 120), interpolation=cv2.INTER_LINEAR)
    cv2.rectangle(img, (20, 20), (60, 80), (0, 0, 255), -1)
    return img


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".ppm", ".bmp"])
def test_reads_good_images_as_rgb(tmp_path: Path, photo: np.ndarray, suffix: str) -> None:
    path = tmp_path / f"good{suffix}"
    cv2.imwrite(str(path), photo)
    rgb = read_image_rgb(path)
    assert rgb.shape == (120, 160, 3) and rgb.dtype == np.uint8
    assert rgb[50, 40, 0] > 200 and rgb[50, 40, 2] < 60  # the red rectangle, in RGB order
    assert image_problem(path) is None


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_a_truncated_file_is_an_error_not_a_grey_image(tmp_path: Path, photo: np.ndarray, suffix: str) -> None:
    path = tmp_path / f"cut{suffix}"
    cv2.imwrite(str(path), photo)
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    with pytest.raises(DetectionError, match=rf"cannot read image .*cut\{suffix}") as err:
        read_image_rgb(path)
    assert "truncated" in err.value.hint
    assert "truncated" in image_problem(path)


def test_a_jpeg_padded_after_its_end_marker_reads(tmp_path: Path, photo: np.ndarray) -> None:
    path = tmp_path / "padded.jpg"
    cv2.imwrite(str(path), photo)
    path.write_bytes(path.read_bytes() + b"\x00" * 100)
    assert read_image_rgb(path).shape == (120, 160, 3)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.jpg", b"", "empty"),
        ("notes.jpg", b"this is a text file, not a picture\n", "not an image"),
        ("absent.png", None, "missing"),
    ],
)
def test_bad_files_name_the_file_and_the_reason(tmp_path: Path, name: str, content: bytes | None, reason: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DetectionError, match=f"cannot read image .*{name}") as err:
        read_image_rgb(path)
    assert reason in err.value.hint
    assert reason in image_problem(path)


def test_a_file_name_that_is_not_utf8(tmp_path: Path, photo: np.ndarray) -> None:
    """cv2.imread(str(path)) crashes the process on such a name; reading bytes does not."""
    name = os.fsdecode(b"caf\xe9.jpg")  # Latin-1 bytes, not UTF-8: a surrogate escape in Python
    path = tmp_path / name
    ok, buf = cv2.imencode(".jpg", photo)
    assert ok
    path.write_bytes(buf.tobytes())
    assert read_image_rgb(path).shape == (120, 160, 3)
    path.write_bytes(b"")
    with pytest.raises(DetectionError, match=r"caf\\xe9\.jpg") as err:
        read_image_rgb(path)
    str(err.value).encode("utf-8")  # the message itself prints on any terminal
