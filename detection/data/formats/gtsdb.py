"""GTSDB (German Traffic Sign Detection Benchmark): class names and the ``gt.txt`` reader/writer.

``gt.txt`` lines are ``00000.ppm;leftCol;topRow;rightCol;bottomRow;ClassID`` with inclusive 0-based
pixel indices; the canonical table stores continuous corners, so on read ``xmin = leftCol``,
``ymin = topRow``, ``xmax = rightCol + 1``, ``ymax = bottomRow + 1`` and on write the inverse.
A box whose ``rightCol <= leftCol`` or ``bottomRow <= topRow`` is a zero/negative-area annotation
(what an annotation tool writes for a click without a drag) and is a problem, like a box outside
its image, an unknown class id, a malformed line or a missing image.

The images are every file of ``IMAGE_SUFFIXES`` (detection.data.images) directly in the folder (not in the crop
subfolders ``00/``..``42/`` of the official package); those that ``gt.txt`` does not name are kept
as images without a box. A name whose file is absent resolves by stem (``gt.txt`` names
``00000.ppm``, the folder holds ``00000.jpg``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from detection.data.images import IMAGE_SUFFIXES
from detection.data.problems import (
    Problems,
    dataset_dir,
    image_size,
    images_by_stem,
    resolve_image,
)
from detection.data.table import (
    BOX_COLUMNS,
    boxes_of,
    check_unique_stems,
    empty_table,
    has_box,
    image_rows,
    normalize,
    pixel,
    summary,
)
from detection.errors import DetectionError
from detection.io import write_text

log = logging.getLogger(__name__)

FIELDS = ("leftCol", "topRow", "rightCol", "bottomRow", "ClassID")
LAYOUT_HINT = "a GTSDB folder holds gt.txt (lines `00000.ppm;774;411;815;446;11`) beside the images"

# Official GTSDB class ids 0..42 (ReadMe.txt of the FullIJCNN2013 package), category suffix dropped.
GTSDB_CLASSES: tuple[str, ...] = (
    "speed limit 20", "speed limit 30", "speed limit 50", "speed limit 60", "speed limit 70",
    "speed limit 80", "restriction ends 80", "speed limit 100", "speed limit 120", "no overtaking",
    "no overtaking (trucks)", "priority at next intersection", "priority road", "give way", "stop",
    "no traffic both ways", "no trucks", "no entry", "danger", "bend left",
    "bend right", "bend", "uneven road", "slippery road", "road narrows",
    "construction", "traffic signal", "pedestrian crossing", "school crossing", "cycles crossing",
    "snow", "animals", "restriction ends", "go right", "go left",
    "go straight", "go right or straight", "go left or straight", "keep right", "keep left",
    "roundabout", "restriction ends (overtaking)", "restriction ends (overtaking (trucks))",
)  # fmt: skip


def read_gtsdb(
    root: Path, class_names: Sequence[str] | None = None, on_error: str = "raise", *, policy: Mapping[str, str] | None = None
) -> tuple[pd.DataFrame, dict[str, object]]:
    """Read a GTSDB folder (``gt.txt`` + images) into the canonical table and a report.

    ``root`` is the folder (or its ``gt.txt``, or a folder whose only subfolder holding ``gt.txt``
    is the data set); ``image`` paths in the table are relative to ``root``. Labels are the names of
    ``GTSDB_CLASSES``; with ``class_names``, a box of another class is a problem. Problems raise a
    ``DetectionError`` naming ``gt.txt:LINE`` (``on_error="raise"``) or are skipped and listed in the
    report (``"skip"``); a missing folder or ``gt.txt`` always raises.
    """
    problems = Problems(on_error, policy)
    root = Path(root)
    folder = dataset_dir(root, "gt.txt", "GTSDB", LAYOUT_HINT)
    prefix = folder.relative_to(root if root.is_dir() else root.parent)
    gt = folder / "gt.txt"
    try:
        lines = gt.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise DetectionError(f"{gt}: not a text file ({exc})", hint=LAYOUT_HINT) from None
    by_stem = images_by_stem(folder, problems)
    if not by_stem:
        raise DetectionError(f"{folder}: no image ({'/'.join(IMAGE_SUFFIXES)}) beside gt.txt", hint=LAYOUT_HINT)
    known = None if class_names is None else set(class_names)
    sizes: dict[Path, tuple[int, int] | None] = {}
    chosen: dict[str, Path] = {}  # stem -> the file gt.txt's name resolved to
    boxes: dict[str, list[dict[str, object]]] = {}
    substituted: list[tuple[str, str]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{gt}:{number}"
        parsed = _parse_line(line.strip(), where, problems)
        if parsed is None:
            continue
        name, (left, top, right, bottom, class_id) = parsed
        path = chosen.get(Path(name).stem) or resolve_image(folder, name, by_stem)
        if path is None:
            problems.add(where, f"image {name} not found in {folder}", hint="put the images beside gt.txt, or remove that line", kind="image_missing")
            continue
        if path.name != name and Path(name).stem not in chosen:
            substituted.append((name, path.name))
        chosen[Path(name).stem] = path
        size = _size(path, sizes, problems)
        label = GTSDB_CLASSES[class_id]
        if size is None or not problems.label(where, label, known):
            continue
        shown = f"leftCol={left} topRow={top} rightCol={right} bottomRow={bottom}"
        if right <= left or bottom <= top:
            problems.add(where, f"zero or negative area box ({shown})", kind="zero_area")
            continue
        box = problems.box(where, (left, top, right + 1, bottom + 1), size[0], size[1], shown)
        if box is not None:
            boxes.setdefault(path.stem, []).append(dict(zip(BOX_COLUMNS, box, strict=True), label=label))
    if substituted:
        log.info("%s names %d image(s) by another extension than the file's (e.g. %s -> %s); used the file with the same stem",
                 gt, len(substituted), *substituted[0])  # fmt: skip
    duplicates = sorted(stem for stem, group in by_stem.items() if len(group) > 1)
    if duplicates:
        log.warning("%s: %d image name(s) exist with several extensions (e.g. %s); used one file each",
                    folder, len(duplicates), [p.name for p in by_stem[duplicates[0]]])  # fmt: skip
    rows: list[dict[str, object]] = []
    for stem in sorted(set(by_stem) | set(chosen)):  # a named file with another extension (.bmp) counts too
        path = chosen.get(stem) or by_stem[stem][0]
        size = _size(path, sizes, problems)
        if size is None:
            continue
        rows += image_rows({"image": (prefix / path.name).as_posix(), "width": size[0], "height": size[1]}, boxes.get(stem, []))
    df = normalize(pd.DataFrame(rows)) if rows else empty_table()
    problems.log_summary(gt)
    report = {"format": "gtsdb", "source": str(root), "annotations": str(gt), "image_root": str(root if root.is_dir() else root.parent), **summary(df),
              "extension_substitutions": len(substituted), "duplicate_stems": len(duplicates), **problems.report()}  # fmt: skip
    return df, report


def official_split(image: str) -> str:
    """``train`` or ``valid`` in GTSDB's official split: images 00000-00599 train, 00600-00899 test."""
    stem = Path(image).stem
    return "train" if stem.isdigit() and int(stem) < 600 else "valid"


