"""Every registered model builds, trains one step (forward + backward) and predicts in image coordinates.

A fast subset runs by default (small models, 96x64 images at 96-128 px); the whole registry with -m slow.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from detection.models import available, build_model, get_spec
from detection.models.aliases import ALIASES
from detection.models.backbones import networks, stages
from detection.models.families import UNFIT_PREFIXES

FAST = [
    "fasterrcnn_tiny",
    "fasterrcnn_mini_darknet_nano_head",
    "fasterrcnn_mbv3_small_nano_head",
    "fasterrcnn_squeezenet1_1_small_head",
    "fasterrcnn_shufflenet_v2_x0_5_single",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "retinanet_mobilenet_v3_small",
    "fcos_mobilinet_v2",
    "ssdlite320_mobilenet_v3_large",
]
ANCHORS = """fasterrcnn_resnet50_fpn fasterrcnn_mobilenetv3_large_fpn fasterrcnn_mobilenetv3_large_320_fpn fasterrcnn_convnext_tiny
fasterrcnn_convnext_small fasterrcnn_custom_resnet fasterrcnn_darknet fasterrcnn_efficientnet_b0 fasterrcnn_mbv3_small_nano_head
fasterrcnn_mini_darknet fasterrcnn_mini_darknet_nano_head fasterrcnn_squeezenet1_0 fasterrcnn_squeezenet1_1
fasterrcnn_mini_squeezenet1_1_small_head fasterrcnn_mini_squeezenet1_1_tiny_head fasterrcnn_mobilevit_xxs fasterrcnn_nano
fasterrcnn_squeezenet1_1_small_head fasterrcnn_resnet18 fasterrcnn_resnet50_fpn_v2 fasterrcnn_resnet101 fasterrcnn_resnet152
fasterrcnn_vitdet fasterrcnn_vitdet_tiny fasterrcnn_regnet_y_400mf fasterrcnn_vgg16 fcos_mobilinet_v2 retinanet_resnet50
retinanet_mobilenet_v2 ssd_vgg16""".split()


def _train_and_predict(name: str, imgsz: int) -> None:
    torch.manual_seed(0)
    model = _small_budget(build_model(name, num_classes=3, weights="none", imgsz=imgsz))
    images = [torch.rand(3, 64, 96), torch.rand(3, 72, 80)]
    targets = [{"boxes": torch.tensor([[8.0, 8.0, 40.0, 30.0]]), "labels": torch.tensor([1])}, {"boxes": torch.tensor([[20.0, 10.0, 70.0, 60.0]]), "labels": torch.tensor([2])}]
    model.train()
    losses = model(images, targets)
    total = sum(losses.values())
    assert torch.isfinite(total), losses
    total.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    _calibrate_norms(model, images)
    _keep_every_box(model)
    with torch.no_grad():
        detections = model(images)
    for det, img in zip(detections, images, strict=True):
        assert set(det) >= {"boxes", "labels", "scores"}
        assert len(det["boxes"]) > 0, "with the score threshold at 0 an untrained model still proposes boxes"
        boxes = det["boxes"]
        assert float(boxes[:, [0, 2]].max()) <= img.shape[2] + 1e-3 and float(boxes[:, [1, 3]].max()) <= img.shape[1] + 1e-3
        assert float(boxes.min()) >= -1e-3
        assert set(det["labels"].tolist()) <= {1, 2}


def _calibrate_norms(model: nn.Module, images: list[torch.Tensor]) -> None:
    """Leave ``model`` in eval mode with batch-norm statistics of its own eval-mode activations on ``images``.

    An untrained deep net blows up in eval with the initial running statistics (Inception-v3: activations
    ~1e10), and also with those of a train step: stochastic depth drops residual paths in train mode only,
    so EfficientNet-B7's 55 such blocks reach ~4e4 in eval and every proposal of an image is degenerate.
    """
    model.eval()
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: exactly this pass's statistics
        m.train()
    with torch.no_grad():
        model.backbone(model.transform(images)[0].tensors)
    for m in norms:
        m.eval()


def _small_budget(model: nn.Module) -> nn.Module:
    """Fewer proposals, RoIs and candidates than real training uses (the 1024-wide box head dominates a step)."""
    if hasattr(model, "rpn"):
        model.rpn._pre_nms_top_n, model.rpn._post_nms_top_n = {"training": 200, "testing": 100}, {"training": 100, "testing": 50}
        model.roi_heads.fg_bg_sampler.batch_size_per_image = 64
        model.roi_heads.detections_per_img = 20
    if hasattr(model, "topk_candidates"):
        model.topk_candidates, model.detections_per_img = 100, 20
    return model


def _keep_every_box(model: nn.Module) -> None:
    if hasattr(model, "roi_heads"):
        model.roi_heads.score_thresh = 0.0
    else:
        model.score_thresh = 0.0


@pytest.mark.parametrize("name", FAST)
def test_fast_subset_trains_and_predicts(name: str) -> None:
    _train_and_predict(name, imgsz=128 if "ssd" not in name else 320)


@pytest.mark.slow
@pytest.mark.parametrize("name", [s.name for s in available()])
def test_every_registered_model_trains_and_predicts(name: str) -> None:
    if name.startswith("keypointrcnn"):
        pytest.skip("needs keypoint targets: test_keypoint_rcnn_trains_on_keypoints")
    _train_and_predict(name, imgsz=128 if get_spec(name).family != "ssd" else get_spec(name).imgsz)


@pytest.mark.parametrize("name", ["retinanet_mobilenet_v3_small", "fcos_mobilenet_v3_small"])
def test_dense_heads_never_spend_detection_slots_on_the_background_class(name: str) -> None:
    torch.manual_seed(0)
    model = _small_budget(build_model(name, num_classes=3, weights="none", imgsz=96)).eval()
    _keep_every_box(model)
    with torch.no_grad():
        model.head.classification_head.cls_logits.bias[0::3] += 5.0  # class 0 of every anchor scores highest
        detections = model([torch.rand(3, 64, 96), torch.rand(3, 72, 80)])
    for det in detections:
        assert set(det["labels"].tolist()) <= {1, 2}
        assert len(det["boxes"]) == model.detections_per_img  # the cap is filled with real classes


def test_keypoint_rcnn_trains_on_keypoints() -> None:
    torch.manual_seed(0)
    model = _small_budget(build_model("keypointrcnn_resnet50_fpn", num_classes=2, imgsz=96))
    kps = torch.zeros(1, 17, 3)
    kps[0, :, 0], kps[0, :, 1], kps[0, :, 2] = torch.linspace(10, 40, 17), torch.linspace(10, 50, 17), 1
    model.train()
    losses = model([torch.rand(3, 64, 96)], [{"boxes": torch.tensor([[8.0, 8.0, 44.0, 56.0]]), "labels": torch.tensor([1]), "keypoints": kps}])
    assert "loss_keypoint" in losses and torch.isfinite(losses["loss_keypoint"])
    sum(losses.values()).backward()
    model.eval()
    model.roi_heads.score_thresh = 0.0
    with torch.no_grad():
        (det,) = model([torch.rand(3, 64, 96)])
    assert det["keypoints"].shape[1:] == (17, 3)


def test_registry_lists_more_than_60_models_and_every_anchor_name() -> None:
    specs = available()
    names = {s.name for s in specs}
    assert len(names) >= 60
    shown = names | {a for s in specs for a in s.aliases}
    assert set(ANCHORS) <= shown, set(ANCHORS) - shown
    for name in ANCHORS:
        get_spec(name)  # accepted by --model / model.name
    for alias, (target, _) in ALIASES.items():
        assert get_spec(alias).name == target


def test_any_torchvision_network_is_a_backbone_by_name() -> None:
    spec = get_spec("retinanet_resnext50_32x4d_single")
    assert spec.family == "retinanet" and "resnext50_32x4d" in spec.description
    assert [s.stride for s in stages("resnet18")] == [4, 8, 16, 32]
    assert [s.channels for s in stages("resnet18")] == [64, 128, 256, 512]
    swin = stages("swin_t")
    assert [s.channels for s in swin] == [96, 192, 384, 768] and swin[0].nhwc


@pytest.mark.slow
def test_networks_that_do_not_fit_are_the_declared_ones() -> None:
    from detection.errors import DetectionError

    for net in networks():
        if net.startswith(UNFIT_PREFIXES):
            with pytest.raises(DetectionError, match="does not fit"):
                stages(net)
        else:
            assert len(stages(net)) >= 2, net


@pytest.mark.parametrize("head,width", [("", 1024), ("_small_head", 512), ("_tiny_head", 256), ("_nano_head", 128)])
def test_head_sizes(head: str, width: int) -> None:
    model = build_model(f"fasterrcnn_mini_darknet{head}", num_classes=3, imgsz=96)
    assert model.roi_heads.box_head.fc7.out_features == width
