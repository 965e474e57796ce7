"""Faster R-CNN, RetinaNet and FCOS on any backbone network, by name, with nothing to register.

Names: ``<family>_[mini_]<network>[_single][_<size>_head]``

- ``family``: ``fasterrcnn``, ``retinanet``, ``fcos`` or ``keypointrcnn`` (Faster R-CNN plus
  torchvision's keypoint head; ``num_keypoints`` from the data); ``network``: any torchvision classification
  network (``torchvision.models.list_models()``: resnet18, efficientnet_b0, convnext_tiny, regnet_y_400mf,
  swin_t, ...) or one of this project's (``darknet``, ``mini_darknet``, ``custom_resnet``);
- ``mini_``: the network cut after its stride-16 stage (fewer layers, faster);
- ``_single``: one feature map (the last stage) instead of an FPN over the last three;
- ``_small_head`` / ``_tiny_head`` / ``_nano_head`` (Faster R-CNN, keypoint R-CNN): box head of 512 /
  256 / 128 instead of 1024 (keypoint R-CNN: and a keypoint head of 4 convolutions of half that width
  instead of torchvision's 8 of 512).

Feature layers and channels come from ``detection.models.backbones`` (found automatically).
"""

from __future__ import annotations

import functools
import re

from torch import nn
from torchvision.models.detection import FCOS, FasterRCNN, KeypointRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.keypoint_rcnn import KeypointRCNNHeads, KeypointRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

from detection.models import backbones
from detection.models.registry import ModelSpec, register_resolver
from detection.models.weights import load_weights_file, resolve_auto, tag

HEADS = {"": 1024, "_small_head": 512, "_tiny_head": 256, "_nano_head": 128}
FAMILIES = {"fasterrcnn": "faster_rcnn", "retinanet": "retinanet", "fcos": "fcos", "keypointrcnn": "keypoint_rcnn"}
#: not fitting: they assert one fixed square input size (checked by a test through ``backbones.stages``)
UNFIT_PREFIXES = ("vit_", "maxvit_")
#: CPU-friendly networks (a few GFLOPs at 320 px), for the ``--cpu`` filter
CPU_NETWORKS = {
    "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "squeezenet1_0", "squeezenet1_1", "shufflenet_v2_x0_5",
    "shufflenet_v2_x1_0", "mnasnet0_5", "mnasnet0_75", "mnasnet1_0", "efficientnet_b0", "regnet_x_400mf", "regnet_y_400mf",
    "resnet18", "mini_darknet", "custom_resnet",
}
#: RetinaNet / FCOS / head-size variants shown by `detection models` (every other combination is accepted too)
LISTED_DENSE = ("resnet18", "resnet34", "mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0", "convnext_tiny", "regnet_y_400mf", "shufflenet_v2_x1_0")
LISTED_HEADS = ("mobilenet_v3_small", "mobilenet_v3_large", "squeezenet1_1", "mini_squeezenet1_1", "mini_darknet", "resnet18", "shufflenet_v2_x1_0")

_NAME = re.compile(r"^(?P<family>fasterrcnn|retinanet|fcos|keypointrcnn)_(?P<mini>mini_)?(?P<net>.+?)(?P<single>_single)?(?P<head>_small_head|_tiny_head|_nano_head)?$")


def _anchor_sizes(n_maps: int, single: bool, scales: int) -> tuple[tuple[int, ...], ...]:
    if single:
        return ((32, 64, 128, 256, 512),)
    base = [32, 64, 128, 256, 512][:n_maps]
    return tuple(tuple(int(b * 2 ** (i / scales)) for i in range(scales)) for b in base)


