"""Dataset checks beyond one format's syntax, and the validation report (JSON + Markdown + plots).

``check_dataset`` looks at the table and the image files together: every image must exist and
decode in full (``images.image_problem``: missing, empty, truncated, not an image) at the size the
annotation says; image files that no annotation names, image files with the same bytes and
duplicate boxes are listed. Each finding is a problem of its kind (``problems.KINDS``) under the
read's policy: ``error`` raises, ``drop`` removes the image (or box) and counts it, ``warn`` keeps it.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image

from detection.data.images import (
    IMAGE_SUFFIXES,
    display_path,
    image_problem,
    truncation,
)
from detection.data.problems import KINDS, Problems
from detection.data.table import BOX_COLUMNS, has_box, images
from detection.io import write_json, write_text

log = logging.getLogger(__name__)

# COCO's object-size buckets (area in pixels).
SMALL, LARGE = 32**2, 96**2


def check_dataset(
    df: pd.DataFrame, image_root: Path, problems: Problems, *, unlisted: bool = True, reported: Sequence[str] = ()
) -> pd.DataFrame:
    """Check ``df``'s images under ``image_root`` and its boxes; return ``df`` less what the policy drops.

    ``reported``: the ``where`` of problems the reader found already (an image whose file or
    annotation was refused there is not listed again as an image without annotation).
    """
    root = Path(image_root)
    drop: set[str] = set()
    digests: dict[str, str] = {}
    rows = list(images(df).itertuples(index=False))
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:  # cv2 decodes without the GIL
        looks = list(pool.map(lambda row: _look(root / row.image), rows))
    for row, (size, why, digest) in zip(rows, looks, strict=True):
        path = root / row.image
        if why is not None:
            kind = "image_missing" if not path.is_file() else "image_unreadable"
            where = display_path(path)
            problems.add(where, f"cannot read image: {why}", hint="re-fetch the data set, or delete the image and its annotation", kind=kind)
            drop.add(row.image) if problems.action(kind) == "drop" else None
            continue
        w, h = size
        if (w, h) != (row.width, row.height):
            problems.add(display_path(path), f"image is {w}x{h} but the annotation says {row.width}x{row.height}",
                         hint="fix the annotation's image size (or the image: a rotated photo?)", kind="size_mismatch")  # fmt: skip
            drop.add(row.image) if problems.action("size_mismatch") == "drop" else None
            continue
        if digest in digests:
            problems.add(display_path(path), f"same bytes as {digests[digest]} (a duplicate image)",
                         hint="delete one of the two, or they leak between train and valid", kind="duplicate_image")  # fmt: skip
            drop.add(row.image) if problems.action("duplicate_image") == "drop" else None
        else:
            digests[digest] = row.image
    if unlisted:
        _unlisted_images(df, root, problems, {Path(w.split(":")[0]).stem for w in reported})
    out = df[~df["image"].isin(drop)]
    return _duplicate_boxes(out, problems)


def _look(path: Path) -> tuple[tuple[int, int], str | None, str]:
    """``((width, height), problem, sha1)`` of an image file.

    Good files pass a fast full read (no truncation, an 1/8-scale decode of every JPEG block, the
    size from the header); a file that fails it gets ``images.image_problem``'s reason.
    """
    try:
        data = path.read_bytes()
        if data and truncation(data) is None and cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8) is not None:
            with Image.open(io.BytesIO(data)) as img:
                return (int(img.size[0]), int(img.size[1])), None, hashlib.sha1(data).hexdigest()
    except (OSError, ValueError, SyntaxError):
        pass
    return (0, 0), image_problem(path) or "the file is corrupt or not an image", ""


def _unlisted_images(df: pd.DataFrame, root: Path, problems: Problems, refused: set[str]) -> None:
    """Image files in the folders of the table's images that no annotation names."""
    listed = set(images(df)["image"])
    folders = {Path(name).parent for name in listed}
    for folder in sorted(folders):
        if not (root / folder).is_dir():
            continue
        for path in sorted((root / folder).iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES and (folder / path.name).as_posix() not in listed and path.stem not in refused:
                problems.add(display_path(path), "image without annotation (no annotation names it)",
                             hint="annotate it, or delete it if it has no objects", kind="image_without_annotation")  # fmt: skip


def _duplicate_boxes(df: pd.DataFrame, problems: Problems) -> pd.DataFrame:
    boxed = df[has_box(df)]
    key = boxed[["image", "label", *BOX_COLUMNS]].round(2)
    dup = key.duplicated(keep="first")
    for idx in boxed.index[dup.to_numpy()]:
        row = df.loc[idx]
        coords = ", ".join(f"{c}={row[c]:g}" for c in BOX_COLUMNS)
        problems.add(f"{row['image']}: box {coords}", f"duplicate box of {row['label']!r} (same class and corners twice)",
                     hint="remove one of them", kind="duplicate_box")  # fmt: skip
    if problems.action("duplicate_box") == "drop" and dup.any():
        return df.drop(index=boxed.index[dup.to_numpy()])
    return df


def statistics(df: pd.DataFrame) -> dict[str, object]:
    """Images, boxes, boxes per class, images without boxes, COCO small/medium/large counts."""
    boxed = df[has_box(df)]
    area = (boxed["xmax"] - boxed["xmin"]) * (boxed["ymax"] - boxed["ymin"])
    return {
        "images": int(df["image"].nunique()),
        "boxes": int(len(boxed)),
        "empty_images": int(df["image"].nunique() - boxed["image"].nunique()),
        "per_class": {str(k): int(v) for k, v in boxed["label"].value_counts().sort_index().items()},
        "box_sizes": {"small": int((area < SMALL).sum()), "medium": int(((area >= SMALL) & (area < LARGE)).sum()), "large": int((area >= LARGE).sum())},
        "difficult": int(boxed["difficult"].sum()),
        "iscrowd": int(boxed["iscrowd"].sum()),
        "with_keypoints": int((boxed["keypoints"] != "").sum()),
    }


def write_report(report: dict[str, object], df: pd.DataFrame, image_root: Path | None, out_dir: Path, plots: bool = True) -> dict[str, object]:
    """Write ``out_dir/report.md``, (``plots``) the PNG plots and, last, ``report.json``; return the report as written."""
    out_dir = Path(out_dir)
    written: dict[str, str] = {}
    if plots and len(df):
        from detection.viz.dataset import dataset_plots

        written = dataset_plots(df, image_root, out_dir)
    report = {**report, "plots": written}
    write_text(out_dir / "report.md", markdown(report))
    write_json(out_dir / "report.json", report)
    return report


def markdown(report: dict[str, object]) -> str:
    """The report as Markdown: counts, classes, sizes, problems by kind and each problem with its place."""
    lines = [f"# Validation report: {report.get('source', '')}", ""]
    lines += [f"- format: `{report.get('format')}`", f"- images: {report.get('images')}", f"- boxes: {report.get('boxes')}",
              f"- images without boxes: {report.get('empty_images')}", f"- image root: `{report.get('image_root')}`"]  # fmt: skip
    sizes = report.get("box_sizes") or {}
    if sizes:
        lines.append(f"- box sizes (COCO): small {sizes['small']}, medium {sizes['medium']}, large {sizes['large']}")  # type: ignore[index]
    lines += ["", "## Boxes per class", "", "| class | boxes |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in (report.get("per_class") or {}).items()]  # type: ignore[union-attr]
    counts: dict[str, int] = report.get("problem_counts") or {}  # type: ignore[assignment]
    lines += ["", f"## Problems: {sum(counts.values())} ({report.get('skipped', 0)} dropped, {report.get('warnings', 0)} kept)", ""]
    if counts:
        lines += ["| kind | count | what |", "|---|---|---|"] + [f"| {k} | {v} | {KINDS.get(k, '')} |" for k, v in sorted(counts.items())]
        lines += ["", "| where | problem | action |", "|---|---|---|"]
        for item in report.get("problems") or []:  # type: ignore[union-attr]
            lines.append(f"| `{item['where']}` | {item['problem'].replace('|', '/')} | {item.get('action', '')} |")
    else:
        lines.append("none")
    plots: dict[str, str] = report.get("plots") or {}  # type: ignore[assignment]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{name}]({Path(path).name})" for name, path in plots.items()]
    return "\n".join(lines) + "\n"
