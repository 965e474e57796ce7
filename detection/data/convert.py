"""The convert and validate stages: read any supported format into the canonical table, write every output.

N formats need N readers and N writers (``READERS``, ``WRITERS``), never N x N converters. Readers
take ``(src, class_names, on_error, **options)`` and return ``(table, report)``, the report naming
``image_root`` (where the table's image paths resolve). Writers take ``(table, out_dir, class_names,
image_root, images)`` and write a complete data set (its images linked or copied beside it, or COCO
``file_name``s that resolve), so every written format reads back.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from detection.data.formats.coco import read_coco, write_coco
from detection.data.formats.csv import read_csv, write_csv
from detection.data.formats.detect import FORMATS, detect_format
from detection.data.formats.gtsdb import GTSDB_CLASSES, read_gtsdb, write_gtsdb
from detection.data.formats.kpjson import read_kpjson, write_kpjson
from detection.data.formats.voc import read_voc, write_voc
from detection.data.formats.yolo import read_yolo, write_yolo
from detection.data.keypoints import COCO_KEYPOINTS, default_keypoint_names, table_count
from detection.data.problems import Problems
from detection.data.table import has_box, normalize
from detection.data.validate import check_dataset, statistics, write_report
from detection.errors import DetectionError
from detection.io import write_text

__all__ = ["READERS", "WRITERS", "convert", "read", "read_csv", "validate"]

log = logging.getLogger(__name__)

Reader = Callable[..., tuple[pd.DataFrame, dict[str, object]]]
Writer = Callable[[pd.DataFrame, Path, Sequence[str], Path | None, str], Path]

READERS: dict[str, Reader] = {"gtsdb": read_gtsdb, "voc": read_voc, "coco": read_coco, "csv": read_csv, "yolo": read_yolo, "kpjson": read_kpjson}
WRITERS: dict[str, Writer] = {
    "csv": lambda df, out, names, root, images: write_csv(df, out),
    "voc": lambda df, out, names, root, images: write_voc(df, out / "voc", root, images),
    "coco": lambda df, out, names, root, images: write_coco(df, out / "coco.json", names, root),
    "gtsdb": lambda df, out, names, root, images: write_gtsdb(df, out / "gtsdb"),
    "yolo": lambda df, out, names, root, images: write_yolo(df, out / "yolo", names, root, images),
    "kpjson": lambda df, out, names, root, images: write_kpjson(df, out / "kpjson", root, images),
}
assert set(READERS) == set(FORMATS)
SHOWN = 20  # problems logged one by one by validate
OUTPUTS = ("csv", "voc", "coco")  # what the convert stage writes by default: annotations.csv, voc/, coco.json


def read(
    src: Path, fmt: str, class_names: Sequence[str] | None = None, on_error: str = "raise",
    policy: Mapping[str, str] | None = None, options: Mapping[str, Any] | None = None, check: bool = True,
) -> tuple[pd.DataFrame, dict[str, object]]:  # fmt: skip
    """Read ``src`` as ``fmt`` (``auto``: detected), then check its images and boxes (``validate.check_dataset``).

    ``options`` are the reader's own keyword options (``columns`` for csv, ``annotations_dir`` /
    ``images_dir`` for voc, ``images_dir`` for coco); those a reader does not take are ignored.
    """
    src = Path(src)
    fmt = detect_format(src) if fmt == "auto" else fmt
    if fmt not in READERS:
        raise DetectionError(f"unknown annotation format {fmt!r}", hint=f"use one of {', '.join(FORMATS)} or auto")
    reader = READERS[fmt]
    accepted = inspect.signature(reader).parameters
    kwargs = {k: v for k, v in (options or {}).items() if k in accepted and v is not None}
    if "policy" in accepted:
        kwargs["policy"] = policy
    if "check_size" in accepted and check:
        kwargs["check_size"] = False  # check_dataset decodes each image and compares its size
    df, report = reader(src, class_names, on_error, **kwargs)
    report = {**report, "format": fmt}
    if check and len(df):
        problems = Problems(on_error, policy)
        reported = [str(item["where"]) for item in report["problems"]]  # type: ignore[attr-defined]
        df = normalize(check_dataset(df, Path(str(report["image_root"])), problems, reported=reported))
        extra = problems.report()
        report = {
            **report,
            "clipped_boxes": report.get("clipped_boxes", 0),
            "skipped": int(report["skipped"]) + int(extra["skipped"]),  # type: ignore[call-overload]
            "warnings": int(report.get("warnings", 0)) + int(extra["warnings"]),  # type: ignore[call-overload]
            "problem_counts": _add_counts(report.get("problem_counts", {}), extra["problem_counts"]),  # type: ignore[arg-type]
            "problems": [*report["problems"], *extra["problems"]],  # type: ignore[misc]
        }
    return df, {**report, **statistics(df)}


def _add_counts(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    return {k: a.get(k, 0) + b.get(k, 0) for k in sorted(set(a) | set(b))}


def default_class_names(fmt: str, df: pd.DataFrame, report: Mapping[str, object] | None = None) -> list[str]:
    """Class names when the dataset config gives none: the source's own (GTSDB's 43, the YOLO classes, the
    COCO categories in id order), else the labels found, sorted."""
    if fmt == "gtsdb":
        return list(GTSDB_CLASSES)
    found = sorted(set(df.loc[has_box(df), "label"]))
    listed = list((report or {}).get("class_names") or [])  # type: ignore[call-overload]
    return listed + [n for n in found if n not in listed] if listed else found


def convert(
    src: Path,
    out: Path,
    fmt: str,
    class_names: Sequence[str] | None = None,
    on_error: str = "raise",
    *,
    to: Sequence[str] = OUTPUTS,
    images: str = "link",
    policy: Mapping[str, str] | None = None,
    options: Mapping[str, Any] | None = None,
    plots: bool = False,
    write_config: Path | None = None,
    split_out: Path = Path("data/processed"),
    images_root: Path | None = None,
) -> dict[str, object]:
    """Read ``src`` in format ``fmt`` (``auto``: detected); write ``out/annotations.csv``, ``out/voc/``,
    ``out/coco.json`` (plus any other format of ``to``) and, last, ``out/report.json`` and ``report.md``
    (with ``plots``, the validation plots too); return the report.

    Nothing is written if reading fails; each output is written atomically. ``class_names`` (the
    dataset config's ``names``) fixes the label ids; without them the source's own names are used,
    and ``write_config`` writes the dataset config inferred (its tables in ``split_out``, where the
    split stage writes them), so that the next stages run. ``images_root`` (the dataset config's
    ``root``) makes the image paths of every output relative to it, where training looks for them.
    """
    src, out = Path(src), Path(out)
    unknown = sorted(set(to) - set(WRITERS))
    if unknown:
        raise DetectionError(f"unknown output format(s) {unknown}", hint=f"use some of {', '.join(WRITERS)}")
    df, report = read(src, fmt, class_names, on_error, policy, options)
    fmt = str(report["format"])
    if not has_box(df).any():
        raise DetectionError(f"{src}: no box was read as {fmt} ({report['skipped']} skipped)",
                             hint="check the source folder and its format (--from / convert.format)")  # fmt: skip
    names = list(class_names) if class_names is not None else default_class_names(fmt, df, report)
    root = Path(str(report["image_root"]))
    if images_root is not None and Path(images_root).resolve() != root.resolve():  # the config's root: where train looks
        df = rebase(df, root, Path(images_root))
        report = {**report, "image_root": str(images_root), "rebased_from": str(root)}
        root = Path(images_root)
    outputs = {f: str(WRITERS[f](df, out, names, root, images)) for f in dict.fromkeys(["csv", *to])}
    report = {**report, "on_error": on_error, "policy": dict(policy or {}), "class_names": names, "outputs": outputs}
    if write_config is not None:
        report["config"] = str(dataset_config(write_config, src, fmt, root, names, split_out, table_count(df, str(src))))
    report = write_report(report, df, root, out, plots=plots)
    log.info("convert %s (%s): %d images, %d boxes, %d empty, %d skipped, %d warnings -> %s",
             src, fmt, report["images"], report["boxes"], report["empty_images"], report["skipped"], report.get("warnings", 0), out)  # fmt: skip
    return report


def rebase(df: pd.DataFrame, old: Path, new: Path) -> pd.DataFrame:
    """``df`` with image paths relative to ``new`` instead of ``old`` (POSIX, ``..`` where they lie outside)."""
    base = Path(new).resolve()
    mapping = {n: Path(os.path.relpath((Path(old) / n).resolve(), base)).as_posix() for n in df["image"].unique()}
    return df.assign(image=df["image"].map(mapping))


def dataset_config(path: Path, src: Path, fmt: str, root: Path, names: Sequence[str], tables: Path, keypoints: int | None = None) -> Path:
    """Write the dataset config that ``convert`` inferred (format, images root, class names, the split
    stage's tables in ``tables``; with ``keypoints`` per box, their default names, COCO person's for
    17, and a commented ``keypoint_flip`` to fill in for flip augmentation)."""
    src = Path(src).resolve()
    config = {
        "name": (src.parent.name if src.is_file() else src.name) or "dataset",
        "format": fmt,
        "names": list(names),
        "root": str(root),
        "train": str(Path(tables) / "train.csv"),
        "valid": str(Path(tables) / "valid.csv"),
    }
    tail = ""
    if keypoints:
        names = default_keypoint_names(keypoints)
        config["keypoints"] = list(names)
        if names != COCO_KEYPOINTS:  # COCO person's flip map is known; others need one before a flip augmentation
            tail = "# keypoint_flip: [[kp0, kp1]]  # pairs a mirror swaps (left/right); needed when train.hflip or augment.vflip > 0\n"
    text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    write_text(path, "# written by `detection convert --write-config`\n" + text + tail)
    log.info("wrote the inferred dataset config -> %s", path)
    return Path(path)


def validate(
    src: Path, fmt: str, class_names: Sequence[str] | None = None, report_dir: Path | None = None, *,
    policy: Mapping[str, str] | None = None, options: Mapping[str, Any] | None = None, plots: bool = True,
) -> dict[str, object]:  # fmt: skip
    """Read ``src`` with ``on_error="skip"`` and report every problem (``report["ok"]``: none and some box).

    Writes ``report_dir/report.json``, ``report.md`` and the plots when ``report_dir`` is given. Raises
    only when the source cannot be read at all (missing folder, no annotation file, malformed JSON/CSV).
    """
    df, report = read(Path(src), fmt, class_names, "skip", policy, options)
    report = {**report, "ok": not report["problems"] and bool(report["boxes"])}
    problems: list[dict[str, str]] = report["problems"]  # type: ignore[assignment]
    for item in problems[:SHOWN]:
        log.warning("%s: %s", item["where"], item["problem"])
    if len(problems) > SHOWN:
        log.warning("... and %d more problem(s)%s", len(problems) - SHOWN, "" if report_dir is None else f", all in {report_dir}/report.md")
    if report_dir is not None:
        report = write_report(report, df, Path(str(report["image_root"])), Path(report_dir), plots=plots)
    log.info("validate %s (%s): %d images, %d boxes, %d problem(s)", src, report["format"], report["images"], report["boxes"], len(problems))
    return report
