"""Dynamic int8 quantization of an exported ONNX detector, judged by accuracy instead of exact parity.

``quantize_int8`` runs onnxruntime's ``quantize_dynamic`` on a graph written by
``detection.export.onnx``: the weights of the ``MatMul``/``Gemm`` nodes become int8 (per output
channel), activations are quantized on the fly (``DynamicQuantizeLinear`` -> ``MatMulInteger``). In a
Faster R-CNN those nodes are the box head (two 1024-wide fully connected layers over every proposal),
which is most of the FLOPs of a small-backbone model at 320 px. Convolutions stay float: quantized
with ``ConvInteger`` they ran slower than fp32 on the CPU this was measured on (AVX512-VNNI), since
onnxruntime has no fused dynamic int8 convolution there. The metadata that ``load_predictor`` reads is
kept, plus ``detection.quantized`` (JSON: method, weight type, node types, options).

A quantized graph cannot match the fp32 graph to ``box_atol``; ``quantize_export`` checks instead:

- agreement on the check images: the fp32 graph's detections with score >= ``threshold`` that the
  int8 graph also finds (same label, IoU >= 0.5, an assignment as in ``detection.export.parity``),
  and the other way round; ``matched_fraction`` over both (None when neither has such a detection:
  not judged), and the box/score differences of the pairs;
- when a labelled split is given, COCO mAP and mAP@0.5 of both graphs on it
  (``detection.engine.evaluate.coco_metrics``); the export fails if mAP@0.5 drops by more than
  ``map_tol`` or the matched fraction is below ``min_matched``.

The int8 file is written atomically and only when the check passes; the figures go into the export
report under ``int8`` either way.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from detection.data.images import read_image_rgb
from detection.errors import DetectionError
from detection.export.parity import match_detections
from detection.inference.predictor import Detections, Predictor, load_predictor
from detection.io import add_to_json, atomic_path

log = logging.getLogger(__name__)

QUANTIZED_KEY = "detection.quantized"  # metadata_props key of a quantized graph (JSON)
DEFAULT_OPS = ("MatMul", "Gemm")
IOU_MIN = 0.5


def int8_path(onnx_path: Path) -> Path:
    """``models/model.onnx`` -> ``models/model.int8.onnx``."""
    return Path(onnx_path).with_name(Path(onnx_path).stem + ".int8.onnx")


def quantize_int8(src: Path, out: Path, *, op_types: tuple[str, ...] = DEFAULT_OPS, per_channel: bool = True, reduce_range: bool = False) -> Path:
    """Write ``src`` (an fp32 .onnx from ``detection export``) with int8 weights in ``op_types`` to ``out``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, out = Path(src), Path(out)
    if not src.is_file():
        raise DetectionError(f"ONNX model not found: {src}", hint="export it first (`detection export`)")
    try:
        props = {p.key: p.value for p in onnx.load(str(src), load_external_data=False).metadata_props}
    except Exception as exc:  # noqa: BLE001 - onnx raises DecodeError and others for a bad file
        raise DetectionError(f"{src}: not a readable ONNX model ({type(exc).__name__})", hint="re-export it with `detection export`") from None
    if QUANTIZED_KEY in props:
        raise DetectionError(f"{src} is already quantized", hint="quantize the fp32 export (models/model.onnx)")
    with atomic_path(out) as tmp:
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # the quantizer logs a pre-processing suggestion on the root logger
        try:
            quantize_dynamic(src, tmp, op_types_to_quantize=list(op_types), per_channel=per_channel, reduce_range=reduce_range, weight_type=QuantType.QInt8)
        finally:
            root.setLevel(level)
        graph = onnx.load(str(tmp))
        options = {"method": "onnxruntime.quantization.quantize_dynamic", "weights": "int8", "activations": "uint8, dynamic per tensor",
                   "op_types": list(op_types), "per_channel": per_channel, "reduce_range": reduce_range, "source": str(src)}  # fmt: skip
        props[QUANTIZED_KEY] = json.dumps(options)
        del graph.metadata_props[:]
        onnx.helper.set_model_props(graph, props)
        onnx.save(graph, str(tmp))
    log.info("int8 (%s weights) %s -> %s", "/".join(op_types), src, out)
    return out


def quantization(path: Path) -> dict[str, Any] | None:
    """The ``detection.quantized`` metadata of an .onnx file (None for an fp32 graph)."""
    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return json.loads(props[QUANTIZED_KEY]) if QUANTIZED_KEY in props else None


def _confident(det: Detections, threshold: float) -> Detections:
    return det.select(det.scores >= threshold)


def agreement(ref: Predictor, new: Predictor, images: dict[Path, np.ndarray], threshold: float = 0.5) -> dict[str, Any]:
    """How far ``new``'s detections follow ``ref``'s on each RGB image: each side's detections with
    score >= ``threshold`` matched against all of the other side's (so a score that crossed the
    threshold does not count as a miss)."""
    rows, matched, total, box_d, score_d = [], 0, 0, 0.0, 0.0
    for path, image in images.items():
        a, b = ref.predict(image, threshold=0.0), new.predict(image, threshold=0.0)
        a_hi, b_hi = _confident(a, threshold), _confident(b, threshold)
        inf = float("inf")
        ma = match_detections(a_hi, b, box_atol=inf, score_atol=inf, iou_min=IOU_MIN)
        mb = match_detections(b_hi, a, box_atol=inf, score_atol=inf, iou_min=IOU_MIN)
        n = len(a_hi) + len(b_hi)
        matched, total = matched + ma.matched + mb.matched, total + n
        box_d, score_d = max(box_d, ma.max_box_diff, mb.max_box_diff), max(score_d, ma.max_score_diff, mb.max_score_diff)
        rows.append({"image": str(path), "fp32_detections": len(a_hi), "int8_detections": len(b_hi), "fp32_matched": ma.matched, "int8_matched": mb.matched,
                     "max_box_diff_px": round(max(ma.max_box_diff, mb.max_box_diff), 3), "max_score_diff": round(max(ma.max_score_diff, mb.max_score_diff), 4)})  # fmt: skip
    return {"threshold": threshold, "detections": total, "matched_fraction": round(matched / total, 4) if total else None,
            "max_box_diff_px": round(box_d, 3), "max_score_diff": round(score_d, 4), "images": rows}  # fmt: skip


