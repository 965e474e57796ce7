"""Export from the CLI: a corrupt checkpoint is named before the data; a corrupt .onnx is one line; TorchScript."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from detection.data.sample import make_sample
from detection.engine.checkpoint import save_checkpoint
from detection.export.onnx import export_onnx
from detection.models import build_model


def _error(args: list[str], capfd: pytest.CaptureFixture[str]) -> str:
    """``detection ARGS`` in this process: exit 2 and exactly one line on stderr, returned."""
    from detection.cli import main

    capfd.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["-q", *args])
    lines = capfd.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_corrupt_checkpoint_is_named_before_the_missing_valid_csv(tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no dataset, no valid.csv here
    (tmp_path / "corrupt.pt").write_bytes(b"PK\x03\x04 not really a zip")
    error = _error(["export", "--weights", "corrupt.pt", "--out", "model.onnx"], capfd)
    assert error.startswith("error: corrupt.pt: not a readable checkpoint") and "valid.csv" not in error


def test_corrupt_onnx_in_predict_and_video_is_one_line(tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken.onnx").write_bytes(b"\x00garbage" * 10)
    sample = make_sample(tmp_path / "sample", images=1, width=160, height=96, video_frames=4)
    for args in (["predict", str(sample / "00000.ppm")], ["video", str(sample / "sample.mp4")]):
        assert "broken.onnx: not a readable ONNX model" in _error([*args, "--weights", "broken.onnx", "--out", "out"], capfd)


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
