"""Any torchvision classification network (or a registered one) as a detection backbone, found automatically.

``stages(net)`` runs the network once on a ``meta`` tensor (shapes only, no compute) with forward hooks,
walks its trunk (the top-level modules in execution order, opening ``Sequential`` containers that span
several strides) until the pooling/classifier, and keeps the last module at each stride (4, 8, 16, 32)
with its channels. ``make_body`` turns the chosen modules into outputs with torchvision's
``create_feature_extractor`` (so the network's own parameter names, and its ImageNet file, load as
they are), adds an FPN (``torchvision.ops.FeaturePyramidNetwork``) over the last stages or keeps the
single last map, and follows torchvision's fine-tuning recipe: pretrained -> FrozenBatchNorm2d and
only the last ``trainable_layers`` stages train (default 3); from scratch -> BatchNorm2d, all train.
"""

from __future__ import annotations

import functools
import logging
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models import get_model, get_model_weights, list_models
from torchvision.models.feature_extraction import create_feature_extractor
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock
from torchvision.ops.misc import FrozenBatchNorm2d

from detection.errors import DetectionError
from detection.models.weights import LoadReport, hub_state_dict, load_matching

log = logging.getLogger(__name__)

_STOP = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten, nn.Linear, nn.Dropout)
SINGLE_CHANNELS = 256
_PROBE = (256, 192)  # a non-square probe tells NCHW from NHWC outputs and finds networks that need one fixed size

#: networks of this project (not in torchvision): name -> factory of a classifier-like nn.Module
CUSTOM_NETWORKS: dict[str, Callable[[], nn.Module]] = {}


def register_network(name: str) -> Callable[[Callable[[], nn.Module]], Callable[[], nn.Module]]:
    """Decorator: a network factory usable as ``fasterrcnn_<name>``, ``retinanet_<name>``, ``fcos_<name>``."""

    def deco(factory: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        CUSTOM_NETWORKS[name] = factory
        return factory

    return deco


def networks() -> list[str]:
    """torchvision's classification networks plus the registered ones."""
    import torchvision.models as tvm

    return sorted({*list_models(module=tvm), *CUSTOM_NETWORKS})


def classifier(net: str) -> nn.Module:
    if net in CUSTOM_NETWORKS:
        return CUSTOM_NETWORKS[net]()
    if net not in networks():
        raise DetectionError(f"unknown backbone network {net!r}", hint="torchvision.models.list_models() names them")
    # GoogLeNet / Inception: no auxiliary heads (unused by a detector), their documented init
    kwargs = {"init_weights": True, "aux_logits": False} if net in ("googlenet", "inception_v3") else {}
    return get_model(net, weights=None, **kwargs)


@dataclass(frozen=True)
class Stage:
    node: str  # module path, as create_feature_extractor names it
    stride: int
    channels: int
    nhwc: bool  # channels-last output (Swin): permuted to NCHW


def _classifier_for_shapes(net: str) -> nn.Module:
    try:
        with torch.device("meta"):
            return classifier(net)
    except (NotImplementedError, RuntimeError):  # a constructor that computes with tensors (RegNet)
        return classifier(net)


@functools.lru_cache(maxsize=None)
def trunk(net: str) -> tuple[tuple[str, int], ...]:
    """The network's trunk as (module path, output stride), in execution order, up to its pooling."""
    model = _classifier_for_shapes(net).eval()
    device = next(model.parameters()).device
    height, width = _PROBE
    order: list[str] = []
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    for name, module in model.named_modules():
        if name:
            def hook(_m: nn.Module, _i: object, out: object, name: str = name) -> None:
                if name not in shapes:
                    order.append(name)
                shapes[name] = tuple(out.shape) if isinstance(out, torch.Tensor) else ()
            handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, height, width, device=device))
    except Exception as exc:  # noqa: BLE001 - e.g. ViT/MaxViT assert one fixed input size
        raise DetectionError(f"{net} does not fit as a detection backbone: it fails on a {height}x{width} input ({type(exc).__name__}: {str(exc)[:120]})") from None
    finally:
        for h in handles:
            h.remove()

    def stride(name: str) -> int:
        shape = shapes.get(name, ())
        if len(shape) != 4:
            return 0
        for h, w in ((shape[2], shape[3]), (shape[1], shape[2])):
            sh, sw = math.log2(height / max(h, 1)), math.log2(width / max(w, 1))
            if abs(sh - sw) < 0.35 and sh > 0.5:
                return 2 ** round(sh)
        return 0

    modules = dict(model.named_modules())

    def walk(names: list[str]) -> tuple[list[tuple[str, int]], bool]:
        flat: list[tuple[str, int]] = []
        for name in names:
            module = modules[name]
            if isinstance(module, _STOP):
                return flat, True
            kids = sorted((f"{name}.{k}" for k, _ in module.named_children() if f"{name}.{k}" in shapes), key=order.index)
            kid_strides = [stride(k) for k in kids]
            changes = sum(1 for a, b in zip(kid_strides, kid_strides[1:]) if a != b)
            if isinstance(module, (nn.Sequential, nn.ModuleList)) and changes >= 2:
                sub, stop = walk(kids)
                flat += sub
                if stop:
                    return flat, True
            elif stride(name):
                flat.append((name, stride(name)))
        return flat, False

    top = sorted((k for k, _ in model.named_children() if k in shapes), key=order.index)
    flat, _ = walk(top)
    if not flat:
        raise DetectionError(f"{net} does not fit as a detection backbone: no spatial feature maps found")
    return tuple(flat)


