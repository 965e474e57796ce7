"""The pipeline's stages, in order, and how each one is called from ``params.yaml``.

This is the one place that maps a stage name to its library function and its params section.
The CLI verbs, ``dvc.yaml`` (which runs the CLI verbs) and the Prefect flow (which runs
``dvc repro`` per stage) all follow ``STAGES``; a test keeps them in step.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from detection.config import Params, load_dataset_config

log = logging.getLogger(__name__)

# (stage name in dvc.yaml and Prefect, CLI verb)
STAGES: tuple[tuple[str, str], ...] = (
    ("fetch", "fetch"),
    ("convert", "convert"),
    ("split", "split"),
    ("train", "train"),
    ("evaluate", "evaluate"),
    ("export", "export"),
    ("infer-video", "video"),
)
STAGE_NAMES: tuple[str, ...] = tuple(name for name, _ in STAGES)


def fetch(p: Params) -> Any:
    from detection.data.fetch import fetch as run

    return run(p.fetch.source, p.fetch.dest, sha256=p.fetch.sha256, sample=p.fetch.sample)


def convert(p: Params, config: bool = True, write_config: Path | None = None) -> Any:
    """``config=False``: no dataset config (class names from the source, format ``auto`` unless given)."""
    from detection.data.convert import convert as run

    data, c = (load_dataset_config(p.data) if config else None), p.convert
    src = data.root if c.src is None and data is not None else c.src
    fmt = c.format or (data.format if data is not None else "auto")
    options = {"columns": c.columns or None, "annotations_dir": c.annotations_dir, "images_dir": c.images_dir}
    return run(src, c.out, fmt, data.names if data is not None else None, c.on_error, to=c.to, images=c.images,
               policy=c.policy, options=options, plots=c.plots, write_config=write_config, split_out=p.split.out,
               images_root=data.root if data is not None else None)  # fmt: skip


def split(p: Params) -> Any:
    from detection.data.split import split as run

    s = p.split
    return run(s.annotations, s.out, valid=s.valid, seed=s.seed, mode=s.mode, train_list=s.train_list, valid_list=s.valid_list, group=s.group)


def train(p: Params, resume: bool = False) -> Any:
    from detection.engine.train import train as run

    return run(load_dataset_config(p.data), p.model, p.train, resume=resume)


def evaluate(p: Params) -> Any:
    from detection.engine.evaluate import evaluate as run

    e = p.evaluate
    return run(e.weights, load_dataset_config(p.data), e.out, e.metrics, score_threshold=e.score_threshold, samples=e.samples, device=e.device)


def export(p: Params) -> Any:
    from detection.data.table import images, read_table
    from detection.engine.checkpoint import load_checkpoint
    from detection.export.onnx import export_onnx
    from detection.io import add_to_json

    load_checkpoint(p.export.weights)  # a missing or corrupt checkpoint is named before the data is read
    data = load_dataset_config(p.data)
    names = images(read_table(data.valid))["image"].head(p.export.check_images)
    checked = None
    if p.export.proposals is not None:  # fewer RPN proposals: judged by mAP on valid before anything is exported
        from detection.export.proposals import check_proposals

        checked = check_proposals(p.export.weights, p.export.proposals, data.valid, data.root, p.export.proposals_map_tol, report=p.export.report)
    result = export_onnx(
        p.export.weights, p.export.out, [data.root / n for n in names], opset=p.export.opset, box_atol=p.export.box_atol,
        score_atol=p.export.score_atol, report=p.export.report, torchscript=p.export.torchscript, proposals=p.export.proposals,
    )
    if checked is not None:
        result["proposals_check"] = checked
        add_to_json(p.export.report, "proposals_check", checked)
    if p.export.quantize == "int8":  # <stem>.int8.onnx, checked against the fp32 graph on the check images and by mAP on valid
        from detection.export.quantize import quantize_export

        result["int8"] = quantize_export(
            p.export.out, [data.root / n for n in names], valid=data.valid, images_root=data.root,
            map_tol=p.export.int8_map_tol, min_matched=p.export.int8_min_matched, report=p.export.report,
        )
    return result


def infer_video(p: Params) -> Any:
    from detection.inference.video import infer_video as run

    v = p.video
    source = Path(p.fetch.dest) / "sample.mp4" if v.source == "sample" else Path(v.source)
    return run(
        source, v.weights, v.out, threshold=v.threshold, max_frames=v.max_frames,
        stride=v.stride, track=v.track, classes=v.classes, model=v.model, imgsz=v.imgsz, proposals=v.proposals,
    )  # fmt: skip


RUNNERS: dict[str, Callable[[Params], Any]] = {
    "fetch": fetch,
    "convert": convert,
    "split": split,
    "train": train,
    "evaluate": evaluate,
    "export": export,
    "infer-video": infer_video,
}


def metrics_files(p: Params) -> dict[str, Path]:
    """Stage name -> the metrics file it writes (declared as ``metrics`` in ``dvc.yaml``), from params."""
    return {
        "train": p.train.reports / "summary.json",
        "evaluate": p.evaluate.metrics,
        "export": p.export.report,
        "infer-video": p.video.out / "metrics.json",
    }


def run_stage(name: str, params: Params, **kwargs: Any) -> Any:
    """Run stage ``name`` with ``params``, logging its wall time."""
    started = time.perf_counter()
    log.info("stage %s: start", name)
    result = RUNNERS[name](params, **kwargs)
    log.info("stage %s: done in %.1f s", name, time.perf_counter() - started)
    return result
