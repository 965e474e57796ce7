"""export_onnx(): a checked .onnx with metadata, and a torch-vs-onnxruntime parity report on real images."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import detection.export.onnx as export_mod
from detection.data.sample import make_sample
from detection.engine.checkpoint import save_checkpoint
from detection.errors import DetectionError
from detection.export.onnx import detection_cap, export_onnx, score_floor, with_other_size
from detection.export.parity import check_parity
from detection.engine.checkpoint import load_model
from detection.data.images import read_image_rgb
from detection.inference.predictor import load_predictor, torch_predictor
from detection.inference.predictor import ONNX_META, Predictor
from detection.models import build_model

CLASS_NAMES = ["car", "person", "sign"]
CAR_VIDEO = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "videos" / "car-detection.mp4"


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Real images of several sizes: two sample images (160x96), the first one resized to 320x192,
    80x48 and 120x200 (portrait; resized x1.6 inside the model, a size that plain torchvision tracing
    gets one pixel short), so that the dynamic height/width of the graph is exercised, and a frame of
    the shared car video (768x432) when it is present."""
    sample = make_sample(tmp_path_factory.mktemp("sample") / "sample", images=2, width=160, height=96, video_frames=0)
    paths = sorted(sample.glob("*.ppm"))
    img = cv2.imread(str(paths[0]))
    for name, size in (("big.png", (320, 192)), ("small.png", (80, 48)), ("portrait.png", (120, 200))):
        cv2.imwrite(str(sample / name), cv2.resize(img, size, interpolation=cv2.INTER_AREA))
        paths.append(sample / name)
    cap = cv2.VideoCapture(str(CAR_VIDEO))
    ok, frame = cap.read()
    cap.release()
    if ok:
        cv2.imwrite(str(sample / "car.png"), frame)
        paths.append(sample / "car.png")
    return paths


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained fasterrcnn_tiny checkpoint (random boxes: fine for parity)."""
    torch.manual_seed(0)
    model = build_model("fasterrcnn_tiny", num_classes=len(CLASS_NAMES) + 1, imgsz=320)
    path = tmp_path_factory.mktemp("models") / "best.pt"
    return save_checkpoint(path, model, model_name="fasterrcnn_tiny", class_names=CLASS_NAMES, imgsz=320, epoch=3, params={})


@pytest.fixture(scope="module")
def exported(weights: Path, images: list[Path]) -> tuple[Path, Path, dict]:
    out, report = weights.parent / "model.onnx", weights.parent / "reports" / "export.json"
    return out, report, export_onnx(weights, out, images, opset=17, box_atol=1e-3, score_atol=1e-3, report=report)


def test_report(exported: tuple[Path, Path, dict], images: list[Path], weights: Path) -> None:
    out, report_path, report = exported
    assert report["ok"] is True
    assert json.loads(report_path.read_text()) == json.loads(json.dumps(report))
    assert report["opset"] == 17 and report["box_atol_px"] == 1e-3 and report["score_atol"] == 1e-3 and "dynamo=False" in report["exporter"]
    assert report["providers"] == ["CPUExecutionProvider"]
    assert report["file_size_bytes"] == out.stat().st_size > 0
    assert [r["image"] for r in report["images"]] == [str(p) for p in images]
    for row in report["images"]:
        assert row["ok"] and row["matched"] > 0 and row["unmatched_torch"] == row["unmatched_onnx"] == 0
        assert row["max_box_diff_px"] <= 1e-3 and row["max_score_diff"] <= 1e-3
    assert report["max_box_diff_px"] == max(r["max_box_diff_px"] for r in report["images"])
    assert {(r["width"], r["height"]) for r in report["images"]} >= {(160, 96), (320, 192), (80, 48), (120, 200)}
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")], "no temp files left behind"


def test_onnx_file_checks_loads_and_carries_metadata(exported: tuple[Path, Path, dict], weights: Path) -> None:
    out = exported[0]
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props[ONNX_META["class_names"]]) == CLASS_NAMES
    assert props[ONNX_META["imgsz"]] == "320" and props[ONNX_META["model_name"]] == "fasterrcnn_tiny"
    assert props[ONNX_META["source"]] == str(weights)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["images"] and [o.name for o in sess.get_outputs()] == ["boxes", "labels", "scores"]
    assert sess.get_inputs()[0].shape == [3, "height", "width"]
    boxes, labels, scores = sess.run(None, {"images": np.random.default_rng(0).random((3, 150, 250), dtype=np.float32)})
    assert boxes.shape == (len(labels), 4) and scores.shape == labels.shape and labels.dtype == np.int64
    assert sess.get_modelmeta().custom_metadata_map[ONNX_META["class_names"]] == json.dumps(CLASS_NAMES)


def test_parity_failure_raises_with_the_numbers_and_keeps_no_model(
    weights: Path, images: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_load = export_mod.load_predictor

    def shifted(path: Path, device: str = "cpu") -> Predictor:  # an ONNX model whose boxes are 0.5 px off
        pred = real_load(path, device)
        return replace(pred, run=lambda chw: (lambda b, l, s: (b + 0.5, l, s))(*pred.run(chw)))

    monkeypatch.setattr(export_mod, "load_predictor", shifted)
    out, report = tmp_path / "model.onnx", tmp_path / "export.json"
    with pytest.raises(DetectionError, match=r"ONNX parity failed .* box diff 0\.5 px") as err:
        export_onnx(weights, out, images[:1], report=report)
    assert "box_atol 0.05 px" in str(err.value) and str(report) in str(err.value)
    assert not out.exists(), "a model that fails parity must not be written"
    assert json.loads(report.read_text())["ok"] is False


def _perturb(src: Path, dst: Path, name_part: str, delta: float) -> list[str]:
    """Copy the ONNX file ``src`` to ``dst`` with ``delta`` added to every initializer whose name has
    ``name_part``; return the names changed."""
    graph = onnx.load(str(src))
    changed = []
    for init in graph.graph.initializer:
        if name_part in init.name:
            arr = onnx.numpy_helper.to_array(init).copy()
            init.CopyFrom(onnx.numpy_helper.from_array(arr + np.asarray(delta, arr.dtype), init.name))
            changed.append(init.name)
    onnx.save(graph, str(dst))
    return changed


def _parity(weights: Path, onnx_path: Path, images: list[Path], model_edit=None) -> list[dict]:
    model, meta = load_model(weights, "cpu")
    if model_edit is not None:
        model_edit(model)
    return check_parity(
        torch_predictor(model, meta, weights), load_predictor(onnx_path), {p: read_image_rgb(p) for p in images},
        box_atol=0.05, score_atol=1e-3, score_floor=score_floor(model), cap=detection_cap(model),
    )  # fmt: skip


def test_an_onnx_file_with_perturbed_weights_fails_parity(exported: tuple[Path, Path, dict], weights: Path, images: list[Path], tmp_path: Path) -> None:
    """A real mismatch: the box regression of the exported graph shifted by 0.5 (a pixel or more)."""
    bad = tmp_path / "perturbed.onnx"
    assert _perturb(exported[0], bad, "bbox_pred.bias", 0.5), "the box regressor's bias is an initializer of the graph"
    rows = _parity(weights, bad, images[:2])
    assert not any(r["ok"] for r in rows)
    assert max(r["max_box_diff_px"] for r in rows) > 0.05
    assert _parity(weights, exported[0], images[:2])[0]["ok"], "the unperturbed file still passes"


def test_a_model_with_a_changed_threshold_fails_parity(exported: tuple[Path, Path, dict], weights: Path, images: list[Path]) -> None:
    """Torch with a stricter NMS than the graph was exported with: confident detections only onnx has."""

    def stricter_nms(model: torch.nn.Module) -> None:
        model.roi_heads.nms_thresh = 0.1

    rows = _parity(weights, exported[0], images[:2], stricter_nms)
    assert not any(r["ok"] for r in rows)
    assert all(r["unmatched_onnx"] > 0 and r["onnx_detections"] > r["torch_detections"] for r in rows)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"out_name": "model.bin"}, "must end in .onnx"),
        ({"no_images": True}, "at least one real image"),
        ({"opset": 10}, "opset 10 is too old"),
        ({"missing_image": True}, "cannot read image .*absent.png"),
    ],
)
def test_user_errors(weights: Path, images: list[Path], tmp_path: Path, kwargs: dict, message: str) -> None:
    out = tmp_path / kwargs.get("out_name", "model.onnx")
    check = [] if kwargs.get("no_images") else [tmp_path / "absent.png"] if kwargs.get("missing_image") else images[:1]
    with pytest.raises(DetectionError, match=message):
        export_onnx(weights, out, check, opset=kwargs.get("opset", 17))
    assert not out.exists()


def test_missing_checkpoint(tmp_path: Path, images: list[Path]) -> None:
    with pytest.raises(DetectionError, match="checkpoint not found: .*nothing.pt"):
        export_onnx(tmp_path / "nothing.pt", tmp_path / "model.onnx", images[:1])


def test_graph_returns_empty_outputs_when_nothing_passes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("fasterrcnn_tiny", num_classes=2, imgsz=320).eval()
    model.roi_heads.score_thresh = 0.99  # an untrained model scores ~0.2: no detection survives
    export_mod.export_graph(model, tmp_path / "empty.onnx", torch.rand(3, 96, 160), opset=17)
    sess = ort.InferenceSession(str(tmp_path / "empty.onnx"), providers=["CPUExecutionProvider"])
    boxes, labels, scores = sess.run(None, {"images": np.random.default_rng(0).random((3, 120, 200), dtype=np.float32)})
    assert boxes.shape == (0, 4) and labels.shape == scores.shape == (0,)


def test_check_images_of_one_size_get_a_crop_of_another_aspect(tmp_path: Path) -> None:
    one = {tmp_path / "a.png": np.zeros((96, 160, 3), np.uint8), tmp_path / "b.png": np.ones((96, 160, 3), np.uint8)}
    grown = with_other_size(one)
    assert list(grown)[:2] == list(one) and len(grown) == 3
    crop = grown[tmp_path / "a.png#crop96x96"]
    assert crop.shape == (96, 96, 3) and crop.flags["C_CONTIGUOUS"]
    two = {**one, tmp_path / "c.png": np.zeros((120, 200, 3), np.uint8)}
    assert with_other_size(two) == two  # two sizes already: nothing added
