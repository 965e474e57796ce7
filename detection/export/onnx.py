"""Export a checkpoint to ONNX and prove it: ``onnx.checker`` plus a torch-vs-onnxruntime parity check.

Exporter choice (checked with torch 2.14.1, torchvision 0.29.1, onnx 1.23, onnxruntime 1.31):

- ``torch.onnx.export`` defaults to the dynamo (``torch.export``) exporter since torch 2.9; it needs
  the ``onnxscript`` package, which this project does not install (``ModuleNotFoundError``).
- The TorchScript-based exporter (``dynamo=False``) is the path torchvision's detectors are built and
  tested for: their transform, anchor generator and RoI heads have tracing branches that keep the
  image size dynamic. Opsets 11 to 21 export and run in onnxruntime here; opset 10 fails on a
  dynamic ``Pad``; 22 and 23 export but onnxruntime 1.31 has no CPU kernel for ``RoiAlign``-22;
  torch rejects 24 and above. It warns that it is deprecated; those warnings are silenced here and
  the exporter is named in the report. So this module uses ``dynamo=False``, opset 17 by default.

The graph takes one CHW float32 image in [0, 1] (RGB) with dynamic height and width, and returns
``boxes`` (N, 4, pixels of the input image), ``labels`` (N,, int64, 1..num_classes) and ``scores``
(N,). Resizing and normalisation are inside the graph. ``metadata_props`` carry what inference
needs (keys in ``detection.inference.predictor.ONNX_META``).

Parity: both backends run on real images through the same ``Predictor`` code (threshold 0, so every
detection the graph returns is compared). Detections are paired greedily by label and nearest box
(ties in score may be returned in a different order), then the number of detections must match and
the largest box difference must be <= ``box_atol`` (pixels) and the largest score difference <= ``score_atol``.

One fix to torchvision's traced resize (``_TraceableTransform``, used only while exporting): it
computes the scale as ``float / tensor``, which the exporter turns into a float32 reciprocal times a
constant, and hands ``Resize`` that scale; onnxruntime then makes some images one pixel short
(200x120 -> 319x191 instead of 320x192, 432x768 -> 179x319 instead of 180x320; the last row and
column become padding), so the detections differ. The export computes the size in float64, as eager
torch does (``floor(side * scale)``), and passes it to ``Resize`` as ``sizes``: over 300 random
image sizes the resized image then has the same size as in torch and differs by <= 2.3e-4 (float
rounding of the sampling positions). Eager and training behaviour of the model are untouched.
"""

from __future__ import annotations

import copy
import logging
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from torch import nn
from torch.onnx import operators
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from detection.engine.checkpoint import load_model
from detection.data.images import read_image_rgb
from detection.errors import DetectionError
from detection.inference.predictor import (
    ONNX_INPUT,
    ONNX_OUTPUTS,
    Detections,
    Predictor,
    load_predictor,
    onnx_metadata,
    to_chw_float,
    torch_predictor,
)
from detection.io import atomic_path, write_json

log = logging.getLogger(__name__)

EXPORTER = "torch.onnx.export(dynamo=False) (TorchScript-based)"
MIN_OPSET = 11


