"""Fewer RPN proposals: set on a loaded model, traced into the ONNX graph and named in its metadata,
judged by mAP on the valid split before anything is written, and usable from predict on a checkpoint.

``project`` (tests/export/conftest.py) is a fasterrcnn_tiny trained on the sample data (its own count:
100 proposals per image); the tests that export work on a copy of it.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import yaml

from detection.data.images import read_image_rgb
from detection.data.table import images, read_table
from detection.engine.checkpoint import save_checkpoint
from detection.errors import DetectionError
from detection.inference.predictor import ONNX_META, load_predictor
from detection.models import build_model
from tests.export.conftest import _cli, copy_project
from tests.export.test_export_cli import _error

N = 5  # far fewer than the model's 100: the detections must change


def _valid_images(root: Path) -> list[Path]:
    return [root / "data" / "raw" / n for n in images(read_table(root / "data" / "processed" / "valid.csv"))["image"]]


def _set_tol(root: Path, tol: float) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["export"]["proposals_map_tol"] = tol
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_export_bakes_the_count_into_the_graph_with_parity_and_an_accuracy_figure(project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = copy_project(project, tmp_path / "copy")
    _set_tol(root, 1.0)  # the figures are what is checked here; the gate has its own test
    with contextlib.chdir(root):
        capsys.readouterr()
        _cli(["export", "--proposals", str(N), "--out", "models/fewer.onnx"])
        printed = capsys.readouterr().out
    assert f"proposals: {N} (model's own 100), mAP@0.5 on valid" in printed
    report = json.loads((root / "reports" / "export.json").read_text())
    assert report["ok"] and report["proposals"] == N and report["model_proposals"] == 100 and report["unmatched_onnx"] == 0
    check = report["proposals_check"]
    assert check["ok"] and check["proposals"] == N and check["model_proposals"] == 100 and check["images"] == 8
    assert check["model"]["map50"] > 0.05 and check["map50_drop"] == pytest.approx(check["model"]["map50"] - check["reduced"]["map50"], abs=1e-4)
    graph = root / "models" / "fewer.onnx"
    assert {p.key: p.value for p in onnx.load(str(graph)).metadata_props}[ONNX_META["proposals"]] == str(N)
    fewer, full = load_predictor(graph), load_predictor(root / "models" / "best.pt")
    torch_fewer = load_predictor(root / "models" / "best.pt", proposals=N)
    assert (fewer.proposals, full.proposals, torch_fewer.proposals, load_predictor(root / "models" / "model.onnx").proposals) == (N, 100, N, 100)
    changed = 0
    for path in _valid_images(root):
        image = read_image_rgb(path)
        a, b, c = fewer.predict(image, 0.0), torch_fewer.predict(image, 0.0), full.predict(image, 0.0)
        assert len(a) == len(b) and np.allclose(np.sort(a.scores), np.sort(b.scores), atol=1e-3)  # the graph is torch at N
        assert len(a) <= N * len(fewer.class_names)  # at most one box per class and proposal
        changed += len(a) != len(c) or not np.allclose(np.sort(a.scores), np.sort(c.scores), atol=1e-3)
    assert changed > 0  # 5 proposals instead of 100 change what the model finds
    with pytest.raises(DetectionError, match=f"exported with {N} RPN proposals per image; it cannot run with 20") as info:
        load_predictor(graph, proposals=20)
    assert "--proposals 20" in info.value.hint


def test_an_accuracy_drop_over_the_tolerance_fails_before_anything_is_written(project: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    root = copy_project(project, tmp_path / "copy")
    _set_tol(root, -1.0)  # no count can pass
    with contextlib.chdir(root):
        error = _error(["export", "--proposals", str(N), "--out", "models/fewer.onnx"], capfd)
    assert f"{N} RPN proposals per image (the model's own: 100) drop mAP@0.5 on data/processed/valid.csv from" in error and "more than map_tol -1" in error
    assert "nothing was exported" in error and not (root / "models" / "fewer.onnx").exists() and not list((root / "models").glob(".*.tmp"))
    report = json.loads((root / "reports" / "export.json").read_text())
    assert report["proposals_check"]["ok"] is False and report["proposals_check"]["model"]["map50"] > 0.05


def test_predict_on_a_checkpoint_with_fewer_proposals(project: Path, tmp_path: Path) -> None:
    from detection.inference.predict import predict

    first = _valid_images(project)[0]
    summary = predict(str(first), project / "models" / "best.pt", tmp_path / "out", threshold=0.0, proposals=N)
    assert summary["proposals"] == N and summary["images"] == 1 and 0 < summary["detections"] <= N * 5
    assert predict(str(first), project / "models" / "model.onnx", tmp_path / "full", threshold=0.0)["proposals"] == 100


def test_video_cli_on_a_checkpoint_with_fewer_proposals(project: Path, tmp_path: Path) -> None:
    from detection.data.sample import make_sample

    clip = make_sample(tmp_path / "sample", images=1, width=160, height=96, video_frames=4) / "sample.mp4"
    with contextlib.chdir(project):  # params.yaml's video section, overridden on the command line
        _cli(["video", str(clip), "--weights", "models/best.pt", "--proposals", str(N), "--threshold", "0", "--out", str(tmp_path / "video")])
    metrics = json.loads((tmp_path / "video" / "metrics.json").read_text())
    assert metrics["proposals"] == N and metrics["frames"] == 4 and 0 < metrics["detections"] <= 4 * N * 5


def test_proposals_on_a_one_stage_model_is_one_line(tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = build_model("fcos_mobilenet_v3_large", num_classes=3, imgsz=160)
    save_checkpoint(tmp_path / "fcos.pt", model, model_name="fcos_mobilenet_v3_large", class_names=["a", "b"], imgsz=160, epoch=0, params={})
    image = tmp_path / "x.png"
    import cv2

    cv2.imwrite(str(image), np.full((96, 160, 3), 128, np.uint8))
    monkeypatch.chdir(tmp_path)
    error = _error(["predict", "x.png", "--weights", "fcos.pt", "--proposals", "50", "--out", "out"], capfd)
    assert "proposals apply to two-stage detectors" in error and "not FCOS" in error