def write_gtsdb(df: pd.DataFrame, dst: Path) -> Path:
    """Write ``dst/gt.txt`` from the canonical table; return its path.

    Lines use the official naming (``<stem>.ppm``) and inclusive pixel indices: ``leftCol = xmin``,
    ``rightCol = xmax - 1`` (coordinates rounded to whole pixels). Labels must be ``GTSDB_CLASSES``
    names. Images without a box have no line (the format cannot say more); the images are not copied.
    """
    df = normalize(df)
    ids = {name: i for i, name in enumerate(GTSDB_CLASSES)}
    boxed = df[has_box(df)]
    unknown = sorted(set(boxed["label"]) - set(ids))
    if unknown:
        raise DetectionError(f"cannot write GTSDB: label(s) {unknown} are not GTSDB class names",
                             hint="GTSDB holds only the 43 official classes (detection.data.formats.gtsdb.GTSDB_CLASSES)")  # fmt: skip
    check_unique_stems(boxes_of(df), "GTSDB", ".ppm")
    lines, thin = [], 0
    for row in boxed.itertuples(index=False):
        left, top, right, bottom = pixel(row.xmin), pixel(row.ymin), pixel(row.xmax) - 1, pixel(row.ymax) - 1
        thin += right <= left or bottom <= top
        lines.append(f"{Path(row.image).stem}.ppm;{left};{top};{right};{bottom};{ids[row.label]}")
    if thin:
        log.warning("write_gtsdb: %d box(es) are at most 1 px wide or high; reading them back reports zero area", thin)
    path = Path(dst) / "gt.txt"
    write_text(path, "".join(line + "\n" for line in lines))
    log.info("wrote %d boxes -> %s", len(lines), path)
    return path


def _parse_line(line: str, where: str, problems: Problems) -> tuple[str, list[int]] | None:
    parts = [p.strip() for p in line.split(";")]
    if len(parts) != 6 or not parts[0]:
        problems.add(where, f"expected 6 fields `image;leftCol;topRow;rightCol;bottomRow;ClassID`, got {line!r}")
        return None
    if "/" in parts[0] or "\\" in parts[0]:
        problems.add(where, f"image {parts[0]!r} is not a plain file name (GTSDB images lie beside gt.txt)")
        return None
    values = []
    for field, text in zip(FIELDS, parts[1:], strict=True):
        try:
            values.append(int(text))
        except ValueError:
            problems.add(where, f"field {field} is not an integer: {text!r} in {line!r}")
            return None
    if not 0 <= values[4] < len(GTSDB_CLASSES):
        problems.add(where, f"unknown class id {values[4]} (GTSDB class ids are 0..{len(GTSDB_CLASSES) - 1})", kind="unknown_class")
        return None
    return parts[0], values


def _size(path: Path, cache: dict[Path, tuple[int, int] | None], problems: Problems) -> tuple[int, int] | None:
    """The image's size from its header, read once per file (an unreadable image is one problem)."""
    if path not in cache:
        cache[path] = image_size(path, problems)
    return cache[path]
