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
(N,); a keypoint model also ``keypoints`` (N, K, 3: x, y in pixels, and the keypoint score, the
heatmap's peak logit, as torchvision's ``keypoints_scores``). Resizing and normalisation are inside the graph. ``metadata_props`` carry what inference
needs (keys in ``detection.inference.predictor.ONNX_META``).

Parity: both backends run on real images through the same ``Predictor`` code (threshold 0, so every
detection the graph returns is compared), matched by label and IoU (``detection.export.parity``: an
assignment, not the rank, since near-tied scores come back in either order on another CPU); the
export fails on a real mismatch: a detection one runtime has and the other has not (other than at the
detection cap or the score threshold), a box corner more than ``box_atol`` pixels off, or a score more
than ``score_atol`` off. The graph is traced on the first check image; when all check images have
one size, a crop of the first one to another size and aspect is checked too (``with_other_size``), so
that a size baked in at trace time cannot pass unseen.

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
from detection.engine.tuning import inference_proposals, set_inference_proposals
from detection.data.images import read_image_rgb
from detection.errors import DetectionError
from detection.export.parity import KEYPOINT_ATOL, check_parity, describe_failures
from detection.export.tracing import gather_merged_levels
from detection.inference.predictor import (
    ONNX_INPUT,
    ONNX_KEYPOINTS,
    ONNX_OUTPUTS,
    load_predictor,
    onnx_metadata,
    to_chw_float,
    torch_predictor,
)
from detection.inference.size import size_rule
from detection.io import atomic_path, write_json

log = logging.getLogger(__name__)

EXPORTER = "torch.onnx.export(dynamo=False) (TorchScript-based)"
MIN_OPSET = 11


