"""Loading weights safely and offline-aware.

- Local files are read with ``torch.load(..., weights_only=True)`` (no pickle code execution).
- torchvision weights are looked up in torch's hub cache first; when they are absent and the
  download fails (no network), the error names the file and the folder to put it in.
"""

from __future__ import annotations

import urllib.error
from pathlib import Path
from typing import Any

import torch

from detection.errors import DetectionError


def safe_load(path: str | Path, what: str, missing_hint: str) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; a DetectionError naming the file if it is
    missing (with ``missing_hint``) or not a readable torch file of plain tensors and containers."""
    path = Path(path)
    if not path.is_file():
        raise DetectionError(f"{what} not found: {path}", hint=missing_hint)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise DetectionError(f"{path}: not a readable {what} ({type(exc).__name__}: {exc})") from None


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.pt`` file: either a bare state dict or one of our checkpoints (key ``model``)."""
    obj = safe_load(path, "weights file", "give a path to a .pt file, or weights: none")
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict):
        raise DetectionError(f"{path}: expected a state dict, found {type(obj).__name__}")
    return obj


def hub_checkpoint_path(url: str) -> Path:
    """Where torch's hub cache keeps the file downloaded from ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def torchvision_state_dict(weights_enum: Any) -> dict[str, Any]:
    """``weights_enum.get_state_dict()``, with a clear error when it is neither cached nor downloadable."""
    target = hub_checkpoint_path(weights_enum.url)
    try:
        return weights_enum.get_state_dict(progress=False, check_hash=False)
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        raise DetectionError(
            f"torchvision weights {weights_enum} are not cached and could not be downloaded ({exc})",
            hint=f"download {weights_enum.url} on a machine with network and save it as {target}, "
            "or set model.weights: none",
        ) from None
