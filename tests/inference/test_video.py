"""infer_video(): streamed frames -> annotated.mp4, detections.jsonl, metrics.json."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from detection.errors import DetectionError
from detection.inference.video import infer_video


def _video_info(path: Path) -> tuple[int, int, int, float]:
    """(frames counted by decoding, width, height, fps) of a video file."""
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"{path} does not open"
    frames = 0
    while cap.read()[0]:
        frames += 1
    info = (frames, int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), cap.get(cv2.CAP_PROP_FPS))
    cap.release()
    return info


def _check_outputs(out: Path, frames: int, width: int, height: int, fps: float, backend: str) -> dict:
    assert sorted(p.name for p in out.iterdir()) == ["annotated.mp4", "detections.jsonl", "metrics.json", "tracks.csv"], "no temp files left"
    n, w, h, out_fps = _video_info(out / "annotated.mp4")
    assert (n, w, h) == (frames, width, height)
    assert out_fps == pytest.approx(fps, rel=1e-3)
    rows = [json.loads(line) for line in (out / "detections.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in rows] == list(range(frames))
    assert rows[-1]["time"] == pytest.approx((frames - 1) / fps, abs=1e-3)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["frames"] == frames and metrics["backend"] == backend
    assert metrics["fps_model"] > 0 and metrics["fps_end_to_end"] > 0 and metrics["fps_model"] >= metrics["fps_end_to_end"]
    assert metrics["detections"] == sum(len(r["detections"]) for r in rows)
    return metrics


def test_sample_video_onnx(sample_dir: Path, model_onnx: Path, tmp_path: Path) -> None:
    src = sample_dir / "sample.mp4"
    _, width, height, fps = _video_info(src)
    metrics = infer_video(src, model_onnx, tmp_path / "video", threshold=0.0)
    assert metrics == _check_outputs(tmp_path / "video", 20, width, height, fps, "onnx")
    assert metrics["detections"] > 0 and metrics["source"] == str(src) and metrics["threshold"] == 0.0


def test_sample_video_torch_max_frames_and_rerun(sample_dir: Path, checkpoint_pt: Path, tmp_path: Path) -> None:
    src = sample_dir / "sample.mp4"
    infer_video(src, checkpoint_pt, tmp_path / "video", threshold=0.5, max_frames=3)
    metrics = infer_video(src, checkpoint_pt, tmp_path / "video", threshold=0.5, max_frames=5)  # replaces the outputs
    _check_outputs(tmp_path / "video", 5, 160, 96, 15.0, "torch")
    assert metrics["max_frames"] == 5


def test_real_car_video(car_video: Path, model_onnx: Path, tmp_path: Path) -> None:
    _, width, height, fps = _video_info(car_video)
    infer_video(car_video, model_onnx, tmp_path / "car", threshold=0.0, max_frames=20)
    _check_outputs(tmp_path / "car", 20, width, height, fps, "onnx")
    assert (width, height) == (768, 432)


def test_missing_video(model_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(DetectionError, match="video not found: .*absent.mp4"):
        infer_video(tmp_path / "absent.mp4", model_onnx, tmp_path / "out")


def test_text_file_named_mp4(model_onnx: Path, tmp_path: Path) -> None:
    fake = tmp_path / "fake.mp4"
    fake.write_text("this is not a video\n" * 50)
    with pytest.raises(DetectionError, match="cannot read video .*fake.mp4"):
        infer_video(fake, model_onnx, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir()), "no partial outputs"


def test_weights_of_unknown_type(sample_dir: Path, tmp_path: Path) -> None:
    weights = tmp_path / "weights.txt"
    weights.write_text("x")
    with pytest.raises(DetectionError, match="weights.txt: unknown weights file type"):
        infer_video(sample_dir / "sample.mp4", weights, tmp_path / "out")


def test_max_frames_must_be_positive(sample_dir: Path, model_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(DetectionError, match="max_frames"):
        infer_video(sample_dir / "sample.mp4", model_onnx, tmp_path / "out", max_frames=0)
