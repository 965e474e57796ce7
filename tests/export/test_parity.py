"""match_detections(): detections of two runtimes matched by label and IoU, not by rank.

These build Detections by hand, so they hold on every CPU: no float path is involved."""

from __future__ import annotations

import numpy as np
import pytest

from detection.export.parity import box_iou, match_detections
from detection.inference.predictor import Detections


def dets(boxes: list[list[float]], scores: list[float], labels: list[int]) -> Detections:
    return Detections(np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32), np.array(labels, np.int64), [str(i) for i in labels])


def crowd(n: int = 100, seed: int = 0) -> Detections:
    """``n`` overlapping boxes with scores tied to within 1e-8, as an untrained model returns them."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 60, (n, 2))
    wh = rng.uniform(8, 30, (n, 2))
    scores = 0.2 + rng.integers(0, 3, n) * 1e-8
    return dets(np.hstack([xy, xy + wh]).tolist(), scores.tolist(), rng.integers(1, 3, n).tolist())


def permuted(d: Detections, order: np.ndarray, jitter: float = 0.0, seed: int = 1) -> Detections:
    noise = np.random.default_rng(seed).uniform(-jitter, jitter, d.boxes.shape).astype(np.float32)
    return Detections(d.boxes[order] + noise[order], d.scores[order], d.labels[order], [d.names[i] for i in order])


def test_box_iou() -> None:
    iou = box_iou(np.array([[0, 0, 10, 10], [0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]]))
    np.testing.assert_allclose(iou, [[1, 50 / 150, 0], [1, 50 / 150, 0]])
    assert box_iou(np.zeros((0, 4)), np.zeros((3, 4))).shape == (0, 3)


def test_near_tied_detections_in_another_order_pass() -> None:
    a = crowd()
    b = permuted(a, np.random.default_rng(3).permutation(len(a)), jitter=2e-4)
    m = match_detections(a, b, box_atol=1e-3, score_atol=1e-3)
    assert (m.matched, m.unmatched_a, m.unmatched_b) == (100, 0, 0)
    assert m.max_box_diff <= 2.5e-4 and m.max_score_diff == 0 and m.ok


def test_a_different_box_cut_at_the_cap_is_borderline() -> None:
    """The case seen on another CPU: 100 vs 100 detections whose last one differs (a tie at the cap)."""
    a = crowd(101)
    keep_a, keep_b = np.r_[0:99, 99], np.r_[0:99, 100]  # the 100th detection: a tie broken differently
    ta, tb = permuted(a, keep_a), permuted(a, keep_b)
    assert not match_detections(ta, tb, box_atol=1e-3, score_atol=1e-3).ok  # 100 is not the cap: a real difference
    m = match_detections(ta, tb, box_atol=1e-3, score_atol=1e-3, cap=100)
    assert m.matched >= 99 and m.unmatched_a == m.unmatched_b == 0 and m.ok


def test_two_overlapping_tied_proposals_each_kept_by_one_runtime_are_borderline() -> None:
    """Seen here: at the cap, torch kept a box and onnxruntime another one 2 px lower (IoU 0.6, same
    score); they are two ties, not one detection 2 px off."""
    kept = dets([[0, 0, 30, 30], [12, 10, 20, 18]], [0.9, 0.2515459], [1, 1])
    other = dets([[0, 0, 30, 30], [12, 8, 20, 16]], [0.9, 0.2515459], [1, 1])
    m = match_detections(kept, other, box_atol=1e-3, score_atol=1e-3, cap=2)
    assert (m.matched, m.borderline_a, m.borderline_b, m.max_box_diff) == (1, 1, 1, 0.0) and m.ok
    m = match_detections(kept, other, box_atol=1e-3, score_atol=1e-3, cap=100)  # not at a cut: an NMS swap (tied scores)
    assert (m.matched, m.swaps, m.max_box_diff) == (2, 1, 0.0) and m.ok
    other = dets(other.boxes.tolist(), [0.9, 0.2524], [1, 1])  # the same 2 px with another score: a real difference
    m = match_detections(kept, other, box_atol=1e-3, score_atol=1e-3, cap=100)

    assert m.matched == 2 and m.max_box_diff == pytest.approx(2.0) and not m.ok


def test_a_detection_at_the_score_threshold_is_borderline() -> None:
    a = dets([[0, 0, 10, 10], [40, 40, 60, 60]], [0.9, 0.0500001], [1, 1])
    b = dets([[0, 0, 10, 10]], [0.9], [1])  # the other runtime scored it 0.0499999: cut
    assert not match_detections(a, b).ok  # without the threshold, a real difference
    m = match_detections(a, b, score_floor=0.05)
    assert (m.matched, m.unmatched_a, m.borderline_a) == (1, 0, 1) and m.ok


def test_shifted_boxes_fail() -> None:
    """Three boxes 0.5 px off (more than an NMS swap budget of 2 for 100 pairs; one lone box moved with
    its score unchanged cannot be told from a swap, see the next tests)."""
    a = crowd()
    b = Detections(a.boxes.copy(), a.scores, a.labels, a.names)
    b.boxes[[17, 40, 63]] += np.float32(0.5)
    m = match_detections(a, b, box_atol=0.05)
    assert m.matched == 100 and m.max_box_diff == pytest.approx(0.5, abs=1e-5) and not m.ok
    assert match_detections(a, b, box_atol=0.6).ok


def test_a_missing_confident_detection_fails() -> None:
    a = dets([[0, 0, 10, 10], [40, 40, 60, 60], [70, 0, 90, 30]], [0.95, 0.9, 0.3], [1, 2, 2])
    b = dets([[0, 0, 10, 10], [70, 0, 90, 30]], [0.95, 0.3], [1, 2])
    m = match_detections(a, b, box_atol=1.0, score_atol=1e-3, score_floor=0.05)
    assert (m.matched, m.unmatched_a, m.unmatched_b) == (2, 1, 0) and not m.ok


def test_a_changed_score_fails() -> None:
    a = dets([[0, 0, 10, 10]], [0.9], [1])
    b = dets([[0, 0, 10, 10]], [0.85], [1])
    m = match_detections(a, b)
    assert m.matched == 1 and m.max_score_diff == pytest.approx(0.05, abs=1e-6) and not m.ok


def test_labels_never_match_across_classes() -> None:
    a = dets([[0, 0, 10, 10]], [0.9], [1])
    b = dets([[0, 0, 10, 10]], [0.9], [2])
    m = match_detections(a, b)
    assert (m.matched, m.unmatched_a + m.borderline_a, m.unmatched_b + m.borderline_b) == (0, 1, 1)


def test_assignment_is_optimal_not_greedy() -> None:
    """Greedy by score would pair a[0] with b[0] (IoU 0.6) and leave a[1] with nothing; the assignment
    pairs each box with its own copy."""
    a = dets([[0, 0, 10, 10], [3, 0, 13, 10]], [0.5, 0.5], [1, 1])
    b = dets([[3, 0, 13, 10], [0, 0, 10, 10]], [0.5, 0.5], [1, 1])
    m = match_detections(a, b, box_atol=1e-6, score_atol=1e-6)
    assert m.matched == 2 and m.max_box_diff == 0 and m.ok


def test_empty_on_both_sides() -> None:
    empty = dets([], [], [])
    assert match_detections(empty, empty, box_atol=0.0, score_atol=0.0).ok


def test_identical_zero_area_boxes_match() -> None:
    """Untrained FCOS returns zero-area boxes; two runtimes that agree on them agree."""
    a = dets([[5, 5, 5, 5], [0, 0, 10, 10]], [0.4, 0.3], [1, 1])
    m = match_detections(a, permuted(a, np.array([1, 0])), box_atol=1e-3, score_atol=1e-3)
    assert m.matched == 2 and m.ok
    moved = dets([[9, 9, 9, 9], [0, 0, 10, 10]], [0.4, 0.3], [1, 1])
    assert not match_detections(a, moved, box_atol=1e-3, score_atol=1e-3).ok


def test_one_nms_swap_of_equal_scores_is_tolerated_many_are_not() -> None:
    """Of two overlapping proposals with one score, each runtime's NMS kept the other: one such pair
    is a tie; every box moving with unchanged scores (shifted regression) is a different model."""
    a = crowd(60, seed=4)
    b = Detections(a.boxes.copy(), a.scores.copy(), a.labels, a.names)
    b.boxes[7, 2:] += np.float32(3.0)  # another box of the same score, IoU >= 0.5 with a[7]
    m = match_detections(a, b, box_atol=1e-3, score_atol=1e-3)
    assert (m.matched, m.swaps, m.max_box_diff) == (60, 1, 0.0) and m.ok
    b.scores[7] += np.float32(1e-4)  # not a tie: a real difference
    assert not match_detections(a, b, box_atol=1e-3, score_atol=1e-3).ok
    shifted = Detections(a.boxes + np.float32(0.7), a.scores, a.labels, a.names)
    m = match_detections(a, shifted, box_atol=1e-3, score_atol=1e-3)
    assert m.swaps == 60 and m.max_box_diff == pytest.approx(0.7, abs=1e-4) and not m.ok


def test_flat_boxes_at_the_border_match_within_the_box_tolerance() -> None:
    """Boxes clipped flat at the image border have no IoU; two runtimes' copies match by their corners."""
    a = dets([[200, 0, 200, 96.427], [10, 10, 40, 40]], [0.9, 0.8], [1, 1])
    b = dets([[200, 0, 200, 96.430], [10, 10, 40, 40]], [0.9, 0.8], [1, 1])
    m = match_detections(a, b, box_atol=0.05)
    assert (m.matched, m.unmatched_a, m.unmatched_b) == (2, 0, 0) and m.ok
    far = dets([[200, 0, 200, 97.0], [10, 10, 40, 40]], [0.9, 0.8], [1, 1])
    assert not match_detections(a, far, box_atol=0.05).ok  # a flat box 0.57 px off is a difference


def test_keypoints_of_matched_pairs_are_compared_in_any_order() -> None:
    a = crowd(20)
    points = np.random.default_rng(4).uniform(0, 90, (len(a), 5, 3)).astype(np.float32)
    a = Detections(a.boxes, a.scores, a.labels, a.names, points)
    order = np.random.default_rng(5).permutation(len(a))
    near = points[order].copy()
    near[..., :2] += 1.0  # one heatmap step: within keypoint_atol
    m = match_detections(a, Detections(a.boxes[order], a.scores[order], a.labels[order], [a.names[i] for i in order], near))
    assert m.ok and m.max_keypoint_diff == pytest.approx(1.0, abs=1e-4) and m.max_keypoint_score_diff == 0
    far, logit = near.copy(), points[order].copy()
    far[3, 2, 0] += 2.0  # one keypoint of one detection moved 3 px
    logit[7, 1, 2] += 0.01  # one keypoint score changed
    for changed in (far, logit):
        m = match_detections(a, Detections(a.boxes[order], a.scores[order], a.labels[order], [a.names[i] for i in order], changed))
        assert not m.ok and m.matched == len(a)
