"""The model registry: every detector is built by name, as Detectron2 and MMDetection register components.

``build_model(name, num_classes, weights, imgsz, trainable_layers)`` returns a torchvision-style
detector (a module that takes a list of CHW float images in [0, 1] and, in eval mode, returns a list
of ``{"boxes", "labels", "scores"}``). ``num_classes`` counts the background class (id 0).

Adding a model is one decorated function::

    @register("fasterrcnn_mynet", family="faster_rcnn", description="...", weights=("none",))
    def fasterrcnn_mynet(num_classes, weights="none", imgsz=320, trainable_layers=None):
        return FasterRCNN(MyBody(), num_classes, min_size=imgsz, max_size=imgsz)

and a torchvision classification network needs no entry at all: ``fasterrcnn_<network>``,
``retinanet_<network>`` and ``fcos_<network>`` are built for it automatically
(``detection.models.families``). Aliases (names other pipelines use) map to a registered name.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from detection.errors import DetectionError

Builder = Callable[..., nn.Module]
Resolver = Callable[[str], "ModelSpec | None"]

WEIGHT_CHOICES = ("none", "backbone", "default", "auto", "PATH.pt")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Builder
    family: str
    description: str
    cpu_friendly: bool = False
    imgsz: int = 640
    #: which pretrained starts exist: "none" always, "backbone" (ImageNet), "default" (COCO detector)
    weights: tuple[str, ...] = ("none",)
    aliases: tuple[str, ...] = field(default=())
    listed: bool = True


_REGISTRY: dict[str, ModelSpec] = {}
_ALIASES: dict[str, str] = {}
_ALIAS_NOTES: dict[str, str] = {}
_RESOLVERS: list[Resolver] = []


def register(
    name: str,
    *,
    family: str,
    description: str,
    cpu_friendly: bool = False,
    imgsz: int = 640,
    weights: tuple[str, ...] = ("none",),
    listed: bool = True,
) -> Callable[[Builder], Builder]:
    """Decorator: register ``builder(num_classes, weights, imgsz, trainable_layers) -> nn.Module`` as ``name``."""

    def deco(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelSpec(name, builder, family, description, cpu_friendly, imgsz, weights, listed=listed)
        return builder

    return deco


def register_alias(alias: str, target: str, note: str = "") -> None:
    """``alias`` (a name another pipeline uses) builds ``target``; ``note`` says how they differ."""
    _ALIASES[alias] = target
    if note:
        _ALIAS_NOTES[alias] = note


def register_resolver(resolver: Resolver) -> Resolver:
    """A function that builds specs for a whole pattern of names (``fasterrcnn_<network>``...), or None."""
    _RESOLVERS.append(resolver)
    return resolver


def _ensure_loaded() -> None:
    # Importing the modules runs their @register decorators.
    from detection.models import aliases, darknet, families, tiny, zoo  # noqa: F401


def available(listed_only: bool = True) -> list[ModelSpec]:
    """Registered models, sorted by name; each spec's ``aliases`` name the aliases that map to it."""
    _ensure_loaded()
    by_target: dict[str, list[str]] = {}
    for alias, target in _ALIASES.items():
        by_target.setdefault(target, []).append(alias)
    specs = [_spec_with_aliases(s, by_target) for s in _REGISTRY.values() if s.listed or not listed_only]
    from detection.models.families import listed_names

    for target in dict.fromkeys([*listed_names(), *by_target]):  # pattern-built names, and alias targets
        if target not in _REGISTRY:
            spec = _resolve(target)
            if spec is not None:
                specs.append(_spec_with_aliases(spec, by_target))
    return sorted(specs, key=lambda s: s.name)


def _spec_with_aliases(spec: ModelSpec, by_target: dict[str, list[str]]) -> ModelSpec:
    from dataclasses import replace

    return replace(spec, aliases=tuple(sorted(by_target.get(spec.name, ()))))


def aliases() -> dict[str, str]:
    _ensure_loaded()
    return dict(_ALIASES)


def alias_note(alias: str) -> str:
    return _ALIAS_NOTES.get(alias, "")


def _resolve(name: str) -> ModelSpec | None:
    if name in _REGISTRY:
        return _REGISTRY[name]
    for resolver in _RESOLVERS:
        spec = resolver(name)
        if spec is not None:
            return spec
    return None


def get_spec(name: str) -> ModelSpec:
    """The spec of ``name`` (a registered name, an alias, or a pattern name such as ``retinanet_resnet34``)."""
    _ensure_loaded()
    spec = _resolve(_ALIASES.get(name, name))
    if spec is None:
        close = difflib.get_close_matches(name, [*_REGISTRY, *_ALIASES], n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "run `detection models` to list them"
        raise DetectionError(f"unknown model {name!r}", hint=hint)
    return spec


def build_model(
    name: str, num_classes: int, weights: str = "none", imgsz: int = 640, trainable_layers: int | None = None, num_keypoints: int | None = None
) -> nn.Module:  # fmt: skip
    """Build detector ``name`` for ``num_classes`` classes (background included).

    ``weights``: none | backbone | default | auto | a .pt path; ``trainable_layers``: how many backbone
    stages train when starting from pretrained weights (None: torchvision's default, 3);
    ``num_keypoints``: keypoints per box of a keypoint model (family ``keypoint_rcnn``; None: its default).
    """
    if num_classes < 2:
        raise DetectionError(f"a detector needs at least one class besides background, got num_classes={num_classes}")
    if trainable_layers is not None and not 0 <= trainable_layers <= 5:
        raise DetectionError(f"model.trainable_layers must be 0..5 (or null for the default), got {trainable_layers}")
    spec = get_spec(name)
    extra = {} if num_keypoints is None else {"num_keypoints": num_keypoints}
    if extra and spec.family != "keypoint_rcnn":
        raise DetectionError(f"{name} is not a keypoint model (family {spec.family}), it cannot predict {num_keypoints} keypoints", hint="pick a keypointrcnn_* model")
    return spec.builder(num_classes=num_classes, weights=weights or "none", imgsz=imgsz, trainable_layers=trainable_layers, **extra)
