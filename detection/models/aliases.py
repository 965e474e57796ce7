"""Names other detection pipelines use, mapped to the registry's (shown beside them by `detection models`)."""

from __future__ import annotations

from detection.models.registry import register_alias

_NO_MOBILEVIT = "torchvision ships no MobileViT; nearest CPU-sized torchvision network"
_NO_VITDET = "torchvision's ViT asserts one fixed 224 px input; Swin is its windowed-attention transformer with spatial stages"

ALIASES = {
    "fasterrcnn_mobilenetv3_large_fpn": ("fasterrcnn_mobilenet_v3_large_fpn", ""),
    "fasterrcnn_mobilenetv3_large_320_fpn": ("fasterrcnn_mobilenet_v3_large_320_fpn", ""),
    "fasterrcnn_mbv3_small_nano_head": ("fasterrcnn_mobilenet_v3_small_nano_head", ""),
    "fasterrcnn_mobilevit_xxs": ("fasterrcnn_mobilenet_v3_small", _NO_MOBILEVIT),
    "fasterrcnn_nano": ("fasterrcnn_tiny", "the smallest model here"),
    "fasterrcnn_vitdet": ("fasterrcnn_swin_t", _NO_VITDET),
    "fasterrcnn_vitdet_tiny": ("fasterrcnn_swin_t_single", _NO_VITDET),
    "fcos_mobilinet_v2": ("fcos_mobilenet_v2", "sic: the other pipeline's spelling"),
    "retinanet_resnet50": ("retinanet_resnet50_fpn", ""),
    "ssd_vgg16": ("ssd300_vgg16", ""),
}

for _alias, (_target, _note) in ALIASES.items():
    register_alias(_alias, _target, _note)
