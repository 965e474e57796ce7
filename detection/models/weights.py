"""Loading weights safely and offline-aware.

- Local files are read with ``torch.load(..., weights_only=True)`` (no pickle code execution).
- torchvision weights are looked up in torch's hub cache first; when they are absent and the
  download fails (no network), the error names the file and the folder to put it in.
- Every load says how many tensors it loaded (``LoadReport``) and fails when a pretrained request
  loads (almost) none: names are aligned across prefixes (``features.0.0.weight`` in an ImageNet
  file is ``0.0.weight`` in a detector's backbone), and BatchNorm's ``num_batches_tracked`` does not count.
"""

from __future__ import annotations

import logging
import os
import urllib.error
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from detection.errors import DetectionError

log = logging.getLogger(__name__)


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


def is_cached(url: str) -> bool:
    return hub_checkpoint_path(url).is_file()


def hub_state_dict(url: str, what: str) -> dict[str, torch.Tensor]:
    """The state dict of torchvision's weights file ``url``: from the hub cache, else downloaded.

    Offline, one line names the exact file and ``$TORCH_HOME/hub/checkpoints``; with
    ``DETECTION_OFFLINE=1`` no download is tried (no wait for a network that is not there).
    """
    target = hub_checkpoint_path(url)
    if not target.is_file() and os.environ.get("DETECTION_OFFLINE") == "1":
        raise DetectionError(
            f"{what} weights file {target} is missing (DETECTION_OFFLINE=1: no download tried)",
            hint=f"download {url} on a machine with network and put it there ($TORCH_HOME/hub/checkpoints = {target.parent})",
        )
    if not target.is_file():
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(target), progress=False)
        except (urllib.error.URLError, OSError, RuntimeError) as exc:
            raise DetectionError(
                f"{what} weights file {target} is missing and could not be downloaded ({type(exc).__name__}: {exc})",
                hint=f"put {url} there by hand ($TORCH_HOME/hub/checkpoints = {target.parent}), "
                "or set model.weights: none (or auto)",
            ) from None
    state = safe_load(target, f"{what} weights file", "delete it and download it again")
    if not isinstance(state, dict):
        raise DetectionError(f"{target}: expected a state dict, found {type(state).__name__}", hint="delete it and download it again")
    return state


def _counted(key: str, value: Any) -> bool:
    return isinstance(value, torch.Tensor) and not key.endswith("num_batches_tracked")


def align(target_keys: list[str], source: dict[str, Any]) -> dict[str, str]:
    """Map target keys to source keys: exact names, else the one prefix rewrite that matches the most
    (``0.0.weight`` <- ``features.0.0.weight``, ``backbone.body.conv1.weight`` <- ``conv1.weight``)."""
    if sum(k in source for k in target_keys) >= 0.5 * max(1, len(target_keys)):
        return {k: k for k in target_keys if k in source}
    prefixes: dict[str, list[str]] = {}
    for key in source:
        parts = key.split(".")
        for i in range(len(parts)):
            prefixes.setdefault(".".join(parts[i:]), []).append(".".join(parts[:i]))
    votes: Counter[tuple[str, str]] = Counter()
    for key in target_keys:
        parts = key.split(".")
        for j in range(len(parts)):
            for src_prefix in prefixes.get(".".join(parts[j:]), ()):
                votes[(".".join(parts[:j]), src_prefix)] += 1
            if ".".join(parts[j:]) in prefixes:
                break  # the longest common suffix decides
    if not votes:
        return {}
    (tgt_prefix, src_prefix), _ = votes.most_common(1)[0]
    mapping = {}
    for key in target_keys:
        if tgt_prefix and not key.startswith(tgt_prefix + "."):
            continue
        rest = key[len(tgt_prefix) + 1 :] if tgt_prefix else key
        src = f"{src_prefix}.{rest}" if src_prefix else rest
        if src in source:
            mapping[key] = src
    return mapping


@dataclass
class LoadReport:
    """What a weights load did: ``loaded`` of ``total`` tensors of the module, from ``source``."""

    source: str
    loaded: int
    total: int
    skipped: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "loaded_tensors": self.loaded, "total_tensors": self.total, "skipped": self.skipped[:20]}