class _TraceableTransform(GeneralizedRCNNTransform):
    """torchvision's transform with a resize that traces to the size eager torch computes (see above)."""

    @classmethod
    def of(cls, t: GeneralizedRCNNTransform) -> _TraceableTransform:
        return cls(t.min_size, t.max_size, t.image_mean, t.image_std, size_divisible=t.size_divisible, fixed_size=t.fixed_size)

    def resize(self, image: torch.Tensor, target: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        if not torch.jit.is_tracing() or self.training or self.fixed_size is not None or target is not None:
            return super().resize(image, target)
        # 1-d float64 tensors throughout: the exporter casts 0-d operands of Div/Mul to float32.
        hw = operators.shape_as_tensor(image)[-2:].to(torch.float64)
        sides = torch.cat([hw.min(0, keepdim=True)[0], hw.max(0, keepdim=True)[0]])
        limits = torch.tensor([float(self.min_size[-1]), float(self.max_size)], dtype=torch.float64)
        scale = (limits / sides).min(0, keepdim=True)[0]
        size = torch.floor(hw * scale).to(torch.int64)  # as eager torch: floor(float64(side) * scale)
        return F.interpolate(image[None], size=(size[0], size[1]), mode="bilinear", align_corners=False)[0], None


class _FlatOutputs(nn.Module):
    """A torchvision detector as ``image (3, H, W) -> (boxes, labels, scores)`` for a flat ONNX graph."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = copy.deepcopy(detector)  # the caller's model keeps its own transform
        if isinstance(getattr(detector, "transform", None), GeneralizedRCNNTransform):
            self.detector.transform = _TraceableTransform.of(detector.transform)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.detector([image])[0]
        return out["boxes"], out["labels"], out["scores"]


def export_graph(model: nn.Module, out: Path, example: torch.Tensor, opset: int) -> None:
    """Trace ``model`` (eval mode, CPU) on ``example`` (3, H, W) and write the ONNX graph to ``out``."""
    if opset < MIN_OPSET:
        raise DetectionError(f"ONNX opset {opset} is too old for torchvision detectors", hint=f"use opset >= {MIN_OPSET} (default 17)")
    n = "num_detections"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation of this exporter, tracer warnings torchvision expects
        try:
            torch.onnx.export(
                _FlatOutputs(model).eval(),
                (example,),
                str(out),
                dynamo=False,
                opset_version=opset,
                input_names=[ONNX_INPUT],
                output_names=list(ONNX_OUTPUTS),
                dynamic_axes={ONNX_INPUT: {1: "height", 2: "width"}, "boxes": {0: n}, "labels": {0: n}, "scores": {0: n}},
                do_constant_folding=True,
            )
        except RuntimeError as exc:
            if "Unsupported onnx_opset_version" in str(exc):
                raise DetectionError(f"ONNX opset {opset} is not supported by this torch {torch.__version__}", hint="use opset 11 to 22 (default 17)") from None
            raise


def match_detections(a: Detections, b: Detections) -> tuple[float, float, int]:
    """Pair ``a`` with ``b`` (same label, nearest box; greedy by ``a``'s score); return
    ``(max box diff px, max score diff, number of unpaired detections)`` over the pairs."""
    used = np.zeros(len(b), bool)
    box_diff = score_diff = 0.0
    unpaired = 0
    for i in np.argsort(-a.scores, kind="stable"):
        cost = np.abs(b.boxes - a.boxes[i]).max(axis=1) if len(b) else np.zeros(0)
        cost = np.where(used | (b.labels != a.labels[i]), np.inf, cost)
        j = int(np.argmin(cost)) if len(cost) else -1
        if j < 0 or not np.isfinite(cost[j]):
            unpaired += 1
            continue
        used[j] = True
        box_diff = max(box_diff, float(cost[j]))
        score_diff = max(score_diff, float(abs(a.scores[i] - b.scores[j])))
    return box_diff, score_diff, unpaired + int((~used).sum())


def _timed_predict(predictor: Predictor, image: np.ndarray) -> tuple[Detections, float]:
    start = time.perf_counter()
    det = predictor.predict(image, threshold=0.0)
    return det, (time.perf_counter() - start) * 1000


def check_parity(
    torch_pred: Predictor, onnx_pred: Predictor, images: dict[Path, np.ndarray], box_atol: float, score_atol: float
) -> list[dict[str, Any]]:
    """Run both predictors on each RGB image; one record per image (counts, max diffs, timings, ok)."""
    rows = []
    for path, image in images.items():
        if not rows:  # warm-up, so that the timings of the first image are not of allocation
            _timed_predict(torch_pred, image)
            _timed_predict(onnx_pred, image)
        t_det, t_ms = _timed_predict(torch_pred, image)
        o_det, o_ms = _timed_predict(onnx_pred, image)
        box_diff, score_diff, unpaired = match_detections(t_det, o_det)
        ok = len(t_det) == len(o_det) and unpaired == 0 and box_diff <= box_atol and score_diff <= score_atol
        rows.append(
            {
                "image": str(path),
                "width": int(image.shape[1]),
                "height": int(image.shape[0]),
                "torch_detections": len(t_det),
                "onnx_detections": len(o_det),
                "unpaired": unpaired,
                "max_box_diff_px": box_diff,
                "max_score_diff": score_diff,
                "torch_ms": round(t_ms, 2),
                "onnx_ms": round(o_ms, 2),
                "ok": ok,
            }
        )
        log.info("parity %s: %d/%d detections, box diff %.2e px, score diff %.2e", path.name, len(t_det), len(o_det), box_diff, score_diff)
    return rows


def export_onnx(
    weights: Path,
    out: Path,
    check_images: list[Path],
    opset: int = 17,
    box_atol: float = 0.05,
    score_atol: float = 1e-3,
    report: Path | None = None,
) -> dict[str, Any]:
    """Export checkpoint ``weights`` to ``out`` (.onnx, atomically) and check parity on ``check_images``.

    Returns the report (also written to ``report`` as JSON when given). Raises ``DetectionError`` if
    parity fails (the report is still written, ``out`` is not) or an input is unusable.
    """
    weights, out = Path(weights), Path(out)
    check_images = [Path(p) for p in check_images]
    if out.suffix.lower() != ".onnx":
        raise DetectionError(f"export target {out} must end in .onnx", hint="e.g. --out models/model.onnx")
    if not check_images:
        raise DetectionError("export needs at least one real image for the parity check", hint="pass check images (the valid split's)")
    images = {p: read_image_rgb(p) for p in check_images}  # fail early, naming a bad image
    model, meta = load_model(weights, "cpu")
    torch_pred = torch_predictor(model, meta, weights)
    with atomic_path(out) as tmp:
        start = time.perf_counter()
        export_graph(model, tmp, torch.from_numpy(to_chw_float(images[check_images[0]])), opset)
        graph = onnx.load(str(tmp))
        onnx.helper.set_model_props(graph, onnx_metadata(meta["model_name"], meta["class_names"], meta["imgsz"], weights))
        onnx.checker.check_model(graph, full_check=True)
        onnx.save(graph, str(tmp))
        export_s = time.perf_counter() - start
        log.info("exported %s -> %s (opset %d, %.1f s)", weights, out, opset, export_s)
        try:
            onnx_pred = load_predictor(tmp, "cpu")
        except DetectionError as exc:
            raise DetectionError(
                f"onnxruntime {ort.__version__} cannot run {weights} exported at opset {opset}: {exc.message}",
                hint="opsets 11 to 21 are known to work; the default is 17",
            ) from None
        rows = check_parity(torch_pred, onnx_pred, images, box_atol, score_atol)
        result = {
            "ok": all(r["ok"] for r in rows),
            "onnx": str(out),
            "weights": str(weights),
            "model_name": meta["model_name"],
            "class_names": list(meta["class_names"]),
            "imgsz": meta["imgsz"],
            "exporter": EXPORTER,
            "opset": opset,
            "input": {"name": ONNX_INPUT, "shape": [3, "height", "width"], "dtype": "float32", "range": [0, 1], "channels": "RGB"},
            "outputs": list(ONNX_OUTPUTS),
            "file_size_bytes": tmp.stat().st_size,
            "export_seconds": round(export_s, 2),
            "providers": onnx_pred.providers,
            "versions": {"torch": str(torch.__version__), "onnx": onnx.__version__, "onnxruntime": ort.__version__},
            "box_atol_px": box_atol,
            "score_atol": score_atol,
            "max_box_diff_px": max(r["max_box_diff_px"] for r in rows),
            "max_score_diff": max(r["max_score_diff"] for r in rows),
            "images": rows,
        }
        if report is not None:
            write_json(report, result)
        if not result["ok"]:
            bad = [r for r in rows if not r["ok"]]
            detail = "; ".join(
                f"{Path(r['image']).name}: {r['torch_detections']} torch vs {r['onnx_detections']} onnx detections, "
                f"box diff {r['max_box_diff_px']:.3g} px, score diff {r['max_score_diff']:.3g}"
                for r in bad[:3]
            )
            raise DetectionError(
                f"ONNX parity failed for {weights} on {len(bad)}/{len(rows)} images (box_atol {box_atol} px, score_atol {score_atol}): {detail}",
                hint=f"{out} was not written; see {report}" if report else f"{out} was not written; try another opset or larger tolerances",
            )
    return result