def build(
    family: str, net: str, mini: bool, single: bool, head: str, num_classes: int, weights: str = "none", imgsz: int = 320,
    trainable_layers: int | None = None, num_keypoints: int | None = None,
) -> nn.Module:  # fmt: skip
    requested = weights
    weights = resolve_auto(weights, {"backbone": backbones.imagenet_url(net)})
    path = None if weights in ("none", "backbone", "") else weights
    deepest = max(s.stride for s in backbones.stages(net))
    max_stride = deepest // 2 if mini else deepest
    dense = family not in ("fasterrcnn", "keypointrcnn")
    extra = LastLevelP6P7(256, 256) if dense else LastLevelMaxPool()
    body, report, norm, trainable_layers = backbones.make_body(
        net, "none" if path else weights, trainable_layers, max_stride=max_stride, fpn_channels=None if single else 256, extra=None if single else extra
    )
    n_levels = 1 if single else len(body.fpn.inner_blocks) + (2 if dense else 1)
    size = {"min_size": imgsz, "max_size": imgsz}
    if not dense:
        names = ["0"] if single else [str(i) for i in range(len(body.fpn.inner_blocks))]
        sizes = _anchor_sizes(n_levels, single, 1)
        rep = HEADS[head]
        keypoints = {}
        if family == "keypointrcnn":  # torchvision's keypoint head, or a narrower one with a smaller box head
            width, depth = (rep // 2, 4) if head else (512, 8)
            keypoints = {"keypoint_roi_pool": MultiScaleRoIAlign(featmap_names=names, output_size=14, sampling_ratio=2),
                         "keypoint_head": KeypointRCNNHeads(body.out_channels, (width,) * depth),
                         "keypoint_predictor": KeypointRCNNPredictor(width, num_keypoints or 17)}  # fmt: skip
        model = (KeypointRCNN if family == "keypointrcnn" else FasterRCNN)(
            body,
            rpn_anchor_generator=AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes)),
            box_roi_pool=MultiScaleRoIAlign(featmap_names=names, output_size=7, sampling_ratio=2),
            box_head=TwoMLPHead(body.out_channels * 49, rep),
            box_predictor=FastRCNNPredictor(rep, num_classes),
            **size,
            **keypoints,
        )
    elif family == "retinanet":
        sizes = _anchor_sizes(n_levels, single, 3)
        model = RetinaNet(body, num_classes, anchor_generator=AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes)), **size)
    else:
        sizes = ((8,), (16,), (32,), (64,), (128,))[:n_levels] if not single else ((16,),)
        model = FCOS(body, num_classes, anchor_generator=AnchorGenerator(sizes, ((1.0,),) * len(sizes)), **size)
    if path:
        report = load_weights_file(model, path)
    return tag(model, requested, weights, report, norm, trainable_layers)


def parse(name: str) -> dict[str, object] | None:
    match = _NAME.match(name)
    if not match:
        return None
    parts = match.groupdict()
    net, mini = parts["net"], bool(parts["mini"])
    if mini and net == "darknet":  # mini_darknet is a network of its own
        net, mini = "mini_darknet", False
    if net not in backbones.networks() or net.startswith(UNFIT_PREFIXES):
        return None
    if parts["head"] and parts["family"] not in ("fasterrcnn", "keypointrcnn"):
        return None
    return {"family": parts["family"], "net": net, "mini": mini, "single": bool(parts["single"]), "head": parts["head"] or ""}


@register_resolver
def resolve(name: str) -> ModelSpec | None:
    parts = parse(name)
    if parts is None:
        return None
    return _spec(name, **parts)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=None)
def _spec(name: str, family: str, net: str, mini: bool, single: bool, head: str) -> ModelSpec:
    what = {"fasterrcnn": "Faster R-CNN", "retinanet": "RetinaNet", "fcos": "FCOS", "keypointrcnn": "Keypoint R-CNN"}[family]
    neck = "single map" if single else "FPN"
    desc = f"{what} on {'mini (its last stage cut) ' if mini else ''}{net}, {neck}" + (f", box head {HEADS[head]}" if head else "")
    cpu = net in CPU_NETWORKS or mini or net.startswith("mini_")
    has_imagenet = net not in backbones.CUSTOM_NETWORKS
    return ModelSpec(
        name,
        functools.partial(build, family, net, mini, single, head),
        FAMILIES[family],
        desc,
        cpu_friendly=cpu,
        imgsz=320 if cpu else 640,
        weights=("none", "backbone") if has_imagenet else ("none",),
        listed=False,
    )


def listed_names() -> list[str]:
    """The pattern names that `detection models` shows."""
    nets = [n for n in backbones.networks() if not n.startswith(UNFIT_PREFIXES)]
    names = [f"fasterrcnn_{n}" for n in nets]
    names += [f"{f}_{n}" for f in ("retinanet", "fcos") for n in LISTED_DENSE]
    names += [f"fasterrcnn_{n}{h}" for n in LISTED_HEADS for h in HEADS if h]
    names += ["fasterrcnn_mini_squeezenet1_1", "fasterrcnn_mobilenet_v3_large_single", "fasterrcnn_resnet18_single"]
    return names