def load_matching(module: nn.Module, state: dict[str, Any], source: str, min_fraction: float = 0.5) -> LoadReport:
    """Load every tensor of ``state`` whose (aligned) name and shape match ``module``; log the count and
    the skipped ones; fail when fewer than ``min_fraction`` of the module's tensors loaded."""
    own = {k: v for k, v in module.state_dict().items() if _counted(k, v)}
    mapping = align(list(own), {k: v for k, v in state.items() if _counted(k, v)})
    subset, skipped = {}, []
    for key, value in own.items():
        src = mapping.get(key)
        if src is not None and tuple(state[src].shape) == tuple(value.shape):
            subset[key] = state[src]
        else:
            skipped.append(key)
    report = LoadReport(source, len(subset), len(own), skipped)
    if report.loaded < min_fraction * report.total:
        raise DetectionError(
            f"{source}: only {report.loaded} of {report.total} tensors match the model (e.g. model {next(iter(own), '?')!r}, "
            f"file {next(iter(state), '?')!r})",
            hint="the weights are for another architecture: pick the matching model name, or set model.weights: none",
        )
    module.load_state_dict(subset, strict=False)
    log.info("weights: loaded %d/%d tensors from %s", report.loaded, report.total, source)
    if skipped:
        log.info("weights: %d tensors kept their initial values (not in the file or another shape): %s", len(skipped), ", ".join(skipped[:8]) + (" ..." if len(skipped) > 8 else ""))
    return report


def count_equal(module: nn.Module, state: dict[str, Any]) -> int:
    """How many tensors of ``state`` equal (after name alignment) the module's: a check that a load happened."""
    own = {k: v for k, v in module.state_dict().items() if _counted(k, v)}
    source = {k: v for k, v in state.items() if _counted(k, v)}
    mapping = align(list(own), source)
    return sum(
        1 for key, src in mapping.items() if own[key].shape == source[src].shape and torch.equal(own[key].float().cpu(), source[src].float().cpu())
    )


def load_weights_file(model: nn.Module, path: str | Path) -> LoadReport:
    """Load a ``.pt`` state dict or checkpoint into ``model``. A checkpoint trained for another number of
    classes seeds the model: the tensors that match load, the predictor keeps its new initial values,
    and the log lists what was skipped."""
    return load_matching(model, load_state_dict_file(path), str(path))


def resolve_auto(weights: str, options: dict[str, str | None]) -> str:
    """``auto`` -> the first pretrained start whose file is in the hub cache (``options``: choice -> url,
    in order of preference), else ``none``; any other value is returned as it is."""
    if weights != "auto":
        return weights
    for choice, url in options.items():
        if url and is_cached(url):
            log.info("weights: auto -> %s (%s is cached)", choice, hub_checkpoint_path(url))
            return choice
    log.info("weights: auto -> none (no pretrained file in %s)", hub_checkpoint_path("x").parent)
    return "none"


def tag(model: nn.Module, requested: str, used: str, report: LoadReport | None, norm: str, trainable_layers: int | None) -> nn.Module:
    """Attach what the build did (``model.weights_info``) for the run's metrics, and log it."""
    info = {"requested": requested, "used": used, "norm": norm, "trainable_layers": trainable_layers}
    if report is not None:
        info.update(report.as_dict())
    model.weights_info = info  # type: ignore[attr-defined]
    if type(model).__name__ in ("RetinaNet", "FCOS") and not getattr(model, "_masks_background", False):
        model.head.classification_head.register_forward_hook(_mask_background)  # type: ignore[union-attr]
        model._masks_background = True  # type: ignore[attr-defined]
    log.info("model: weights %s (asked %s), %s, trainable backbone stages %s", used, requested, norm, "all" if trainable_layers is None else trainable_layers)
    return model


def _mask_background(module: nn.Module, _inputs: Any, logits: torch.Tensor) -> torch.Tensor:
    """RetinaNet/FCOS heads score every class index with a sigmoid, 0 included, and label 0 is background
    here: in eval its logit is set to -1e4 (score exactly 0, below any threshold) before the per-level
    top-k and the detection cap, so background candidates never take the slots of real classes (dropping
    them afterwards left an untrained or weak model with too few, or no, detections). Training is
    untouched (class 0 is never a positive, so the focal loss pushes it down anyway)."""
    if module.training:
        return logits
    return torch.cat([torch.full_like(logits[..., :1], -1e4), logits[..., 1:]], dim=-1)
