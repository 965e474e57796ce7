"""draw_detections: a uint8 copy with boxes and captions, stable class colours, OpenCV 5 safe."""

from __future__ import annotations

import numpy as np
import pytest

from detection.viz.draw import class_color, draw_detections


def _image(h: int = 96, w: int = 160) -> np.ndarray:
    return np.full((h, w, 3), 90, np.uint8)


def test_draws_boxes_and_captions_on_a_copy() -> None:
    img = _image()
    out = draw_detections(img, np.array([[20, 30, 80, 90]], np.float32), ["stop"], np.array([0.87], np.float32))
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert (img == 90).all(), "the input must not be drawn on"
    color = class_color("stop")
    assert tuple(int(c) for c in out[60, 20]) == color  # left edge of the box
    assert tuple(int(c) for c in out[90, 50]) == color  # bottom edge (y2 = 90)
    assert (out[15:30, 20:60] != 90).any(), "caption above the box"
    assert (out[40:80, 30:70] == 90).all(), "inside of the box untouched"


def test_colour_is_stable_per_class_name() -> None:
    assert class_color("car") == class_color("car")
    assert class_color("car") != class_color("person")
    assert all(isinstance(c, int) and 0 <= c <= 255 for c in class_color("car"))
    out = draw_detections(_image(), np.array([[5, 20, 40, 60], [100, 20, 150, 60]]), ["car", "car"], [0.9, 0.4])
    assert tuple(int(c) for c in out[40, 5]) == tuple(int(c) for c in out[40, 100]) == class_color("car")


def test_float_and_grey_images_are_drawn_as_uint8() -> None:
    # OpenCV 5 refuses putText on float images: draw_detections converts instead of crashing.
    float_img = np.random.default_rng(0).random((48, 64, 3), dtype=np.float32)
    out = draw_detections(float_img, [[4, 10, 30, 40]], ["a"], [0.5])
    assert out.dtype == np.uint8 and out.shape == (48, 64, 3)
    grey = np.zeros((48, 64), np.uint8)
    assert draw_detections(grey, [[4, 10, 30, 40]], ["a"], [0.5]).shape == (48, 64, 3)


def test_odd_boxes_do_not_crash() -> None:
    boxes = np.array([[-50, -50, 500, 500], [120, 80, 10, 5], [np.nan, 0, 10, 10], [159.6, 95.7, 160.2, 96.0]], np.float64)
    out = draw_detections(_image(), boxes, ["a", "b", "c", "d"], np.array([0.9, 0.8, 0.7, 0.6]))
    assert out.shape == (96, 160, 3)
    tiny = draw_detections(_image(12, 16), [[0, 0, 15, 11]], ["a_very_long_class_name"], [0.99])
    assert tiny.shape == (12, 16, 3)


def test_no_detections_gives_an_unchanged_copy() -> None:
    img = _image()
    out = draw_detections(img, np.zeros((0, 4), np.float32), [], np.zeros(0, np.float32))
    assert np.array_equal(out, img) and out is not img


def test_lengths_must_agree() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        draw_detections(_image(), [[0, 0, 10, 10]], ["a", "b"], [0.5])


def test_track_ids_colour_and_caption_by_track() -> None:
    boxes = np.array([[5, 20, 40, 60], [100, 20, 150, 60]], np.float32)
    out = draw_detections(_image(), boxes, ["car", "car"], [0.9, 0.8], track_ids=[3, 4])
    assert tuple(int(c) for c in out[40, 5]) == class_color("track 3") != tuple(int(c) for c in out[40, 100])
    untracked = draw_detections(_image(), boxes, ["car", "car"], [0.9, 0.8], track_ids=[-1, 4])
    assert tuple(int(c) for c in untracked[40, 5]) == class_color("car")
    with pytest.raises(ValueError, match="track_ids"):
        draw_detections(_image(), boxes, ["car", "car"], [0.9, 0.8], track_ids=[1])


def test_ground_truth_captions_carry_no_score_and_write_image_round_trips(tmp_path) -> None:
    import cv2

    from detection.errors import DetectionError
    from detection.viz.draw import write_image

    img, box = _image(), np.array([[20, 30, 80, 90]], np.float32)
    truth = draw_detections(img, box, ["stop"], None)
    scored = draw_detections(img, box, ["stop"], [0.87])
    caption = (slice(0, 30), slice(20, 160))
    assert (truth[caption] != 90).sum() < (scored[caption] != 90).sum()  # "stop" is shorter than "stop 0.87"
    assert tuple(int(c) for c in truth[60, 20]) == class_color("stop")
    path = write_image(tmp_path / "gt.png", truth)
    assert np.array_equal(cv2.imread(str(path)), truth) and not list(tmp_path.glob("*.tmp*"))
    with pytest.raises(DetectionError, match="cannot write image"):
        write_image(tmp_path / "gt.unknown", truth)
