"""A Faster R-CNN sized for the CPU, assembled from torchvision components.

A small VGG-style convolutional body (BatchNorm + ReLU blocks from ``torchvision.ops``) feeding a
single stride-8 feature map to torchvision's ``FasterRCNN`` with a small RPN and a small box head.
It trains from scratch (``weights: none``) on a 2-core CPU in minutes, for the built-in sample and
for smoke runs; real data sets want a pretrained backbone from the zoo.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.misc import Conv2dNormActivation

from detection.errors import DetectionError
from detection.models.registry import register


class TinyBody(nn.Module):
    """Conv blocks at strides 2, 4, 8, 8: channels 16, 32, 64, ``out_channels``; returns ``{"0": stride-8 map}``."""

    def __init__(self, out_channels: int = 128) -> None:
        super().__init__()

        def block(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(Conv2dNormActivation(cin, cout, 3, stride), Conv2dNormActivation(cout, cout, 3, 1))

        self.features = nn.Sequential(
            Conv2dNormActivation(3, 16, 3, 2),
            block(16, 32, 2),
            block(32, 64, 2),
            block(64, out_channels, 1),
        )
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"0": self.features(x)}


def _load_state(model: nn.Module, requested: str, weights: str) -> nn.Module:
    from detection.models.weights import load_weights_file, tag

    report = None if weights in ("none", "", None) else load_weights_file(model, weights)
    return tag(model, requested, weights, report, "BatchNorm2d", None)


@register(
    "fasterrcnn_tiny",
    family="faster_rcnn",
    description="Faster R-CNN on a small from-scratch CNN (stride 8, 64 ch), for CPU smoke runs and the sample",
    cpu_friendly=True,
    imgsz=320,
)
def fasterrcnn_tiny(num_classes: int, weights: str = "none", imgsz: int = 320, trainable_layers: int | None = None) -> nn.Module:
    requested, weights = weights, "none" if weights == "auto" else weights  # no pretrained file exists for it
    if weights in ("default", "backbone"):
        raise DetectionError(f"fasterrcnn_tiny has no pretrained weights (model.weights: {weights})", hint="use weights: none, auto, or a .pt file")
    body = TinyBody(64)
    model = FasterRCNN(
        body,
        min_size=imgsz,
        max_size=imgsz,
        rpn_anchor_generator=AnchorGenerator(sizes=((16, 32, 64, 128),), aspect_ratios=((0.5, 1.0, 2.0),)),
        rpn_pre_nms_top_n_train=600,
        rpn_post_nms_top_n_train=300,
        rpn_pre_nms_top_n_test=300,
        rpn_post_nms_top_n_test=100,
        rpn_batch_size_per_image=128,
        box_roi_pool=MultiScaleRoIAlign(featmap_names=["0"], output_size=7, sampling_ratio=1),
        box_head=TwoMLPHead(body.out_channels * 7 * 7, 256),
        box_predictor=FastRCNNPredictor(256, num_classes),
        box_batch_size_per_image=64,
        box_detections_per_img=100,
    )
    return _load_state(model, requested, weights)
