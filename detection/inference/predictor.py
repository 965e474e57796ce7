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
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from detection.errors import DetectionError
from detection.inference.size import size_rule

log = logging.getLogger(__name__)

# metadata_props keys of an exported .onnx (values are strings; class_names is a JSON list).
ONNX_META = {
    "format": "detection.format",
    "model_name": "detection.model_name",
    "class_names": "detection.class_names",
    "imgsz": "detection.imgsz",
    "source": "detection.source_checkpoint",
    "size_rule": "detection.size_rule",
    "keypoints": "detection.keypoints",  # a keypoint model's names, flip map and OKS sigmas (JSON)
    "proposals": "detection.proposals",  # RPN proposals per image in the graph (two-stage models)
}
ONNX_FORMAT = "detection-onnx/1"
ONNX_INPUT = "images"
ONNX_OUTPUTS = ("boxes", "labels", "scores")
ONNX_KEYPOINTS = "keypoints"  # a keypoint model's fourth output: (N, K, 3) x, y (pixels), keypoint score

# A backend maps a CHW float32 image in [0, 1] to (boxes (N, 4), labels (N,), scores (N,)), and a
# keypoint model's backend (torch or onnx) adds keypoints (N, K, 3).
RunFn = Callable[[np.ndarray], tuple[np.ndarray, ...]]
# A batched backend maps several such images to one such tuple per image.
RunManyFn = Callable[[list[np.ndarray]], list[tuple[np.ndarray, ...]]]


@dataclass(frozen=True)
class Detections:
    """Detections of one image; boxes are ``x1, y1, x2, y2`` in pixels of the original image."""

    boxes: np.ndarray  # float32 (N, 4)
    scores: np.ndarray  # float32 (N,)
    labels: np.ndarray  # int64 (N,), 1..num_classes (0 is background and never returned)
    names: list[str]
    keypoints: np.ndarray | None = None  # float32 (N, K, 3): x, y (pixels), score, of a keypoint model

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def keypoint_xy(self) -> np.ndarray | None:
        """The keypoints' positions (N, K, 2) to draw (their third column is a score, not a visibility)."""
        return None if self.keypoints is None else self.keypoints[..., :2]

    def to_records(self) -> list[dict[str, Any]]:
        """JSON-ready ``[{"box": [x1, y1, x2, y2], "score": s, "label": name}, ...]``; a keypoint model's
        records also hold ``"keypoints": [[x, y, score], ...]`` (its keypoint scores are logits)."""
        records = [
            {"box": [round(float(v), 2) for v in box], "score": round(float(score), 4), "label": name}
            for box, score, name in zip(self.boxes, self.scores, self.names, strict=True)
        ]
        if self.keypoints is not None:
            for record, points in zip(records, self.keypoints, strict=True):
                record["keypoints"] = [[round(float(x), 2), round(float(y), 2), round(float(s), 3)] for x, y, s in points]
        return records

    def select(self, keep: np.ndarray) -> Detections:
        """The detections where the boolean mask ``keep`` is true."""
        keep = np.asarray(keep, bool)
        points = None if self.keypoints is None else self.keypoints[keep]
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep], [n for n, k in zip(self.names, keep, strict=True) if k], points)


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
    run_many: RunManyFn | None = field(default=None, repr=False)  # one call for a batch (torch backend)
    proposals: int | None = None  # RPN proposals per image it runs with (two-stage models; None: others, or an old .onnx)

    def predict(self, image_rgb: np.ndarray, threshold: float = 0.5) -> Detections:
        return self._detections(self.run(to_chw_float(image_rgb)), threshold)

    def predict_batch(self, images_rgb: list[np.ndarray], threshold: float = 0.5) -> list[Detections]:
        """``predict`` on each image; the torch backend runs them as one batch (one forward pass)."""
        if self.run_many is None or len(images_rgb) < 2:
            return [self.predict(image, threshold) for image in images_rgb]
        return [self._detections(out, threshold) for out in self.run_many([to_chw_float(i) for i in images_rgb])]

    def class_ids(self, names: list[str] | None) -> np.ndarray | None:
        """Label ids of the class ``names`` (None: all classes); a DetectionError for an unknown name."""
        if not names:
            return None
        unknown = [n for n in names if n not in self.class_names]
        if unknown:
            import difflib

            close = sorted({c for n in unknown for c in difflib.get_close_matches(n, self.class_names, n=2)})
            hint = f"did you mean {', '.join(close)}?" if close else f"the model knows: {', '.join(self.class_names[:20])}{' ...' if len(self.class_names) > 20 else ''}"
            raise DetectionError(f"unknown class {', '.join(map(repr, unknown))} for model {self.model_name} ({self.weights})", hint=hint)
        return np.array([self.class_names.index(n) + 1 for n in names], np.int64)

    def _detections(self, out: tuple[np.ndarray, ...], threshold: float) -> Detections:
        """``out``: the backend's ``(boxes, labels, scores)``, and ``keypoints`` (N, K, 3) for a keypoint model."""
        boxes, labels, scores = out[:3]
        keep = scores >= threshold
        labels = labels[keep].astype(np.int64)
        return Detections(
            boxes=boxes[keep].astype(np.float32).reshape(-1, 4),
            scores=scores[keep].astype(np.float32),
            labels=labels,
            names=[self.label_name(int(i)) for i in labels],
            keypoints=out[3][keep].astype(np.float32) if len(out) > 3 else None,
        )

    def label_name(self, label: int) -> str:
        return self.class_names[label - 1] if 1 <= label <= len(self.class_names) else f"class{label}"


