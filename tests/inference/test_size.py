"""One size rule for every stage: the models resize as detection.inference.size says."""

from __future__ import annotations

import pytest
import torch

from detection.inference.size import model_input_size, size_rule
from detection.models import build_model


def test_rule_examples() -> None:
    assert model_input_size(720, 1280, 320) == (180, 320)  # a 16:9 frame runs at 320x180
    assert model_input_size(96, 160, 320) == (192, 320)  # small images are enlarged
    assert model_input_size(200, 120, 320) == (320, 192)
    assert "1280x720 -> 320x180" in size_rule(320)
    with pytest.raises(ValueError):
        model_input_size(0, 10, 320)


@pytest.mark.parametrize("name", ["fasterrcnn_tiny", "fasterrcnn_mobilenet_v3_large_320_fpn", "retinanet_resnet50_fpn", "fcos_resnet50_fpn"])
def test_every_family_resizes_by_the_rule(name: str) -> None:
    model = build_model(name, num_classes=3, imgsz=256).eval()
    for h, w in ((432, 768), (96, 160), (200, 120), (333, 333)):
        batch, _ = model.transform([torch.rand(3, h, w)])
        assert tuple(batch.image_sizes[0]) == model_input_size(h, w, 256), (name, h, w)