@functools.lru_cache(maxsize=None)
def stages(net: str) -> tuple[Stage, ...]:
    """The last trunk module at each stride >= 4: the feature maps a detector can use."""
    model = _classifier_for_shapes(net).eval()
    device = next(model.parameters()).device
    last: dict[int, str] = {}
    for name, s in trunk(net):
        if s >= 4:
            last[s] = name
    out = {}
    nodes = {n: f"s{s}" for s, n in last.items()}
    with torch.no_grad():
        feats = create_feature_extractor(model, nodes)(torch.zeros(1, 3, *_PROBE, device=device))
    for s, n in sorted(last.items()):
        shape = feats[f"s{s}"].shape
        nhwc = abs(shape[1] - _PROBE[0] / s) <= 2 and abs(shape[2] - _PROBE[1] / s) <= 2 and shape[3] != _PROBE[1] // s
        out[s] = Stage(n, s, int(shape[3] if nhwc else shape[1]), bool(nhwc))
    return tuple(out[s] for s in sorted(out))


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d by a FrozenBatchNorm2d holding the same statistics (torchvision's recipe)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            for key in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, key).copy_(getattr(child, key).detach())
            setattr(module, name, frozen)
        else:
            freeze_batchnorm(child)
    return module


class Body(nn.Module):
    """Feature maps of a network's stages (``OrderedDict`` "0", "1"...) through an FPN, or the last map alone."""

    def __init__(self, extractor: nn.Module, chosen: list[Stage], fpn_channels: int | None, extra: ExtraFPNBlock | None) -> None:
        super().__init__()
        self.body = extractor
        self.nhwc = [s.nhwc for s in chosen]
        self.fpn = None if fpn_channels is None else FeaturePyramidNetwork([s.channels for s in chosen], fpn_channels, extra_blocks=extra)
        # one map of many channels (1024..2048) would make the box head huge: a 1x1 conv to 256 first
        wide = fpn_channels is None and chosen[-1].channels > SINGLE_CHANNELS
        self.reduce = nn.Conv2d(chosen[-1].channels, SINGLE_CHANNELS, 1) if wide else None
        self.out_channels = fpn_channels if fpn_channels is not None else min(chosen[-1].channels, SINGLE_CHANNELS)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.body(x)
        maps = OrderedDict((str(i), f.permute(0, 3, 1, 2) if nhwc else f) for i, (f, nhwc) in enumerate(zip(feats.values(), self.nhwc)))
        if self.fpn is not None:
            return self.fpn(maps)
        return maps if self.reduce is None else OrderedDict((k, self.reduce(v)) for k, v in maps.items())


def imagenet_url(net: str) -> str | None:
    if net in CUSTOM_NETWORKS:
        return None
    return get_model_weights(net).DEFAULT.url


def make_body(
    net: str,
    weights: str,
    trainable_layers: int | None,
    *,
    levels: int = 3,
    max_stride: int = 32,
    fpn_channels: int | None = 256,
    extra: ExtraFPNBlock | None = None,
) -> tuple[Body, LoadReport | None, str, int | None]:
    """(body, load report, norm used, trainable stages) for ``net``; ``weights`` is none or backbone."""
    usable = [s for s in stages(net) if s.stride <= max_stride]
    if not usable:
        raise DetectionError(f"{net} has no feature map at stride <= {max_stride}")
    chosen = usable[-levels:] if fpn_channels is not None else usable[-1:]
    model = classifier(net)
    report = None
    if weights == "backbone":
        url = imagenet_url(net)
        if url is None:
            raise DetectionError(f"{net} has no ImageNet weights (it is this project's own network)", hint="use weights: none")
        report = load_matching(model, hub_state_dict(url, f"{net} ImageNet"), url.rsplit("/", 1)[-1], min_fraction=0.9)
        freeze_batchnorm(model)
        trainable_layers = 3 if trainable_layers is None else trainable_layers
        _freeze_stages(model, net, trainable_layers, chosen[-1].node)
        norm = "FrozenBatchNorm2d"
    elif weights in ("none", ""):
        norm, trainable_layers = "BatchNorm2d", None
    else:
        raise DetectionError(f"weights {weights!r} cannot start {net} here", hint="use none, backbone, auto or a .pt path")
    extractor = create_feature_extractor(model, {s.node: str(i) for i, s in enumerate(chosen)})
    return Body(extractor, chosen, fpn_channels, extra), report, norm, trainable_layers


def _freeze_stages(model: nn.Module, net: str, trainable_layers: int, last_node: str) -> None:
    """Stop gradients for the trunk modules below the last ``trainable_layers`` of the 5 stride stages
    (stem <= 2, 4, 8, 16, 32), as torchvision's ``trainable_backbone_layers`` does for ResNet."""
    levels = [2, 4, 8, 16, 32]
    frozen_strides = set(levels[: 5 - trainable_layers])
    modules = dict(model.named_modules())
    for name, s in trunk(net):
        if max(s, 2) in frozen_strides:
            for p in modules[name].parameters():
                p.requires_grad_(False)
        if name == last_node:
            break