class _TraceableTransform(GeneralizedRCNNTransform):
    """torchvision's transform with a resize that traces to the size eager torch computes (see above)."""

    @classmethod
    def of(cls, t: GeneralizedRCNNTransform) -> _TraceableTransform:
        return cls(t.min_size, t.max_size, t.image_mean, t.image_std, size_divisible=t.size_divisible, fixed_size=t.fixed_size)

    def _traced(self) -> bool:
        return torch.jit.is_tracing() and not self.training and self.fixed_size is None

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        # Traced: normalised after the resize instead (below). A bilinear resize is a weighted mean
        # (weights sum to 1), so the values are the same to float rounding, on the model's few pixels
        # rather than the source's (a 1360x800 image: 17x fewer Sub/Div elements).
        return image if self._traced() else super().normalize(image)

    def resize(self, image: torch.Tensor, target: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        if not self._traced() or target is not None:
            return super().resize(image, target)
        # 1-d float64 tensors throughout: the exporter casts 0-d operands of Div/Mul to float32.
        hw = operators.shape_as_tensor(image)[-2:].to(torch.float64)
        sides = torch.cat([hw.min(0, keepdim=True)[0], hw.max(0, keepdim=True)[0]])
        limits = torch.tensor([float(self.min_size[-1]), float(self.max_size)], dtype=torch.float64)
        scale = (limits / sides).min(0, keepdim=True)[0]
        size = torch.floor(hw * scale).to(torch.int64)  # as eager torch: floor(float64(side) * scale)
        resized = F.interpolate(image[None], size=(size[0], size[1]), mode="bilinear", align_corners=False)[0]
        return super().normalize(resized), None


def has_keypoints(model: nn.Module) -> bool:
    """Whether ``model`` is a keypoint detector (torchvision's Keypoint R-CNN: a keypoint predictor)."""
    return getattr(getattr(model, "roi_heads", None), "keypoint_predictor", None) is not None


def output_names(model: nn.Module) -> list[str]:
    """The exported graph's outputs: ``boxes``, ``labels``, ``scores`` (and ``keypoints``)."""
    return [*ONNX_OUTPUTS, ONNX_KEYPOINTS] if has_keypoints(model) else list(ONNX_OUTPUTS)


class _FlatOutputs(nn.Module):
    """A torchvision detector as ``image (3, H, W) -> (boxes, labels, scores[, keypoints])`` for a flat
    ONNX graph; keypoints as ``(N, K, 3)``: x, y and the keypoint score (torchvision's third keypoint
    column, the constant visibility 1, replaced by ``keypoints_scores``)."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = copy.deepcopy(detector)  # the caller's model keeps its own transform
        if isinstance(getattr(detector, "transform", None), GeneralizedRCNNTransform):
            self.detector.transform = _TraceableTransform.of(detector.transform)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.detector([image])[0]
        if "keypoints" not in out:
            return out["boxes"], out["labels"], out["scores"]
        points = torch.cat([out["keypoints"][..., :2], out["keypoints_scores"][..., None]], dim=-1)
        return out["boxes"], out["labels"], out["scores"], points


def export_graph(model: nn.Module, out: Path, example: torch.Tensor, opset: int) -> None:
    """Trace ``model`` (eval mode, CPU) on ``example`` (3, H, W) and write the ONNX graph to ``out``."""
    if opset < MIN_OPSET:
        raise DetectionError(f"ONNX opset {opset} is too old for torchvision detectors", hint=f"use opset >= {MIN_OPSET} (default 17)")
    n = "num_detections"
    names = output_names(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation of this exporter, tracer warnings torchvision expects
        try:
            with gather_merged_levels():  # one Gather instead of a ScatterElements per FPN level (tracing.py)
                torch.onnx.export(
                    _FlatOutputs(model).eval(),
                    (example,),
                    str(out),
                    dynamo=False,
                    opset_version=opset,
                    input_names=[ONNX_INPUT],
                    output_names=names,
                    dynamic_axes={ONNX_INPUT: {1: "height", 2: "width"}, **{name: {0: n} for name in names}},
                    do_constant_folding=True,
                )
        except RuntimeError as exc:
            if "Unsupported onnx_opset_version" in str(exc):
                raise DetectionError(f"ONNX opset {opset} is not supported by this torch {torch.__version__}", hint="use opset 11 to 22 (default 17)") from None
            raise


def _head_setting(model: nn.Module, name: str) -> float | None:
    for owner in (getattr(model, "roi_heads", None), model):  # Faster/Mask/Keypoint R-CNN; RetinaNet, FCOS, SSD
        value = getattr(owner, name, None)
        if isinstance(value, float | int) and not isinstance(value, bool):
            return value
    return None


def score_floor(model: nn.Module) -> float | None:
    """The detector's own score threshold (detections below it never leave the graph), if it has one."""
    value = _head_setting(model, "score_thresh")
    return None if value is None else float(value)


def detection_cap(model: nn.Module) -> int | None:
    """The detector's ``detections_per_img`` (the most detections the graph returns), if it has one."""
    value = _head_setting(model, "detections_per_img")
    return None if value is None else int(value)


def export_onnx(
    weights: Path,
    out: Path,
    check_images: list[Path],
    opset: int = 17,
    box_atol: float = 0.05,
    score_atol: float = 1e-3,
    report: Path | None = None,
    torchscript: bool = False,
    proposals: int | None = None,
) -> dict[str, Any]:
    """Export checkpoint ``weights`` to ``out`` (.onnx, atomically) and check parity on ``check_images``;
    with ``torchscript``, also ``<stem>.torchscript.pt`` (``torch.jit.script``, checked against eager).
    ``proposals``: RPN proposals per image traced into the graph (two-stage models; None: the
    model's own); parity is then checked against torch with the same count (its accuracy is
    ``detection.export.proposals.check_proposals``'s to judge).

    Returns the report (also written to ``report`` as JSON when given). Raises ``DetectionError`` if
    parity fails (the report is still written, ``out`` is not) or an input is unusable.
    """
    weights, out = Path(weights), Path(out)
    check_images = [Path(p) for p in check_images]
    if out.suffix.lower() != ".onnx":
        raise DetectionError(f"export target {out} must end in .onnx", hint="e.g. --out models/model.onnx")
    if not check_images:
        raise DetectionError("export needs at least one real image for the parity check", hint="pass check images (the valid split's)")
    model, meta = load_model(weights, "cpu")  # a bad checkpoint is named first
    own = inference_proposals(model) if proposals is None else set_inference_proposals(model, proposals)
    count = inference_proposals(model)  # in the graph (None: a one-stage model)
    images = with_other_size({p: read_image_rgb(p) for p in check_images})  # fail early, naming a bad image
    torch_pred = torch_predictor(model, meta, weights)
    with atomic_path(out) as tmp:
        start = time.perf_counter()
        export_graph(model, tmp, torch.from_numpy(to_chw_float(images[check_images[0]])), opset)
        graph = onnx.load(str(tmp))
        onnx.helper.set_model_props(graph, onnx_metadata(meta["model_name"], meta["class_names"], meta["imgsz"], weights, meta.get("keypoints"), count))
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
        floor, cap = score_floor(model), detection_cap(model)
        rows = check_parity(torch_pred, onnx_pred, images, box_atol, score_atol, score_floor=floor, cap=cap)
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
            "batch": "one image per run: the graph's outputs are per image and of variable length (torchvision detectors), so no batch axis",
            "size_rule": size_rule(int(meta["imgsz"])),
            "torchscript": str(torchscript_path(out)) if torchscript else None,
            "outputs": output_names(model),
            "proposals": count,
            "model_proposals": own,
            "file_size_bytes": tmp.stat().st_size,
            "export_seconds": round(export_s, 2),
            "providers": onnx_pred.providers,
            "versions": {"torch": str(torch.__version__), "onnx": onnx.__version__, "onnxruntime": ort.__version__},
            "box_atol_px": box_atol,
            "score_atol": score_atol,
            "matching": "per label, linear_sum_assignment on 1 - IoU (IoU >= 0.5); unmatched ties at the detection cap or the score threshold tolerated",
            "score_floor": floor,
            "detection_cap": cap,
            "matched": sum(r["matched"] for r in rows),
            "unmatched_torch": sum(r["unmatched_torch"] for r in rows),
            "unmatched_onnx": sum(r["unmatched_onnx"] for r in rows),
            "max_box_diff_px": max(r["max_box_diff_px"] for r in rows),
            "max_score_diff": max(r["max_score_diff"] for r in rows),
            **_keypoint_summary(rows),
            "images": rows,
        }
        if report is not None:
            write_json(report, result)
        if not result["ok"]:
            bad = [r for r in rows if not r["ok"]]
            detail = describe_failures(rows)
            raise DetectionError(
                f"ONNX parity failed for {weights} on {len(bad)}/{len(rows)} images (box_atol {box_atol} px, score_atol {score_atol}): {detail}",
                hint=f"{out} was not written; see {report}" if report else f"{out} was not written; try another opset or larger tolerances",
            )
    if torchscript:
        export_torchscript(model, torchscript_path(out), torch.from_numpy(to_chw_float(images[check_images[0]])))
    return result


