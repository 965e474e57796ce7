from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch

from detection.errors import DetectionError
from detection.models import available, build_model
from detection.models.weights import hub_checkpoint_path


def test_registry_lists_tiny_and_zoo() -> None:
    names = {s.name for s in available()}
    assert {"fasterrcnn_tiny", "fasterrcnn_resnet50_fpn", "fasterrcnn_mobilenet_v3_large_fpn", "retinanet_resnet50_fpn"} <= names


def test_unknown_model_suggests_close_names() -> None:
    with pytest.raises(DetectionError, match="fasterrcnn_tiny"):
        build_model("fasterrcnn_tiyn", num_classes=3)


def test_tiny_trains_and_predicts_on_a_real_image(sample_dir: Path) -> None:
    from detection.data.images import read_image_rgb

    img = torch.from_numpy(read_image_rgb(sample_dir / "00000.ppm")).permute(2, 0, 1).float() / 255
    model = build_model("fasterrcnn_tiny", num_classes=6, imgsz=128)
    model.train()
    losses = model([img], [{"boxes": torch.tensor([[10.0, 10.0, 40.0, 40.0]]), "labels": torch.tensor([2])}])
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    assert all(torch.isfinite(v) for v in losses.values())
    model.eval()
    with torch.no_grad():
        (det,) = model([img])
    assert det["boxes"].shape[1] == 4
    if len(det["boxes"]):  # boxes are in the original image's pixels
        assert float(det["boxes"][:, 2].max()) <= img.shape[2] + 1e-3


def test_zoo_model_gets_the_requested_classes() -> None:
    model = build_model("fasterrcnn_mobilenet_v3_large_320_fpn", num_classes=4, weights="none", imgsz=320)
    assert model.roi_heads.box_predictor.cls_score.out_features == 4


def test_weights_from_a_state_dict_file(tmp_path: Path) -> None:
    src = build_model("fasterrcnn_tiny", num_classes=3)
    torch.save(src.state_dict(), tmp_path / "w.pt")
    loaded = build_model("fasterrcnn_tiny", num_classes=3, weights=str(tmp_path / "w.pt"))
    for a, b in zip(src.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_a_text_file_is_not_weights(tmp_path: Path) -> None:
    bad = tmp_path / "notes.pt"
    bad.write_text("hello")
    with pytest.raises(DetectionError, match="notes.pt"):
        build_model("fasterrcnn_tiny", num_classes=3, weights=str(bad))


def test_offline_pretrained_weights_say_where_to_put_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_network(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(DetectionError) as info:
        build_model("fasterrcnn_mobilenet_v3_large_320_fpn", num_classes=3, weights="default")
    message = str(info.value)
    assert str(tmp_path / "hub" / "checkpoints") in message
    assert str(hub_checkpoint_path("https://x/fasterrcnn_mobilenet_v3_large_320_fpn-907ea3f9.pth").parent) in message
