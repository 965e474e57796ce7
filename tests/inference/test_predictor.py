"""load_predictor: one interface over a .pt checkpoint (torch) and an exported .onnx (onnxruntime)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from detection.data.images import read_image_rgb
from detection.errors import DetectionError
from detection.export.parity import match_detections
from detection.inference.predictor import Detections, load_predictor


@pytest.fixture(scope="module")
def image(sample_dir: Path) -> np.ndarray:
    return read_image_rgb(sample_dir / "00000.ppm")


def _check_detections(det: Detections, h: int, w: int, names: list[str]) -> None:
    n = len(det)
    assert det.boxes.dtype == np.float32 and det.boxes.shape == (n, 4)
    assert det.scores.dtype == np.float32 and det.scores.shape == (n,)
    assert det.labels.dtype == np.int64 and det.labels.shape == (n,)
    assert ((det.labels >= 1) & (det.labels <= len(names))).all()
    assert det.names == [names[i - 1] for i in det.labels]
    assert (det.boxes[:, [0, 2]] <= w + 1e-3).all() and (det.boxes[:, [1, 3]] <= h + 1e-3).all() and (det.boxes >= 0).all()


def test_torch_backend(checkpoint_pt: Path, image: np.ndarray, class_names: list[str]) -> None:
    pred = load_predictor(checkpoint_pt)
    assert (pred.backend, pred.class_names, pred.imgsz, pred.model_name) == ("torch", class_names, 320, "fasterrcnn_tiny")
    det = pred.predict(image, threshold=0.0)
    assert len(det) > 0, "an untrained model still returns low-score boxes at threshold 0"
    _check_detections(det, *image.shape[:2], class_names)
    high = pred.predict(image, threshold=float(np.median(det.scores)))
    assert 0 < len(high) <= len(det) and (high.scores >= np.median(det.scores)).all()
    assert len(pred.predict(image, threshold=1.01)) == 0
    rec = det.to_records()[0]
    assert set(rec) == {"box", "score", "label"} and len(rec["box"]) == 4 and rec["label"] in class_names


def test_onnx_backend_round_trips_metadata_and_matches_torch(
    checkpoint_pt: Path, model_onnx: Path, image: np.ndarray, class_names: list[str]
) -> None:
    pred = load_predictor(model_onnx)
    assert (pred.backend, pred.class_names, pred.imgsz, pred.model_name) == ("onnx", class_names, 320, "fasterrcnn_tiny")
    assert pred.providers == ["CPUExecutionProvider"]
    det = pred.predict(image, threshold=0.0)
    _check_detections(det, *image.shape[:2], class_names)
    ref = load_predictor(checkpoint_pt).predict(image, threshold=0.0)
    match = match_detections(ref, det, box_atol=1e-3, score_atol=1e-3)
    assert match.matched > 0 and match.ok, match


def test_rejects_a_non_rgb_uint8_image(checkpoint_pt: Path) -> None:
    with pytest.raises(ValueError, match="RGB uint8"):
        load_predictor(checkpoint_pt).predict(np.zeros((32, 32, 3), np.float32), 0.5)


def test_unknown_weights_suffix(tmp_path: Path) -> None:
    weights = tmp_path / "weights.txt"
    weights.write_text("not a model")
    with pytest.raises(DetectionError, match="weights.txt: unknown weights file type") as err:
        load_predictor(weights)
    assert ".pt" in str(err.value) and ".onnx" in str(err.value)


def test_missing_weights(tmp_path: Path) -> None:
    with pytest.raises(DetectionError, match="not found: .*missing.pt"):
        load_predictor(tmp_path / "missing.pt")


def test_corrupt_onnx(tmp_path: Path) -> None:
    weights = tmp_path / "broken.onnx"
    weights.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(DetectionError, match="broken.onnx: not a readable ONNX model"):
        load_predictor(weights)


def test_onnx_without_metadata(tmp_path: Path) -> None:
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [3, None, None])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [3, None, None])
    graph = helper.make_graph([helper.make_node("Identity", ["image"], ["out"])], "g", [x], [y])
    weights = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(weights))
    with pytest.raises(DetectionError, match="foreign.onnx: an ONNX model without this tool's metadata"):
        load_predictor(weights)