def _keypoint_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The largest keypoint differences over the check images (a keypoint model's report only)."""
    if not rows or "max_keypoint_diff_px" not in rows[0]:
        return {}
    return {
        "keypoint_atol_px": KEYPOINT_ATOL,
        "max_keypoint_diff_px": max(r["max_keypoint_diff_px"] for r in rows),
        "max_keypoint_score_diff": max(r["max_keypoint_score_diff"] for r in rows),
    }


def with_other_size(images: dict[Path, np.ndarray]) -> dict[Path, np.ndarray]:
    """``images``, plus, when they all have one size, a crop of the first one to another size and aspect
    (its left 3/5, full height), named ``<image>#crop<W>x<H>``: the graph is traced on the first image,
    so a size baked in at trace time fails the check instead of passing unseen."""
    first = next(iter(images))
    if len({im.shape[:2] for im in images.values()}) > 1 or min(images[first].shape[:2]) < 16:
        return images
    h, w = images[first].shape[:2]
    crop = np.ascontiguousarray(images[first][:, : max(8, w * 3 // 5)])
    return {**images, first.with_name(f"{first.name}#crop{crop.shape[1]}x{h}"): crop}


def torchscript_path(onnx_path: Path) -> Path:
    return Path(onnx_path).with_name(Path(onnx_path).stem + ".torchscript.pt")


def export_torchscript(model: nn.Module, out: Path, example: torch.Tensor) -> Path:
    """``torch.jit.script`` the detector (eval mode) to ``out``, atomically, after checking that it gives
    eager torch's boxes on ``example``. Load it with ``torch.jit.load``; it returns ``(losses, detections)``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(copy.deepcopy(model).eval())
    with torch.inference_mode():
        eager = model([example])[0]
        _, script_out = scripted([example])
    if not torch.allclose(eager["boxes"], script_out[0]["boxes"], atol=1e-3):
        raise DetectionError(f"TorchScript export of {out} differs from eager torch", hint="export ONNX only (no --torchscript)")
    with atomic_path(out) as tmp:
        torch.jit.save(scripted, str(tmp))
    log.info("TorchScript -> %s", out)
    return out
