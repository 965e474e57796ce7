"""A camera source stopped with Ctrl-C keeps what was recorded (a file-backed capture stands in for the camera).

No camera exists on CI machines, so ``cv2.VideoCapture(0)`` is answered with a capture of a generated
video; the Ctrl-C arrives as a KeyboardInterrupt in the model step (the main thread, where Python
delivers SIGINT) after 30 frames. Everything else is the real camera path of ``infer_video``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import pytest

from detection.inference import video as video_mod
from tests.inference.synthetic import colour_predictor, make_video

STOP_AT = 30


@pytest.mark.parametrize("overlap", [True, False])
def test_ctrl_c_on_a_camera_keeps_the_frames_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, overlap: bool) -> None:
    clip = make_video(tmp_path / "camera.mp4", 120)
    real_capture = cv2.VideoCapture
    monkeypatch.setattr(video_mod.cv2, "VideoCapture", lambda src, *a: real_capture(str(clip)) if src == 0 else real_capture(src, *a))
    monkeypatch.chdir(tmp_path)  # "0" must not exist as a file, so it names camera 0
    base = colour_predictor()
    calls = {"n": 0}

    def run(chw):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] > STOP_AT:
            raise KeyboardInterrupt
        return base.run(chw)

    out = tmp_path / "out"
    metrics = video_mod.infer_video("0", base.weights, out, overlap=overlap, track=True, predictor=dataclasses.replace(base, run=run))
    assert metrics["frames"] == STOP_AT
    cap = cv2.VideoCapture(str(out / "annotated.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == STOP_AT and cap.read()[0]
    cap.release()
    lines = (out / "detections.jsonl").read_text().splitlines()
    assert [json.loads(line)["frame"] for line in lines] == list(range(STOP_AT))
    assert (out / "tracks.csv").read_text().startswith("track_id")
    assert not list(out.glob("*.tmp*"))


def test_ctrl_c_on_a_file_is_not_swallowed(tmp_path: Path) -> None:
    clip = make_video(tmp_path / "clip.mp4", 60)
    base = colour_predictor()

    def run(chw):  # noqa: ANN001, ANN202
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        video_mod.infer_video(clip, base.weights, tmp_path / "out", predictor=dataclasses.replace(base, run=run))
    assert not (tmp_path / "out" / "annotated.mp4").exists()  # a file run stopped half-way leaves no half output
