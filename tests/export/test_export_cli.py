"""Export from the CLI: a corrupt checkpoint is named before the data; a corrupt .onnx is one line; TorchScript."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from detection.data.sample import make_sample
from detection.engine.checkpoint import save_checkpoint
from detection.export.onnx import export_onnx
from detection.models import build_model


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "detection", *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_corrupt_checkpoint_is_named_before_the_missing_valid_csv(tmp_path: Path) -> None:
    (tmp_path / "corrupt.pt").write_bytes(b"PK\x03\x04 not really a zip")
    run = _cli(["export", "--weights", "corrupt.pt", "--out", "model.onnx"], tmp_path)  # no dataset, no valid.csv here
    assert run.returncode == 2
    error = run.stderr.strip().splitlines()[-1]
    assert error.startswith("error: corrupt.pt: not a readable checkpoint") and "valid.csv" not in run.stderr, run.stderr


def test_corrupt_onnx_in_predict_and_video_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "broken.onnx").write_bytes(b"\x00garbage" * 10)
    sample = make_sample(tmp_path / "sample", images=1, width=160, height=96, video_frames=4)
    for args in (["predict", str(sample / "00000.ppm")], ["video", str(sample / "sample.mp4")]):
        run = _cli([*args, "--weights", "broken.onnx", "--out", "out"], tmp_path)
        errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
        assert run.returncode == 2 and len(errors) == 1 and "broken.onnx: not a readable ONNX model" in errors[0], run.stderr
        assert "Traceback" not in run.stderr


def test_torchscript_beside_the_onnx(tmp_path: Path) -> None:
    sample = make_sample(tmp_path / "sample", images=1, width=160, height=96, video_frames=0)
    torch.manual_seed(0)
    model = build_model("fasterrcnn_tiny", num_classes=3, imgsz=160)
    weights = save_checkpoint(tmp_path / "best.pt", model, model_name="fasterrcnn_tiny", class_names=["a", "b"], imgsz=160, epoch=0, params={})
    report = export_onnx(weights, tmp_path / "model.onnx", [sample / "00000.ppm"], torchscript=True)
    scripted = torch.jit.load(report["torchscript"])
    image = torch.rand(3, 96, 160)
    _, out = scripted([image])
    model.eval()
    with torch.inference_mode():
        eager = model([image])[0]
    assert torch.allclose(out[0]["boxes"], eager["boxes"], atol=1e-4) and report["torchscript"].endswith("model.torchscript.pt")
    assert "longest side" in report["size_rule"] and report["opset"] == 17
