"""The sweep's table and Pareto plot (no Prefect, no DVC: plain functions over the experiments' files).

One row per model: mAP and mAP@0.5 (``reports/metrics.json``), parameters and GFLOPs (computed here
with ``detection.models.catalog.model_size`` (as `detection models`): the sum of ``numel`` over the parameters and ``torch.utils.flop_counter.FlopCounterMode``
over one forward pass in eval mode on one ``imgsz`` x ``imgsz`` image; a multiply-add counts as 2
FLOPs), train images/s (``reports/train/summary.json``) and CPU FPS (``reports/video/metrics.json``,
``fps_model``: frames per second spent in the predictor, pre/post-processing included).
"""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path
from typing import Any

from detection.io import atomic_path

log = logging.getLogger(__name__)

COLUMNS: tuple[tuple[str, str], ...] = (
    ("model", "model"),
    ("map", "mAP"),
    ("map50", "mAP@0.5"),
    ("params_m", "params (M)"),
    ("gflops", "GFLOPs"),
    ("train_images_per_s", "train images/s"),
    ("cpu_fps", "CPU FPS"),
    ("pareto", "Pareto"),
    ("experiment", "experiment"),
    ("seconds", "run (s)"),
)
# keys a train summary may use for its throughput (the engine's own figure wins over our estimate)
_THROUGHPUT_KEYS = ("train_images_per_s", "images_per_s", "images_per_second", "train_images_per_second")


def model_stats(name: str, num_classes: int, imgsz: int) -> dict[str, float]:
    """Parameters (millions) and GFLOPs of one forward pass on one ``imgsz`` x ``imgsz`` image."""
    import torch

    from detection.models import build_model
    from detection.models.catalog import model_size

    model = build_model(name, num_classes=num_classes, weights="none", imgsz=imgsz)
    params, flops = model_size(model, torch.rand(3, imgsz, imgsz))
    return {"params_m": round(params / 1e6, 3), "gflops": round(flops / 1e9, 3)}


def _read(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("cannot read %s (%s)", path, exc)
        return {}
    return value if isinstance(value, dict) else {}


def train_throughput(summary: dict[str, Any], train_images: int) -> float | None:
    """Train images/s: the summary's own figure, else epochs x train images / train_seconds (per-epoch
    validation included, so a lower bound)."""
    for key in _THROUGHPUT_KEYS:
        if isinstance(summary.get(key), (int, float)):
            return round(float(summary[key]), 2)
    seconds, epochs = summary.get("train_seconds"), summary.get("epochs")
    if isinstance(seconds, (int, float)) and seconds > 0 and isinstance(epochs, int):
        return round(epochs * train_images / seconds, 2)
    return None


def experiment_row(workspace: Path, metrics_files: dict[str, Path], train_images: int) -> dict[str, Any]:
    """The measured columns of one experiment, from its stage metrics files (paths relative to it)."""
    evaluate = _read(workspace / metrics_files["evaluate"])
    summary = _read(workspace / metrics_files["train"])
    video = _read(workspace / metrics_files["infer-video"]) if "infer-video" in metrics_files else {}
    return {
        "map": evaluate.get("map"),
        "map50": evaluate.get("map50"),
        "train_images_per_s": train_throughput(summary, train_images),
        "cpu_fps": video.get("fps_model"),
    }


def pareto_front(rows: list[dict[str, Any]], x: str = "cpu_fps", y: str = "map") -> list[bool]:
    """For each row: True when no other row is at least as good on both ``x`` and ``y`` and better on one."""
    def dominated(a: dict[str, Any]) -> bool:
        return any(
            b is not a and b[x] >= a[x] and b[y] >= a[y] and (b[x] > a[x] or b[y] > a[y])
            for b in rows if b.get(x) is not None and b.get(y) is not None
        )  # fmt: skip

    return [r.get(x) is not None and r.get(y) is not None and not dominated(r) for r in rows]


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_table(rows: list[dict[str, Any]], out: Path) -> tuple[Path, Path]:
    """``out/table.md`` and ``out/table.csv``, one row per model, sorted by mAP (best first)."""
    out.mkdir(parents=True, exist_ok=True)
    rows = sorted(rows, key=lambda r: -(r.get("map") or -1.0))
    md = ["| " + " | ".join(title for _, title in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    md += ["| " + " | ".join(_fmt(r.get(key)) for key, _ in COLUMNS) + " |" for r in rows]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[key for key, _ in COLUMNS], extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    paths = (out / "table.md", out / "table.csv")
    for path, text in zip(paths, ("\n".join(md) + "\n", buf.getvalue()), strict=True):
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    return paths


def plot_pareto(rows: list[dict[str, Any]], path: Path) -> Path:
    """mAP against CPU FPS, one labelled point per model, the Pareto front joined and marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [r for r in rows if r.get("cpu_fps") is not None and r.get("map") is not None]
    front = sorted((r for r, on in zip(points, pareto_front(points), strict=True) if on), key=lambda r: r["cpu_fps"])
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    ax.scatter([r["cpu_fps"] for r in points], [r["map"] for r in points], color="tab:blue", label="model", zorder=2)
    ax.plot([r["cpu_fps"] for r in front], [r["map"] for r in front], "o--", color="tab:red", mfc="none", ms=12, label="Pareto front", zorder=3)
    for r in points:
        ax.annotate(r["model"], (r["cpu_fps"], r["map"]), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xlabel("CPU FPS (fps_model, video stage)")
    ax.set_ylabel("mAP@[.5:.95] (valid split)")
    ax.set_title("sweep: accuracy vs speed")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
