"""int8 export: a quantized .onnx beside the fp32 one, with its metadata, judged by agreement and mAP on real images.

``project`` (tests/export/conftest.py) is a small fasterrcnn_tiny trained on the sample data, so that
the valid split has a real, non-zero mAP for both graphs and the detections have spread-out scores.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import onnx
import pytest

from detection.data.images import read_image_rgb
from detection.errors import DetectionError
from detection.export.quantize import QUANTIZED_KEY, agreement, int8_path, quantization, quantize_export, quantize_int8
from detection.inference.predictor import ONNX_META, load_predictor
from tests.export.test_export_cli import _error


def test_int8_file_with_metadata_and_accuracy_figures(project: Path) -> None:
    fp32, int8 = project / "models" / "model.onnx", project / "models" / "model.int8.onnx"
    assert int8_path(fp32) == int8 and int8.is_file() and int8.stat().st_size < fp32.stat().st_size / 2
    graph = onnx.load(str(int8))
    ops = {n.op_type for n in graph.graph.node}
    assert {"MatMulInteger", "DynamicQuantizeLinear"} <= ops and "Gemm" not in ops and "Conv" in ops  # box head int8, convolutions float
    meta, meta_fp32 = ({p.key: p.value for p in onnx.load(str(f)).metadata_props} for f in (int8, fp32))
    assert all(meta.get(k) == meta_fp32.get(k) for k in ONNX_META.values()) and meta_fp32["detection.class_names"]  # class names, imgsz, size rule, source kept
    q = quantization(int8)
    assert q is not None and q["op_types"] == ["MatMul", "Gemm"] and q["weights"] == "int8" and json.loads(meta[QUANTIZED_KEY]) == q
    assert quantization(fp32) is None
    report = json.loads((project / "reports" / "export.json").read_text())
    assert report["ok"] and report["onnx"] == "models/model.onnx"  # the fp32 parity report is still there
    section = report["int8"]
    assert section["ok"] and section["onnx"] == "models/model.int8.onnx"
    valid = section["valid"]
    assert valid["images"] == 8 and valid["fp32"]["map50"] > 0.05  # a trained model: a real mAP to lose
    assert valid["map50_drop"] <= section["map_tol"] == 0.01
    assert valid["map50_drop"] == pytest.approx(valid["fp32"]["map50"] - valid["int8"]["map50"], abs=1e-4)


def test_int8_runs_like_any_onnx_and_agrees_with_fp32(project: Path) -> None:
    fp32, int8 = project / "models" / "model.onnx", project / "models" / "model.int8.onnx"
    ref, new = load_predictor(fp32), load_predictor(int8)
    assert new.backend == "onnx" and new.class_names == ref.class_names and new.imgsz == ref.imgsz == 160
    images = {p: read_image_rgb(p) for p in sorted((project / "data" / "raw").glob("*.ppm"))[:4]}
    # a model trained for seconds scores its boxes ~0.15: compare the detections above 0.1
    result = agreement(ref, new, images, threshold=0.1)
    assert result["detections"] > 20 and result["matched_fraction"] >= 0.9
    assert result["max_score_diff"] < 0.05 and result["max_box_diff_px"] < 8  # int8 box head: small shifts, not parity
    det = new.predict(next(iter(images.values())), threshold=0.1)
    assert len(det) > 0 and det.boxes.shape[1] == 4 and set(det.names) <= set(ref.class_names)


def test_failing_accuracy_check_writes_nothing_but_the_report(project: Path, tmp_path: Path) -> None:
    fp32 = project / "models" / "model.onnx"
    shutil.copy2(project / "reports" / "export.json", tmp_path / "export.json")
    out = tmp_path / "model.int8.onnx"
    check = sorted((project / "data" / "raw").glob("*.ppm"))[:2]
    valid = project / "data" / "processed" / "valid.csv"
    with pytest.raises(DetectionError, match=r"int8 accuracy check failed .* mAP@0.5 on .*valid.csv drops .* more than map_tol -1") as info:
        quantize_export(fp32, check, out=out, valid=valid, images_root=project / "data" / "raw", map_tol=-1.0, report=tmp_path / "export.json")
    assert "was not written" in info.value.hint and not out.exists() and not list(tmp_path.glob(".*.tmp"))
    report = json.loads((tmp_path / "export.json").read_text())
    assert report["ok"] and report["int8"]["ok"] is False and report["int8"]["valid"]["fp32"]["map50"] > 0
    with pytest.raises(DetectionError, match="agree on 2 check images"):  # an agreement nothing can reach
        quantize_export(fp32, check, out=out, threshold=0.1, min_matched=1.01)
    assert not out.exists()


def test_bad_inputs_are_one_clear_error(project: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    int8 = project / "models" / "model.int8.onnx"
    with pytest.raises(DetectionError, match="already quantized"):
        quantize_int8(int8, tmp_path / "twice.onnx")
    (tmp_path / "broken.onnx").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(DetectionError, match="broken.onnx: not a readable ONNX model"):
        quantize_int8(tmp_path / "broken.onnx", tmp_path / "out.onnx")
    with contextlib.chdir(project):
        error = _error(["export", "--quantize", "int4"], capfd)
    assert "int4" in error and "int8" in error
