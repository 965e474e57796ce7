"""Every detector torchvision ships, in the registry, fine-tunable to any number of classes.

``weights``: ``none`` (random init, ordinary BatchNorm, every layer trains), ``backbone`` (ImageNet
backbone through torchvision's own recipe: FrozenBatchNorm and ``trainable_layers``), ``default``
(torchvision's COCO weights, class head replaced for ``num_classes``), ``auto`` (the best of those
whose file is in the hub cache) or a ``.pt`` path. Each pretrained load is checked: the tensors of the
built model are compared with the file's and the build fails when (almost) none are equal.
"""

from __future__ import annotations

import functools
import inspect
import typing
from typing import Any

from torch import nn
from torchvision.models import detection as detection_models
from torchvision.models import get_model, get_model_builder, get_model_weights, list_models
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.fcos import FCOSClassificationHead
from torchvision.models.detection.keypoint_rcnn import KeypointRCNNPredictor
from torchvision.models.detection.retinanet import RetinaNetClassificationHead
from torchvision.models.detection.ssd import SSDClassificationHead
from torchvision.models.detection.ssdlite import SSDLiteClassificationHead

from detection.errors import DetectionError
from detection.models.registry import register
from detection.models.weights import LoadReport, count_equal, hub_state_dict, load_weights_file, resolve_auto, tag

_PREFIX_FAMILY = {"fasterrcnn": "faster_rcnn", "maskrcnn": "faster_rcnn", "keypointrcnn": "keypoint_rcnn", "retinanet": "retinanet", "fcos": "fcos", "ssd300": "ssd", "ssdlite320": "ssd"}


def _describe(name: str) -> str:
    """From torchvision's weights metadata: the COCO AP of its published weights, and the parameter count."""
    meta = get_model_weights(name).DEFAULT.meta
    metrics = meta.get("_metrics", {}).get("COCO-val2017", {})
    ap = ", ".join(f"COCO {k.replace('_map', '')} AP {v}" for k, v in metrics.items())
    extra = " (boxes only: mask branch dropped)" if name.startswith("maskrcnn") else " (17 keypoints)" if name.startswith("keypoint") else ""
    return f"torchvision's {name}{extra}: {ap}; {meta.get('num_params', 0) / 1e6:.1f} M params with the COCO head"


def _replace_head(model: nn.Module, family: str, num_classes: int) -> nn.Module:
    if family in ("faster_rcnn", "keypoint_rcnn"):
        in_features = model.roi_heads.box_predictor.cls_score.in_features
        model.roi_heads.box_predictor = FastRCNNPredictor(in_features, num_classes)
    elif family == "retinanet":
        head = model.head.classification_head
        model.head.classification_head = RetinaNetClassificationHead(head.conv[0][0].in_channels, head.num_anchors, num_classes)
    elif family == "fcos":
        head = model.head.classification_head
        model.head.classification_head = FCOSClassificationHead(head.conv[0].in_channels, head.num_anchors, num_classes)
    else:  # ssd / ssdlite
        anchors = model.anchor_generator.num_anchors_per_location()
        head = model.head.classification_head
        if isinstance(head.module_list[0], nn.Conv2d):
            model.head.classification_head = SSDClassificationHead([m.in_channels for m in head.module_list], anchors, num_classes)
        else:
            norm = functools.partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
            channels = [m[0][0].in_channels for m in head.module_list]
            model.head.classification_head = SSDLiteClassificationHead(channels, anchors, num_classes, norm)
    return model


def backbone_weights(name: str) -> Any:
    """The ImageNet weights torchvision's builder of ``name`` uses for its backbone (v2 builders default to
    none: the first ImageNet weights of the annotated enum, as torchvision's training recipe)."""
    builder = get_model_builder(name)
    default = inspect.signature(builder).parameters["weights_backbone"].default
    if default is not None:
        return default
    (enum,) = [a for a in typing.get_args(typing.get_type_hints(builder)["weights_backbone"]) if a is not type(None)]
    return enum.IMAGENET1K_V1


def _build(
    name: str, family: str, imgsz_default: int, num_classes: int, weights: str = "none", imgsz: int | None = None,
    trainable_layers: int | None = None, num_keypoints: int | None = None,
) -> nn.Module:  # fmt: skip
    imgsz = imgsz or imgsz_default
    kwargs: dict[str, Any] = {} if family == "ssd" else {"min_size": imgsz, "max_size": imgsz}
    new_kwargs = {**kwargs, "num_keypoints": num_keypoints} if num_keypoints else kwargs  # models built without COCO weights
    coco, imagenet = get_model_weights(name).DEFAULT, backbone_weights(name)
    requested = weights
    weights = resolve_auto(weights, {"default": coco.url, "backbone": imagenet.url})
    report: LoadReport | None = None
    if weights in ("default", "backbone"):
        enum = coco if weights == "default" else imagenet
        state = hub_state_dict(enum.url, f"{name} {'COCO' if weights == 'default' else 'ImageNet backbone'}")
        if trainable_layers is not None:
            kwargs["trainable_backbone_layers"] = trainable_layers
        if weights == "default":  # torchvision's builder loads the cached file itself (strict)
            model = get_model(name, weights=enum, **kwargs)
            part = model
        else:
            model = get_model(name, weights=None, weights_backbone=enum, num_classes=num_classes, **new_kwargs)
            part = model.backbone
        loaded = count_equal(part, state)
        total = sum(1 for k in state if not k.endswith("num_batches_tracked"))
        report = LoadReport(str(enum), loaded, total)
        if loaded < 0.5 * _own_tensors(part) and loaded < 0.5 * total:
            raise DetectionError(f"{name}: only {loaded} tensors of {enum} ({total}) loaded into the model", hint="report this as a bug; use weights: none meanwhile")
        if weights == "default":
            model = _replace_head(model, family, num_classes)  # box-only below, as every path
            if num_keypoints and num_keypoints != model.roi_heads.keypoint_predictor.kps_score_lowres.out_channels:
                model.roi_heads.keypoint_predictor = KeypointRCNNPredictor(model.roi_heads.keypoint_predictor.kps_score_lowres.in_channels, num_keypoints)
        norm = "FrozenBatchNorm2d" if "_v2" not in name else "BatchNorm2d (torchvision's v2 recipe)"
        trainable_layers = trainable_layers if trainable_layers is not None else 3
    else:
        model = _boxes_only(get_model(name, weights=None, weights_backbone=None, num_classes=num_classes, **new_kwargs))
        norm = "BatchNorm2d"
        if weights not in ("none", ""):
            report = load_weights_file(model, weights)
    return tag(_boxes_only(model), requested, weights, report, norm, trainable_layers)


def _boxes_only(model: nn.Module) -> nn.Module:
    """Mask R-CNN without its mask branch (the data layer has boxes, not masks): a Faster R-CNN with its weights."""
    if getattr(getattr(model, "roi_heads", None), "mask_head", None) is not None:
        model.roi_heads.mask_roi_pool = model.roi_heads.mask_head = model.roi_heads.mask_predictor = None
    return model


def _own_tensors(module: nn.Module) -> int:
    return sum(1 for k in module.state_dict() if not k.endswith("num_batches_tracked"))


for _name in list_models(module=detection_models):  # every detector torchvision ships
    _family = _PREFIX_FAMILY[_name.split("_")[0]]
    _size = 320 if "320" in _name else 300 if "300" in _name else 640
    register(_name, family=_family, description=_describe(_name), cpu_friendly="mobilenet" in _name, imgsz=_size, weights=("none", "backbone", "default"))(
        functools.partial(_build, _name, _family, _size)
    )