def to_chw_float(image_rgb: np.ndarray) -> np.ndarray:
    """An RGB uint8 HxWx3 image as the model input: contiguous CHW float32 in [0, 1]."""
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 HxWx3 image, got {image_rgb.dtype} of shape {image_rgb.shape}")
    return np.ascontiguousarray(image_rgb.transpose(2, 0, 1), dtype=np.float32) / np.float32(255.0)


def load_predictor(weights: Path, device: str = "cpu", proposals: int | None = None) -> Predictor:
    """Load ``weights`` (``.pt`` checkpoint or ``.onnx`` export) on ``device`` ("cpu", "cuda", "auto");
    ``proposals``: RPN proposals per image at inference (a two-stage ``.pt``; an ``.onnx`` has its
    count in the graph, and asking for another one is a ``DetectionError``)."""
    weights = Path(weights)
    suffix = weights.suffix.lower()
    if suffix not in (".pt", ".onnx"):
        raise DetectionError(
            f"{weights}: unknown weights file type {weights.suffix or '(no suffix)'!r}",
            hint="pass a checkpoint (.pt, from `detection train`) or an ONNX model (.onnx, from `detection export`)",
        )
    if not weights.is_file():
        raise DetectionError(f"weights file not found: {weights}", hint="train (`detection train`) or export (`detection export`) first, or fix the path")
    if suffix == ".pt":
        return _load_torch(weights, device, proposals)
    predictor = _load_onnx(weights, device)
    if proposals is not None and proposals != predictor.proposals:
        has = f"{predictor.proposals} RPN proposals per image" if predictor.proposals else "no proposal count"
        raise DetectionError(f"{weights} was exported with {has}; it cannot run with {proposals}", hint=f"re-export it: `detection export --proposals {proposals}`, or drop --proposals")
    return predictor


def _load_torch(weights: Path, device: str, proposals: int | None = None) -> Predictor:
    from detection.engine.checkpoint import load_model
    from detection.engine.device import resolve_device
    from detection.engine.tuning import set_inference_proposals

    model, meta = load_model(weights, resolve_device(device))
    if proposals is not None:
        set_inference_proposals(model, proposals)
    return torch_predictor(model, meta, weights)


