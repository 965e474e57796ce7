"""Pretrained weights really load: on weights files the tests make (saved under the exact file name
torchvision expects in $TORCH_HOME/hub/checkpoints), the built detector's tensors equal the file's."""

from __future__ import annotations

import logging
import urllib.error
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models import get_model, get_model_weights
from torchvision.ops.misc import FrozenBatchNorm2d

from detection.errors import DetectionError
from detection.models import build_model
from detection.models.backbones import imagenet_url
from detection.models.weights import hub_checkpoint_path
from detection.models.zoo import backbone_weights


@pytest.fixture()
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache, and no network."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path / "torch" / "hub" / "checkpoints"


def _randomised(model: nn.Module) -> nn.Module:
    """Random BatchNorm statistics, so that a load that skips buffers is caught too."""
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    return model


def _save(url: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    path = hub_checkpoint_path(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


def _counted(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


def test_mobilenet_fpn_backbone_loads_imagenet_tensors(hub: Path) -> None:
    """The reviewed bug: `features.0.0.weight` in the file is `0.0.weight` in the backbone; all must load."""
    name = "fasterrcnn_mobilenet_v3_large_320_fpn"
    state = _save(backbone_weights(name).url, _randomised(get_model("mobilenet_v3_large")).state_dict())
    model = build_model(name, num_classes=3, weights="backbone")
    body = _counted(model.backbone.body.state_dict())
    assert len(body) > 250
    for key, value in body.items():
        assert torch.equal(value, state[f"features.{key}"]), key
    info = model.weights_info
    assert info["used"] == "backbone" and info["loaded_tensors"] == len(body) and info["norm"] == "FrozenBatchNorm2d"
    assert any(isinstance(m, FrozenBatchNorm2d) for m in model.backbone.body.modules())
    assert not all(p.requires_grad for p in model.backbone.body.parameters())  # trainable_layers=3: the stem is frozen


@pytest.mark.parametrize("name", ["fasterrcnn_mobilenet_v3_small", "retinanet_mobilenet_v3_small", "fcos_squeezenet1_1_single"])
def test_automatic_backbone_loads_imagenet_tensors(hub: Path, name: str) -> None:
    net = name.split("_", 1)[1].removesuffix("_single")
    state = _save(imagenet_url(net), _randomised(get_model(net)).state_dict())
    model = build_model(name, num_classes=4, weights="backbone", imgsz=128)
    extracted = _counted(model.backbone.body.state_dict())
    assert len(extracted) > 10
    for key, value in extracted.items():
        assert torch.equal(value, state[key]), key  # the network's own names, from the file unchanged
    assert model.weights_info["loaded_tensors"] == len(_counted(state))
    assert any(isinstance(m, FrozenBatchNorm2d) for m in model.modules()) or "squeezenet" in net  # squeezenet has no BN


@pytest.mark.parametrize("name", ["fasterrcnn_mobilenet_v3_large_320_fpn", "ssdlite320_mobilenet_v3_large"])
def test_coco_weights_load_and_the_class_head_is_replaced(hub: Path, name: str) -> None:
    state = _save(get_model_weights(name).DEFAULT.url, _randomised(get_model(name, weights=None, weights_backbone=None)).state_dict())
    model = build_model(name, num_classes=3, weights="default")
    own = _counted(model.state_dict())
    kept = [k for k in own if k in state and own[k].shape == state[k].shape]
    assert len(kept) > 0.9 * len(own)
    for key in kept:
        if "classification_head" not in key and "box_predictor" not in key:
            assert torch.equal(own[key], state[key]), key
    assert model.weights_info["loaded_tensors"] > 0.9 * len(_counted(state))


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2", "retinanet_resnet50_fpn", "fcos_resnet50_fpn", "ssd300_vgg16", "keypointrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn"]
)
def test_every_torchvision_family_loads_coco_and_imagenet_weights(hub: Path, name: str) -> None:
    coco = _save(get_model_weights(name).DEFAULT.url, _randomised(get_model(name, weights=None, weights_backbone=None)).state_dict())
    model = build_model(name, num_classes=3, weights="default")
    own = _counted(model.state_dict())
    equal = [k for k in own if k in coco and own[k].shape == coco[k].shape and torch.equal(own[k], coco[k])]
    assert len(equal) > 0.8 * len(own)
    arch = backbone_weights(name)
    net = {"ResNet50_Weights": "resnet50", "VGG16_Weights": "vgg16"}[type(arch).__name__]
    imagenet = _save(arch.url, _randomised(get_model(net)).state_dict())
    model = build_model(name, num_classes=3, weights="backbone")
    assert model.weights_info["loaded_tensors"] > 0.5 * len(_counted(imagenet)) or name.startswith("ssd")
    assert model.weights_info["loaded_tensors"] > 10


def test_offline_backbone_and_default_fail_in_one_line_naming_the_file(hub: Path) -> None:
    for name, weights, url in [
        ("fasterrcnn_mobilenet_v3_large_fpn", "backbone", backbone_weights("fasterrcnn_mobilenet_v3_large_fpn").url),
        ("retinanet_resnet50_fpn_v2", "default", get_model_weights("retinanet_resnet50_fpn_v2").DEFAULT.url),
        ("fasterrcnn_resnet18", "backbone", imagenet_url("resnet18")),
    ]:
        with pytest.raises(DetectionError) as info:
            build_model(name, num_classes=3, weights=weights, imgsz=128)
        message = str(info.value)
        assert "\n" not in message
        assert str(hub / Path(url).name) in message and "$TORCH_HOME/hub/checkpoints" in message


def test_weights_of_another_network_under_the_expected_name_fail(hub: Path) -> None:
    _save(imagenet_url("mobilenet_v3_small"), get_model("resnet18").state_dict())
    with pytest.raises(DetectionError, match=r"only 0 of \d+ tensors"):
        build_model("fasterrcnn_mobilenet_v3_small", num_classes=3, weights="backbone", imgsz=128)


def test_auto_is_pretrained_when_the_file_is_cached_else_from_scratch(hub: Path) -> None:
    model = build_model("fasterrcnn_mobilenet_v3_small", num_classes=3, weights="auto", imgsz=128)
    assert model.weights_info["used"] == "none" and model.weights_info["norm"] == "BatchNorm2d"
    assert all(p.requires_grad for p in model.parameters())
    _save(imagenet_url("mobilenet_v3_small"), get_model("mobilenet_v3_small").state_dict())
    model = build_model("fasterrcnn_mobilenet_v3_small", num_classes=3, weights="auto", imgsz=128)
    assert model.weights_info["used"] == "backbone" and model.weights_info["requested"] == "auto"
    tiny = build_model("fasterrcnn_tiny", num_classes=3, weights="auto")  # has no pretrained file: scratch, and says so
    assert (tiny.weights_info["requested"], tiny.weights_info["used"]) == ("auto", "none")


@pytest.mark.parametrize("layers", [0, 5])
def test_trainable_layers_freeze_the_backbone_stages(hub: Path, layers: int) -> None:
    _save(imagenet_url("mobilenet_v3_small"), get_model("mobilenet_v3_small").state_dict())
    model = build_model("fasterrcnn_mobilenet_v3_small", num_classes=3, weights="backbone", imgsz=128, trainable_layers=layers)
    trainable = [p.requires_grad for p in model.backbone.body.parameters()]
    assert (not any(trainable)) if layers == 0 else all(trainable)
    assert all(p.requires_grad for p in model.roi_heads.parameters())


def test_a_checkpoint_for_other_classes_seeds_a_new_run(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from detection.engine.checkpoint import save_checkpoint

    old = build_model("fasterrcnn_tiny", num_classes=6)
    save_checkpoint(tmp_path / "best.pt", old, epoch=1, metrics={}, model_name="fasterrcnn_tiny", class_names=list("abcde"), imgsz=320, params={})
    with caplog.at_level(logging.INFO, logger="detection.models.weights"):
        new = build_model("fasterrcnn_tiny", num_classes=3, weights=str(tmp_path / "best.pt"))
    assert new.roi_heads.box_predictor.cls_score.out_features == 3
    old_state, new_state = old.state_dict(), new.state_dict()
    for key, value in new_state.items():
        if "box_predictor" not in key:
            assert torch.equal(value, old_state[key]), key
    skipped = new.weights_info["skipped"]
    assert skipped and all("box_predictor" in k for k in skipped)
    assert "box_predictor.cls_score.weight" in caplog.text


def test_a_pretrained_model_round_trips_through_a_checkpoint(hub: Path, tmp_path: Path) -> None:
    """Trained with FrozenBatchNorm (pretrained), rebuilt from scratch by load_model: same outputs."""
    from detection.engine.checkpoint import load_model, save_checkpoint

    _save(imagenet_url("mobilenet_v3_small"), _randomised(get_model("mobilenet_v3_small")).state_dict())
    model = build_model("fasterrcnn_mobilenet_v3_small", num_classes=3, weights="backbone", imgsz=128).eval()
    save_checkpoint(tmp_path / "best.pt", model, epoch=1, metrics={}, model_name="fasterrcnn_mobilenet_v3_small", class_names=["a", "b"], imgsz=128, params={})
    loaded, _ = load_model(tmp_path / "best.pt")
    img = [torch.rand(3, 96, 128, generator=torch.Generator().manual_seed(0))]
    with torch.no_grad():
        a, b = model.backbone(img[0][None]), loaded.backbone(img[0][None])
    for key in a:
        torch.testing.assert_close(a[key], b[key])
