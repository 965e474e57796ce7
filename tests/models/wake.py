"""Give an untrained detector distinct scores and boxes near its anchors, for the ONNX parity tests.

Untrained (random-init) backbones here lose their signal layer by layer: on a real image the FPN levels of
``retinanet_mobilenet_v3_small`` have spatial std 1.8e-2, 1.3e-5, 4e-8, 3e-8, 1e-8, so every anchor gets
the same logit to ~1e-3 and the scores differ by ~5e-7, as much as the two runtimes' float rounding
(4.8e-7 on the logits): top-k and NMS then keep different ones of tied detections, which tells nothing
about the export. ``wake`` rescales, in one forward pass on ``image`` (first call of each layer), every
conv/linear to unit output std and every batch norm to its input's statistics (LSUV-like), and sets the
predictors to chosen output statistics: class logits mean 0 std ``logit_std``, box deltas std 0.2.
"""

from __future__ import annotations

import re

import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

_CLS = r"cls_logits$|cls_score$|classification_head\.module_list\.\d+\.1$|bbox_ctrness$"
_REG = r"bbox_reg$|bbox_pred$|regression_head\.module_list\.\d+\.1$"


def wake(model: nn.Module, image: torch.Tensor, logit_std: float = 2.0) -> nn.Module:
    fcos = type(model).__name__ == "FCOS"
    done: set[nn.Module] = set()
    hooks = []

    def target(name: str) -> tuple[float | None, float]:
        if re.search(_CLS, name):
            return 0.0, logit_std
        if re.search(_REG, name):
            return (1.0 if fcos and name.endswith("bbox_reg") else 0.0), 0.2  # FCOS: distances of ~1 anchor size
        return None, 1.0

    def bn_pre(mod: nn.Module, inp: tuple[torch.Tensor, ...]) -> None:
        if mod not in done:
            done.add(mod)
            if inp[0][0, 0].numel() < 16:  # a 1x1 or 2x2 map: its own variance is ~0 and would blow the output up
                return
            mod.running_mean.copy_(inp[0].mean(dim=(0, 2, 3)))
            mod.running_var.copy_(inp[0].var(dim=(0, 2, 3), unbiased=False) + 1e-3)

    def conv_post(mod: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor | None:
        if mod in done:
            return None
        done.add(mod)
        mean, std = mod._wake_target
        scale = std / out.std().clamp_min(1e-12)
        mod.weight.mul_(scale)
        shift = torch.zeros(())
        if mod.bias is not None:
            mod.bias.mul_(scale)
            if mean is not None:
                shift = mean - out.mean() * scale
                mod.bias.add_(shift)
        return out * scale + shift

    for name, mod in model.named_modules():
        if isinstance(mod, nn.BatchNorm2d | FrozenBatchNorm2d):
            hooks.append(mod.register_forward_pre_hook(bn_pre))
        elif isinstance(mod, nn.Conv2d | nn.Linear):
            mod._wake_target = target(name)
            hooks.append(mod.register_forward_hook(conv_post))
    model.eval()
    with torch.no_grad():
        model([image])
    for h in hooks:
        h.remove()
    return model