def split_map(predictor: Predictor, table: Any, root: Path) -> dict[str, Any]:
    """COCO mAP / mAP@0.5 of ``predictor`` (threshold 0) on the canonical ``table`` (images under ``root``)."""
    from detection.data.table import images
    from detection.engine.evaluate import coco_metrics

    start = time.perf_counter()
    names = list(images(table)["image"])
    dets = [predictor.predict(read_image_rgb(Path(root) / n), threshold=0.0) for n in names]
    m = coco_metrics(table, predictor.class_names, [{"boxes": d.boxes, "scores": d.scores, "labels": d.labels} for d in dets])
    return {"map": round(m["map"], 4), "map50": round(m["map50"], 4), "images": len(names), "seconds": round(time.perf_counter() - start, 2)}


def quantize_export(
    fp32: Path,
    check_images: list[Path],
    *,
    out: Path | None = None,
    valid: Path | None = None,
    images_root: Path | None = None,
    map_tol: float = 0.01,
    min_matched: float = 0.9,
    threshold: float = 0.5,
    per_channel: bool = True,
    reduce_range: bool = False,
    report: Path | None = None,
) -> dict[str, Any]:
    """Quantize ``fp32`` to ``out`` (default ``<stem>.int8.onnx``) and check it against ``fp32`` on
    ``check_images`` and, with ``valid`` (a split table) and ``images_root``, by mAP on that split.

    Returns the ``int8`` section; with ``report``, it is added to that JSON file (the fp32 export's
    report, read if it exists). Raises ``DetectionError`` when the check fails (``out`` not written)."""
    fp32 = Path(fp32)
    out = int8_path(fp32) if out is None else Path(out)
    if out.suffix.lower() != ".onnx" or out.resolve() == fp32.resolve():
        raise DetectionError(f"int8 target {out} must be another .onnx file than {fp32}", hint="e.g. models/model.int8.onnx")
    if not check_images and valid is None:
        raise DetectionError("the int8 check needs real images: check images or a labelled split", hint="pass the valid split's images")
    images = {Path(p): read_image_rgb(Path(p)) for p in check_images}
    table = None
    if valid is not None:
        from detection.data.table import read_table
        from detection.engine.data import check_images_exist

        table = read_table(valid)
        check_images_exist(table, Path(images_root or "."), str(valid))
    with atomic_path(out) as tmp:
        start = time.perf_counter()
        quantize_int8(fp32, tmp, per_channel=per_channel, reduce_range=reduce_range)
        ref, new = load_predictor(fp32), load_predictor(tmp)
        section: dict[str, Any] = {"onnx": str(out), "fp32": str(fp32), **(quantization(tmp) or {}), "file_size_bytes": tmp.stat().st_size,
                                   "fp32_file_size_bytes": fp32.stat().st_size, "map_tol": map_tol, "min_matched": min_matched}  # fmt: skip
        section["agreement"] = agreement(ref, new, images, threshold)
        problems = []
        fraction = section["agreement"]["matched_fraction"]
        if fraction is None:
            log.warning("int8 check: no detection with score >= %s on %d check images: agreement not judged", threshold, len(images))
        elif fraction < min_matched:
            problems.append(f"only {section['agreement']['matched_fraction']:.1%} of the detections with score >= {threshold} agree on {len(images)} check images (min {min_matched:.0%})")
        if table is not None:
            a, b = split_map(ref, table, Path(images_root or ".")), split_map(new, table, Path(images_root or "."))
            section["valid"] = {"split": str(valid), "images": a["images"], "fp32": {k: a[k] for k in ("map", "map50")}, "int8": {k: b[k] for k in ("map", "map50")},
                                "map50_drop": round(a["map50"] - b["map50"], 4), "map_drop": round(a["map"] - b["map"], 4)}  # fmt: skip
            if a["map50"] - b["map50"] > map_tol:
                problems.append(f"mAP@0.5 on {valid} drops from {a['map50']:.4f} (fp32) to {b['map50']:.4f} (int8), more than map_tol {map_tol}")
        section["ok"] = not problems
        section["seconds"] = round(time.perf_counter() - start, 2)
        if report is not None:
            add_to_json(report, "int8", section)
        if problems:
            raise DetectionError(f"int8 accuracy check failed for {fp32}: {'; '.join(problems)}", hint=f"{out} was not written; keep the fp32 model (export.quantize: none)")
    log.info("int8 check: %s of the detections agree; %s", f"{fraction:.1%}" if fraction is not None else "none",
             f"mAP@0.5 {section['valid']['fp32']['map50']:.4f} -> {section['valid']['int8']['map50']:.4f}" if table is not None else "no labelled split")  # fmt: skip
    return section
