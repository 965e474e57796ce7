"""torchvision's detection zoo in the registry, fine-tunable to any number of classes.

``weights`` is ``none`` (random init), ``backbone`` (ImageNet backbone, new detector),
``default`` (torchvision's COCO weights, with the class head replaced for ``num_classes``),
or a path to a ``.pt`` state dict of the same architecture.
"""

from __future__ import annotations

import functools

from torch import nn
from torchvision.models import get_model, get_model_weights, get_weight
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.fcos import FCOSClassificationHead
from torchvision.models.detection.retinanet import RetinaNetClassificationHead

from detection.errors import DetectionError
from detection.models.registry import register
from detection.models.weights import load_state_dict_file, torchvision_state_dict

_ZOO = {
    "fasterrcnn_mobilenet_v3_large_320_fpn": ("faster_rcnn", "Faster R-CNN, MobileNetV3-Large FPN, 320 px (fast on CPU)", True),
    "fasterrcnn_mobilenet_v3_large_fpn": ("faster_rcnn", "Faster R-CNN, MobileNetV3-Large FPN", True),
    "fasterrcnn_resnet50_fpn": ("faster_rcnn", "Faster R-CNN, ResNet-50 FPN (v1)", False),
    "fasterrcnn_resnet50_fpn_v2": ("faster_rcnn", "Faster R-CNN, ResNet-50 FPN (v2, better AP)", False),
    "retinanet_resnet50_fpn": ("retinanet", "RetinaNet, ResNet-50 FPN", False),
    "retinanet_resnet50_fpn_v2": ("retinanet", "RetinaNet, ResNet-50 FPN v2", False),
    "fcos_resnet50_fpn": ("fcos", "FCOS, ResNet-50 FPN", False),
    "ssdlite320_mobilenet_v3_large": ("ssd", "SSDlite 320, MobileNetV3-Large", True),
}


def _replace_head(model: nn.Module, family: str, num_classes: int, name: str) -> nn.Module:
    if family == "faster_rcnn":
        in_features = model.roi_heads.box_predictor.cls_score.in_features
        model.roi_heads.box_predictor = FastRCNNPredictor(in_features, num_classes)
    elif family == "retinanet":
        head = model.head.classification_head
        in_channels = head.conv[0][0].in_channels
        model.head.classification_head = RetinaNetClassificationHead(in_channels, head.num_anchors, num_classes)
    elif family == "fcos":
        head = model.head.classification_head
        in_channels = head.conv[0].in_channels
        model.head.classification_head = FCOSClassificationHead(in_channels, head.num_anchors, num_classes)
    else:
        raise DetectionError(
            f"fine-tuning {name} from its COCO weights is not supported yet",
            hint="use model.weights: backbone or none for this model",
        )
    return model


def _build(name: str, family: str, num_classes: int, weights: str = "none", imgsz: int = 640) -> nn.Module:
    size_kwargs = {} if family == "ssd" else {"min_size": imgsz, "max_size": imgsz}
    if weights == "default":
        coco = get_model_weights(name).DEFAULT
        model = get_model(name, weights=None, weights_backbone=None, **size_kwargs)
        model.load_state_dict(torchvision_state_dict(coco))
        return _replace_head(model, family, num_classes, name)
    if weights == "backbone":
        imagenet = get_weight(_backbone_weights_name(name))
        model = get_model(name, weights=None, weights_backbone=None, num_classes=num_classes, **size_kwargs)
        body = model.backbone.body if hasattr(model.backbone, "body") else model.backbone.features
        state = torchvision_state_dict(imagenet)
        missing, _ = body.load_state_dict(state, strict=False)
        if len(missing) == len(body.state_dict()):
            raise DetectionError(f"ImageNet weights did not match the backbone of {name}")
        return model
    model = get_model(name, weights=None, weights_backbone=None, num_classes=num_classes, **size_kwargs)
    if weights not in ("none", ""):
        model.load_state_dict(load_state_dict_file(weights))
    return model


def _backbone_weights_name(name: str) -> str:
    if "mobilenet_v3_large" in name:
        return "MobileNet_V3_Large_Weights.IMAGENET1K_V1"
    if "resnet50" in name:
        return "ResNet50_Weights.IMAGENET1K_V1"
    raise DetectionError(f"no ImageNet backbone weights known for {name}", hint="use weights: none or default")


for _name, (_family, _desc, _cpu) in _ZOO.items():
    register(_name, family=_family, description=_desc, cpu_friendly=_cpu)(functools.partial(_build, _name, _family))
