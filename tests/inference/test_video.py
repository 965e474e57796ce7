"""infer_video(): streamed frames -> annotated.mp4, detections.jsonl, metrics.json."""

from __future__ import annotations

import json
import shutil
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
    assert metrics["fps_model"] > 0 and metrics["fps_end_to_end"] > 0 and metrics["frames"] / metrics["model_seconds"] >= metrics["fps_end_to_end"]
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


def _one_error_line(args: list[str], capfd: pytest.CaptureFixture[str]) -> str:
    """``detection ARGS`` (in this process) fails with exit 2 and exactly one ``error:`` line on file
    descriptor 2, no raw FFmpeg/OpenCV output, no traceback."""
    from detection.cli import main

    capfd.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["-q", *args])
    err = capfd.readouterr().err
    assert exit_info.value.code == 2, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and len(err.strip().splitlines()) == 1, err
    return errors[0]


def test_zero_byte_mp4_text_mp4_and_missing_camera_are_one_line_each(model_onnx: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "zero.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("this is not a video\n" * 50)
    line = _one_error_line(["video", "zero.mp4", "--weights", str(model_onnx), "--out", "out"], capfd)
    assert "cannot read video zero.mp4 (the file is empty (0 bytes))" in line
    line = _one_error_line(["video", "text.mp4", "--weights", str(model_onnx), "--out", "out"], capfd)
    assert "cannot read video text.mp4" in line and "FFmpeg says: moov atom not found" in line  # folded in, not raw
    line = _one_error_line(["video", "7", "--weights", str(model_onnx), "--out", "out"], capfd)
    assert "cannot open camera 7" in line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*")), "no partial outputs"


def test_output_keeps_fps_size_and_frame_count_with_stride(sample_dir: Path, checkpoint_pt: Path, tmp_path: Path) -> None:
    src = sample_dir / "sample.mp4"
    frames, width, height, fps = _video_info(src)
    metrics = infer_video(src, checkpoint_pt, tmp_path / "video", threshold=0.0, stride=3, track=True)
    _check_outputs(tmp_path / "video", frames, width, height, fps, "torch")
    assert metrics["frames_inferred"] == -(-frames // 3) and metrics["stride"] == 3 and metrics["source_frames"] == frames
    rows = [json.loads(line) for line in (tmp_path / "video" / "detections.jsonl").read_text().splitlines()]
    assert [r["inferred"] for r in rows[:4]] == [True, False, False, True] and rows[1]["detections"] == rows[0]["detections"]
    assert all("track_id" in d for r in rows for d in r["detections"])
    for key in ("fps_decode", "fps_model", "fps_encode", "fps_end_to_end"):
        assert metrics[key] > 0, key


def test_folder_of_videos_and_sequential_mode(sample_dir: Path, model_onnx: Path, tmp_path: Path) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4"):
        shutil.copy(sample_dir / "sample.mp4", folder / name)
    (folder / "notes.txt").write_text("not a video")
    summary = infer_video(folder, model_onnx, tmp_path / "out", threshold=0.0, max_frames=6, overlap=False)
    assert [Path(v["source"]).name for v in summary["videos"]] == ["a.mp4", "b.mp4"] and summary["frames"] == 12
    for name in ("a", "b"):
        _check_outputs(tmp_path / "out" / name, 6, 160, 96, 15.0, "onnx")
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["frames"] == 12


def test_memory_stays_flat_over_thousands_of_frames(tmp_path: Path) -> None:
    """3000 frames streamed (decode, 'detect', track, draw, encode): RSS at the end ~ RSS at frame 100."""
    from tests.inference.synthetic import colour_predictor, make_video

    video = make_video(tmp_path / "long.mp4", 3000, 64, 48, half=4)
    metrics = infer_video(video, "unused", tmp_path / "out", threshold=0.3, track=True, predictor=colour_predictor(min_area=10))
    assert metrics["frames"] == 3000 and metrics["detections"] > 3000
    growth = metrics["rss_mb_end"] - metrics["rss_mb_frame_100"]
    assert growth < 25, f"RSS grew by {growth:.1f} MB between frame 100 and frame 3000 ({metrics['rss_mb_frame_100']} -> {metrics['rss_mb_end']} MB)"
