"""The model registry: every detector is built by name, as Detectron2 and MMDetection register components.

``build_model(name, num_classes, weights, imgsz)`` returns a torchvision-style detector (a module
that takes a list of CHW float images in [0, 1] and, in eval mode, returns a list of
``{"boxes", "labels", "scores"}``). ``num_classes`` counts the background class (id 0).
Builders register themselves with ``@register``; ``detection models`` lists them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from detection.errors import DetectionError

Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Builder
    family: str
    description: str
    cpu_friendly: bool = False


_REGISTRY: dict[str, ModelSpec] = {}


def register(name: str, *, family: str, description: str, cpu_friendly: bool = False) -> Callable[[Builder], Builder]:
    """Decorator: register ``builder(num_classes, weights, imgsz) -> nn.Module`` under ``name``."""

    def deco(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelSpec(name, builder, family, description, cpu_friendly)
        return builder

    return deco


def _ensure_loaded() -> None:
    # Importing the modules runs their @register decorators.
    from detection.models import tiny, zoo  # noqa: F401


def available() -> list[ModelSpec]:
    """All registered models, sorted by name."""
    _ensure_loaded()
    return sorted(_REGISTRY.values(), key=lambda s: s.name)


def get_spec(name: str) -> ModelSpec:
    _ensure_loaded()
    if name not in _REGISTRY:
        import difflib

        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "run `detection models` to list them"
        raise DetectionError(f"unknown model {name!r}", hint=hint)
    return _REGISTRY[name]


def build_model(name: str, num_classes: int, weights: str = "none", imgsz: int = 640) -> nn.Module:
    """Build the registered detector ``name`` for ``num_classes`` classes (background included)."""
    if num_classes < 2:
        raise DetectionError(f"a detector needs at least one class besides background, got num_classes={num_classes}")
    return get_spec(name).builder(num_classes=num_classes, weights=weights, imgsz=imgsz)
