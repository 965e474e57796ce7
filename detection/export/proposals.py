"""Fewer RPN proposals in an exported two-stage detector, judged by accuracy on the valid split.

A Faster R-CNN runs its box head (RoI pooling and two 1024-wide fully connected layers) once per
RPN proposal, and on a small backbone at 320 px that head is most of the time on the CPU (an
onnxruntime profile of ``fasterrcnn_mobilenet_v3_large_320_fpn``: Gemm 41%, RoiAlign 26%, Conv
15%). ``detection export --proposals N`` traces the graph with N proposals per image instead of the
model's own count (``detection.engine.tuning.set_inference_proposals``); parity then compares the
graph with torch at the same N, so it stays exact.

Fewer proposals can miss objects, so the count is a speed/accuracy trade, checked here before the
export: COCO mAP and mAP@0.5 on the labelled split with the model's own count and with N (torch,
the same code as the graph); the export fails if mAP@0.5 drops by more than ``map_tol``.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any

from detection.engine.tuning import set_inference_proposals
from detection.errors import DetectionError
from detection.export.quantize import split_map
from detection.inference.predictor import torch_predictor
from detection.io import add_to_json

log = logging.getLogger(__name__)


def check_proposals(weights: Path, proposals: int, valid: Path, images_root: Path, map_tol: float = 0.01, report: Path | None = None) -> dict[str, Any]:
    """mAP / mAP@0.5 of checkpoint ``weights`` on the split table ``valid`` (images under
    ``images_root``) with its own proposal count and with ``proposals``.

    Returns the section (the export report's ``proposals_check``). Raises ``DetectionError`` when
    mAP@0.5 drops by more than ``map_tol``, after adding the section to the JSON ``report`` if given."""
    from detection.data.table import read_table
    from detection.engine.checkpoint import load_model
    from detection.engine.data import check_images_exist

    table = read_table(valid)
    check_images_exist(table, Path(images_root), str(valid))
    start = time.perf_counter()
    model, meta = load_model(weights, "cpu")  # read once; the reduced model is a copy
    reduced = copy.deepcopy(model)
    own = set_inference_proposals(reduced, proposals)  # a one-stage model fails here, before any pass
    a = split_map(torch_predictor(model, meta, weights), table, Path(images_root))
    b = a if proposals == own else split_map(torch_predictor(reduced, meta, weights), table, Path(images_root))
    section = {
        "split": str(valid), "images": a["images"], "map_tol": map_tol,
        "model_proposals": own, "proposals": proposals,
        "model": {k: a[k] for k in ("map", "map50")}, "reduced": {k: b[k] for k in ("map", "map50")},
        "map50_drop": round(a["map50"] - b["map50"], 4), "map_drop": round(a["map"] - b["map"], 4),
        "ok": a["map50"] - b["map50"] <= map_tol, "seconds": round(time.perf_counter() - start, 2),
    }  # fmt: skip
    if report is not None and not section["ok"]:
        add_to_json(report, "proposals_check", section)
    log.info("%d proposals instead of %d: mAP@0.5 %.4f -> %.4f on %s", proposals, own, a["map50"], b["map50"], valid)
    if not section["ok"]:
        raise DetectionError(
            f"{proposals} RPN proposals per image (the model's own: {own}) drop mAP@0.5 on {valid} from {a['map50']:.4f} to {b['map50']:.4f}, more than map_tol {map_tol}",
            hint="nothing was exported; keep more proposals (export.proposals), or null for the model's own",
        )
    return section
