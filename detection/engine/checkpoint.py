"""Checkpoints that hold everything inference needs: model name, class names, image size, weights,
the params the model was trained with and the library versions (and, for a keypoint model, its
keypoints: names, flip map and OKS sigmas).

``detection predict --weights best.pt`` needs nothing else. Files are written atomically and read
with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

import detection
from detection.errors import DetectionError
from detection.io import atomic_path
from detection.models import build_model
from detection.models.weights import safe_load

FORMAT = "detection-checkpoint/1"
META_KEYS = ("format", "model_name", "class_names", "imgsz", "epoch", "metrics", "params", "versions", "keypoints")


def versions() -> dict[str, str]:
    return {
        "detection": detection.__version__,
        "torch": str(torch.__version__),
        "torchvision": str(torchvision.__version__),
        "python": platform.python_version(),
    }


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    model_name: str,
    class_names: list[str],
    imgsz: int,
    epoch: int,
    params: dict[str, Any],
    metrics: dict[str, float] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    extra: dict[str, Any] | None = None,
    keypoints: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (``optimizer``/``scheduler`` only for resumable ``last.pt``;
    ``keypoints``: ``KeypointSpec.to_dict()`` of a keypoint model)."""
    ckpt: dict[str, Any] = {
        "format": FORMAT,
        "model_name": model_name,
        "class_names": list(class_names),
        "imgsz": int(imgsz),
        "epoch": int(epoch),
        "metrics": dict(metrics or {}),
        "params": params,
        "versions": versions(),
        "model": model.state_dict(),
    }
    if keypoints is not None:
        ckpt["keypoints"] = keypoints
    if optimizer is not None:
        ckpt["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        ckpt["scheduler"] = scheduler.state_dict()
    ckpt.update(extra or {})
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
    return Path(path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and check a checkpoint (safe: ``weights_only=True``)."""
    ckpt = safe_load(path, "checkpoint", "train a model first (`detection train`) or fix the path")
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise DetectionError(
            f"{path}: not a checkpoint of this tool (expected format {FORMAT!r})",
            hint="to start from a bare state dict, pass it as model.weights when training",
        )
    return ckpt


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of a checkpoint, load its weights, put it in eval mode on ``device``.

    Returns ``(model, meta)`` where meta holds ``META_KEYS`` (class_names, imgsz, model_name...).
    """
    ckpt = load_checkpoint(path)
    k = len(ckpt["keypoints"]["names"]) if ckpt.get("keypoints") else None
    model = build_model(ckpt["model_name"], num_classes=len(ckpt["class_names"]) + 1, weights="none", imgsz=ckpt["imgsz"], num_keypoints=k)
    model.load_state_dict(ckpt["model"])
    model.to(device).eval()
    return model, {k: ckpt.get(k) for k in META_KEYS}
