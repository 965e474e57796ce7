"""The convert and validate stages: read any supported format into the canonical table, write every output.

N formats need N readers and N writers (``READERS``, ``WRITERS``), never N x N converters. Readers
take ``(src, class_names, on_error)`` and return ``(table, report)``; writers take
``(table, out_dir, class_names)`` and return the path they wrote. Image paths in every output are
relative to the source folder (``report["image_root"]``), which is where later stages find the images.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from detection.data.coco import read_coco, write_coco
from detection.data.gtsdb import GTSDB_CLASSES, read_gtsdb, write_gtsdb
from detection.data.problems import Problems
from detection.data.table import BOX_COLUMNS, has_box, normalize, read_table, summary, write_table
from detection.data.voc import read_voc, write_voc
from detection.errors import DetectionError
from detection.io import write_json

log = logging.getLogger(__name__)

Reader = Callable[[Path, Sequence[str] | None, str], tuple[pd.DataFrame, dict[str, object]]]
Writer = Callable[[pd.DataFrame, Path, Sequence[str]], Path]


def read_csv(
    path: Path, class_names: Sequence[str] | None = None, on_error: str = "raise"
) -> tuple[pd.DataFrame, dict[str, object]]:
    """Read a canonical CSV (``write_table``'s; a folder means its ``annotations.csv``) and check every row.

    Coordinates are the table's own (0-based continuous corners). A row must hold a whole box and label,
    or none (an image without a box); boxes must have a positive area and lie in their image. An image
    whose every box was skipped stays as an image without a box.
    """
    problems = Problems(on_error)
    path = Path(path)
    path = path / "annotations.csv" if path.is_dir() else path
    df = read_table(path)
    known = None if class_names is None else set(class_names)
    keep: list[dict[str, object]] = []
    for i, row in enumerate(df.to_dict("records")):
        where = f"{path}:{i + 2}"
        if row["width"] <= 0 or row["height"] <= 0:
            problems.add(where, f"image size must be positive, got {row['width']}x{row['height']}")
            continue
        missing = [c for c in BOX_COLUMNS if math.isnan(row[c])] + (["label"] if not row["label"] else [])
        if len(missing) == len(BOX_COLUMNS) + 1:
            keep.append(row)
            continue
        if missing:
            problems.add(where, f"incomplete box: empty {missing} (a row holds a whole box and label, or none of them)")
            continue
        shown = ", ".join(f"{c}={row[c]:g}" for c in BOX_COLUMNS)
        box = problems.box(where, tuple(row[c] for c in BOX_COLUMNS), row["width"], row["height"], shown)  # type: ignore[arg-type]
        if box is not None and problems.label(where, row["label"], known):
            keep.append(row | dict(zip(BOX_COLUMNS, box, strict=True)))
    kept = pd.DataFrame(keep, columns=df.columns)
    lost = df[~df["image"].isin(kept["image"]) & (df["width"] > 0) & (df["height"] > 0)].drop_duplicates("image")
    lost = lost.assign(**{c: math.nan for c in BOX_COLUMNS}, label="", difficult=0, iscrowd=0)
    out = normalize(pd.concat([kept, lost]) if len(lost) else kept)
    problems.log_summary(path)
    return out, {"format": "csv", "source": str(path), "annotations": str(path), **summary(out), **problems.report()}


READERS: dict[str, Reader] = {"gtsdb": read_gtsdb, "voc": read_voc, "coco": read_coco, "csv": read_csv}
WRITERS: dict[str, Writer] = {
    "csv": lambda df, out, names: write_table(df, out / "annotations.csv"),
    "voc": lambda df, out, names: write_voc(df, out / "voc"),
    "coco": lambda df, out, names: write_coco(df, out / "coco.json", names),
    "gtsdb": lambda df, out, names: write_gtsdb(df, out / "gtsdb"),
}
SHOWN = 20  # problems logged one by one by validate
OUTPUTS = ("csv", "voc", "coco")  # what the convert stage writes: annotations.csv, voc/Annotations/, coco.json


def _reader(fmt: str) -> Reader:
    if fmt not in READERS:
        raise DetectionError(f"unknown annotation format {fmt!r}", hint=f"use one of {sorted(READERS)}")
    return READERS[fmt]


def default_class_names(fmt: str, df: pd.DataFrame) -> list[str]:
    """Class names when the dataset config gives none: GTSDB's 43 official ones, else the labels found, sorted."""
    if fmt == "gtsdb":
        return list(GTSDB_CLASSES)
    return sorted(set(df.loc[has_box(df), "label"]))


def convert(
    src: Path,
    out: Path,
    fmt: str,
    class_names: Sequence[str] | None = None,
    on_error: str = "raise",
    *,
    to: Sequence[str] = OUTPUTS,
) -> dict[str, object]:
    """Read ``src`` in format ``fmt``; write ``out/annotations.csv``, ``out/voc/Annotations/*.xml``,
    ``out/coco.json`` (plus any other format of ``to``) and, last, ``out/report.json``; return the report.

    Nothing is written if reading fails; each output is written atomically. ``class_names`` (the
    dataset config's ``names``) fixes the COCO category ids; boxes of other classes are problems.
    """
    src, out = Path(src), Path(out)
    unknown = sorted(set(to) - set(WRITERS))
    if unknown:
        raise DetectionError(f"unknown output format(s) {unknown}", hint=f"use some of {sorted(WRITERS)}")
    df, report = _reader(fmt)(src, class_names, on_error)
    if not has_box(df).any():
        raise DetectionError(f"{src}: no box was read as {fmt} ({report['skipped']} skipped)",
                             hint="check the source folder and its format (--from / convert.format)")  # fmt: skip
    names = list(class_names) if class_names is not None else default_class_names(fmt, df)
    outputs = {f: str(WRITERS[f](df, out, names)) for f in dict.fromkeys(["csv", *to])}
    report = {**report, "image_root": str(src if src.is_dir() else src.parent), "on_error": on_error,
              "class_names": names, "outputs": outputs}  # fmt: skip
    write_json(out / "report.json", report)
    log.info("convert %s (%s): %d images, %d boxes, %d empty, %d skipped -> %s",
             src, fmt, report["images"], report["boxes"], report["empty_images"], report["skipped"], out)  # fmt: skip
    return report


def validate(
    src: Path, fmt: str, class_names: Sequence[str] | None = None, report_dir: Path | None = None
) -> dict[str, object]:
    """Read ``src`` with ``on_error="skip"`` and report every problem (``report["ok"]``: none and some box).

    Writes ``report_dir/report.json`` when ``report_dir`` is given. Raises only when the source cannot
    be read at all (missing folder, no annotation file, malformed JSON/CSV).
    """
    df, report = _reader(fmt)(Path(src), class_names, "skip")
    report = {**report, "ok": report["skipped"] == 0 and bool(report["boxes"])}
    problems: list[dict[str, str]] = report["problems"]  # type: ignore[assignment]
    for item in problems[:SHOWN]:
        log.warning("%s: %s", item["where"], item["problem"])
    if len(problems) > SHOWN:
        log.warning("... and %d more problem(s)%s", len(problems) - SHOWN, "" if report_dir is None else f", all in {report_dir}/report.json")
    if report_dir is not None:
        write_json(Path(report_dir) / "report.json", report)
    log.info("validate %s (%s): %d images, %d boxes, %d problem(s)", src, fmt, report["images"], report["boxes"], report["skipped"])
    return report
