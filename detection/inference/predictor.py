"""One predictor over a checkpoint (``.pt``, PyTorch) or an exported model (``.onnx``, onnxruntime).

``load_predictor(weights)`` picks the backend from the file suffix; both backends take the same
input (one RGB uint8 image, converted here to a CHW float32 tensor in [0, 1]) and give the same
``Detections`` (boxes in pixels of the original image, since the model resizes internally and maps
its boxes back). The ONNX file carries what inference needs in its ``metadata_props`` under the
keys of ``ONNX_META``, written by ``detection.export.onnx`` and read back here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from detection.errors import DetectionError

log = logging.getLogger(__name__)

# metadata_props keys of an exported .onnx (values are strings; class_names is a JSON list).
ONNX_META = {
    "format": "detection.format",
    "model_name": "detection.model_name",
    "class_names": "detection.class_names",
    "imgsz": "detection.imgsz",
    "source": "detection.source_checkpoint",
}
ONNX_FORMAT = "detection-onnx/1"
ONNX_INPUT = "image"
ONNX_OUTPUTS = ("boxes", "labels", "scores")

# A backend maps a CHW float32 image in [0, 1] to (boxes (N, 4), labels (N,), scores (N,)).
RunFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Detections:
    """Detections of one image; boxes are ``x1, y1, x2, y2`` in pixels of the original image."""

    boxes: np.ndarray  # float32 (N, 4)
    scores: np.ndarray  # float32 (N,)
    labels: np.ndarray  # int64 (N,), 1..num_classes (0 is background and never returned)
    names: list[str]

    def __len__(self) -> int:
        return len(self.scores)

    def to_records(self) -> list[dict[str, Any]]:
        """JSON-ready ``[{"box": [x1, y1, x2, y2], "score": s, "label": name}, ...]``."""
        return [
            {"box": [round(float(v), 2) for v in box], "score": round(float(score), 4), "label": name}
            for box, score, name in zip(self.boxes, self.scores, self.names, strict=True)
        ]


@dataclass(frozen=True)
class Predictor:
    """A loaded model: ``predict(image_rgb, threshold)`` gives the ``Detections`` of one image."""

    weights: Path
    backend: str  # "torch" or "onnx"
    model_name: str
    class_names: list[str]
    imgsz: int
    run: RunFn = field(repr=False)
    providers: list[str] = field(default_factory=list)  # onnxruntime execution providers (onnx backend)

    def predict(self, image_rgb: np.ndarray, threshold: float = 0.5) -> Detections:
        boxes, labels, scores = self.run(to_chw_float(image_rgb))
        keep = scores >= threshold
        labels = labels[keep].astype(np.int64)
        return Detections(
            boxes=boxes[keep].astype(np.float32).reshape(-1, 4),
            scores=scores[keep].astype(np.float32),
            labels=labels,
            names=[self.label_name(int(i)) for i in labels],
        )

    def label_name(self, label: int) -> str:
        return self.class_names[label - 1] if 1 <= label <= len(self.class_names) else f"class{label}"


def to_chw_float(image_rgb: np.ndarray) -> np.ndarray:
    """An RGB uint8 HxWx3 image as the model input: contiguous CHW float32 in [0, 1]."""
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 HxWx3 image, got {image_rgb.dtype} of shape {image_rgb.shape}")
    return np.ascontiguousarray(image_rgb.transpose(2, 0, 1), dtype=np.float32) / np.float32(255.0)


def load_predictor(weights: Path, device: str = "cpu") -> Predictor:
    """Load ``weights`` (``.pt`` checkpoint or ``.onnx`` export) on ``device`` ("cpu", "cuda", "auto")."""
    weights = Path(weights)
    suffix = weights.suffix.lower()
    if suffix not in (".pt", ".onnx"):
        raise DetectionError(
            f"{weights}: unknown weights file type {weights.suffix or '(no suffix)'!r}",
            hint="pass a checkpoint (.pt, from `detection train`) or an ONNX model (.onnx, from `detection export`)",
        )
    if not weights.is_file():
        raise DetectionError(f"weights file not found: {weights}", hint="train (`detection train`) or export (`detection export`) first, or fix the path")
    return _load_torch(weights, device) if suffix == ".pt" else _load_onnx(weights, device)


def _load_torch(weights: Path, device: str) -> Predictor:
    from detection.engine.checkpoint import load_model
    from detection.engine.device import resolve_device

    model, meta = load_model(weights, resolve_device(device))
    return torch_predictor(model, meta, weights)


def torch_predictor(model: Any, meta: dict[str, Any], weights: Path) -> Predictor:
    """A predictor over an already loaded model (eval mode) and its checkpoint ``meta``."""
    import torch

    device = next(model.parameters()).device

    def run(chw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with torch.inference_mode():
            out = model([torch.from_numpy(chw).to(device)])[0]
        return out["boxes"].cpu().numpy(), out["labels"].cpu().numpy(), out["scores"].cpu().numpy()

    return Predictor(Path(weights), "torch", meta["model_name"], list(meta["class_names"]), int(meta["imgsz"]), run)


def onnx_providers(device: str = "cpu") -> list[str]:
    """onnxruntime providers for ``device``: CUDA first when asked for and available, CPU always."""
    import onnxruntime as ort

    wanted = ["CUDAExecutionProvider"] if device in ("cuda", "auto") or device.startswith("cuda:") else []
    return [p for p in wanted if p in ort.get_available_providers()] + ["CPUExecutionProvider"]


def _load_onnx(weights: Path, device: str) -> Predictor:
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(weights), providers=onnx_providers(device))
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types for bad files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DetectionError(f"{weights}: not a readable ONNX model ({first})", hint="re-export it with `detection export`") from None
    meta = session.get_modelmeta().custom_metadata_map
    if meta.get(ONNX_META["format"]) != ONNX_FORMAT:
        raise DetectionError(
            f"{weights}: an ONNX model without this tool's metadata (expected {ONNX_META['format']}={ONNX_FORMAT!r})",
            hint="export it with `detection export --weights CKPT --out model.onnx`",
        )
    try:
        class_names = json.loads(meta[ONNX_META["class_names"]])
        imgsz = int(meta[ONNX_META["imgsz"]])
        model_name = meta[ONNX_META["model_name"]]
    except (KeyError, ValueError) as exc:
        raise DetectionError(f"{weights}: broken metadata in the ONNX model ({exc})", hint="re-export it with `detection export`") from None
    input_name = session.get_inputs()[0].name
    output_names = [o.name for o in session.get_outputs()]
    if tuple(output_names) != ONNX_OUTPUTS:
        raise DetectionError(f"{weights}: expected ONNX outputs {list(ONNX_OUTPUTS)}, found {output_names}", hint="re-export it with `detection export`")

    def run(chw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        boxes, labels, scores = session.run(output_names, {input_name: chw})
        return boxes, labels, scores

    return Predictor(weights, "onnx", model_name, class_names, imgsz, run, providers=session.get_providers())


def onnx_metadata(model_name: str, class_names: list[str], imgsz: int, source: Path) -> dict[str, str]:
    """The ``metadata_props`` that ``load_predictor`` needs, for the exporter to write."""
    return {
        ONNX_META["format"]: ONNX_FORMAT,
        ONNX_META["model_name"]: model_name,
        ONNX_META["class_names"]: json.dumps(list(class_names)),
        ONNX_META["imgsz"]: str(int(imgsz)),
        ONNX_META["source"]: str(source),
    }