def torch_predictor(model: Any, meta: dict[str, Any], weights: Path) -> Predictor:
    """A predictor over an already loaded model (eval mode) and its checkpoint ``meta``."""
    import torch

    from detection.engine.tuning import inference_proposals

    device = next(model.parameters()).device

    def run_many(chws: list[np.ndarray]) -> list[tuple[np.ndarray, ...]]:
        with torch.inference_mode():
            outs = model([torch.from_numpy(chw).to(device) for chw in chws])
        return [(o["boxes"].cpu().numpy(), o["labels"].cpu().numpy(), o["scores"].cpu().numpy(), *_keypoints(o)) for o in outs]

    def run(chw: np.ndarray) -> tuple[np.ndarray, ...]:
        return run_many([chw])[0]

    return Predictor(
        Path(weights), "torch", meta["model_name"], list(meta["class_names"]), int(meta["imgsz"]), run, run_many=run_many, proposals=inference_proposals(model)
    )


def _keypoints(out: dict[str, Any]) -> tuple[np.ndarray, ...]:
    """``(keypoints,)`` ``(N, K, 3)``: x, y and the keypoint score, of a keypoint model's output; else ``()``."""
    if "keypoints" not in out:
        return ()
    points = out["keypoints"].cpu().numpy().astype(np.float32)
    if "keypoints_scores" in out:
        points[..., 2] = out["keypoints_scores"].cpu().numpy()
    return (points,)


def onnx_providers(device: str = "cpu") -> list[str]:
    """onnxruntime providers for ``device``: CUDA first when asked for and available, CPU always."""
    import onnxruntime as ort

    wanted = ["CUDAExecutionProvider"] if device in ("cuda", "auto") or device.startswith("cuda:") else []
    return [p for p in wanted if p in ort.get_available_providers()] + ["CPUExecutionProvider"]


def cpu_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. a container's share), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def onnx_session_options() -> Any:
    """onnxruntime settings for a small CPU: intra-op threads = the cores we may use (not the
    machine's), one inter-op thread, sequential execution (a detector's graph is a chain; the
    parallel executor only adds thread hand-offs), all graph optimisations."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = cpu_cores()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only: no warnings about unused initialisers on stderr
    return opts


def _load_onnx(weights: Path, device: str) -> Predictor:
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(weights), sess_options=onnx_session_options(), providers=onnx_providers(device))
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
        proposals = int(meta[ONNX_META["proposals"]]) if ONNX_META["proposals"] in meta else None
    except (KeyError, ValueError) as exc:
        raise DetectionError(f"{weights}: broken metadata in the ONNX model ({exc})", hint="re-export it with `detection export`") from None
    input_name = session.get_inputs()[0].name
    output_names = [o.name for o in session.get_outputs()]
    if tuple(output_names) not in (ONNX_OUTPUTS, (*ONNX_OUTPUTS, ONNX_KEYPOINTS)):
        raise DetectionError(
            f"{weights}: expected ONNX outputs {list(ONNX_OUTPUTS)} (and {ONNX_KEYPOINTS!r} for a keypoint model), found {output_names}",
            hint="re-export it with `detection export`",
        )

    def run(chw: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(session.run(output_names, {input_name: chw}))

    return Predictor(weights, "onnx", model_name, class_names, imgsz, run, providers=session.get_providers(), proposals=proposals)


def onnx_metadata(
    model_name: str, class_names: list[str], imgsz: int, source: Path, keypoints: dict[str, Any] | None = None, proposals: int | None = None
) -> dict[str, str]:
    """The ``metadata_props`` that ``load_predictor`` needs, for the exporter to write (``keypoints``:
    a keypoint model's ``KeypointSpec.to_dict()``, kept for the tools that read the file;
    ``proposals``: a two-stage model's RPN proposals per image, as traced into the graph)."""
    extra = {} if keypoints is None else {ONNX_META["keypoints"]: json.dumps(keypoints)}
    extra |= {} if proposals is None else {ONNX_META["proposals"]: str(int(proposals))}
    return extra | {
        ONNX_META["format"]: ONNX_FORMAT,
        ONNX_META["model_name"]: model_name,
        ONNX_META["class_names"]: json.dumps(list(class_names)),
        ONNX_META["imgsz"]: str(int(imgsz)),
        ONNX_META["source"]: str(source),
        ONNX_META["size_rule"]: size_rule(imgsz),
    }
