"""YOLO txt: one ``.txt`` per image of normalised ``class cx cy w h`` lines, read into and written from the table.

Class names come from ``classes.txt`` (or ``obj.names``, one per line) or an Ultralytics data YAML
(``names:`` a list or a ``{id: name}`` dict; ``path`` and ``train``/``val``/``test`` folders, list
files or lists). Images lie beside their labels, or in the ``images/`` + ``labels/`` layout (a label
file is the image's path with its last ``images`` folder replaced by ``labels``). An image without a
``.txt`` is an image without objects; a 5th ``conf`` column and blank lines are tolerated.

``cx, cy, w, h`` are fractions of the image width/height: ``xmin = (cx - w/2) * W`` and so on, in
the table's continuous corners (no pixel shift).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from detection.data.formats.common import place_images
from detection.data.images import IMAGE_SUFFIXES, display_path
from detection.data.problems import Problems, bad_name, image_size
from detection.data.table import BOX_COLUMNS, boxes_of, check_unique_stems, empty_table, image_rows, images, label_ids, normalize, summary
from detection.errors import DetectionError
from detection.io import atomic_path

log = logging.getLogger(__name__)

CLASS_FILES = ("classes.txt", "obj.names", "classes.names")
LAYOUT_HINT = ("a YOLO data set holds classes.txt (or a data YAML with `names:`) and one <image stem>.txt of "
               "`class cx cy w h` lines per image, beside the images or in images/ + labels/")  # fmt: skip


def read_yolo(
    root: Path, class_names: Sequence[str] | None = None, on_error: str = "raise", *, policy: Mapping[str, str] | None = None
) -> tuple[pd.DataFrame, dict[str, object]]:
    """Read a YOLO folder (or its data YAML) into the canonical table and a report.

    ``image`` paths are relative to the data set root (the YAML's ``path``, else its folder, else
    ``root``). Labels are the file's class names; with ``class_names`` (the dataset config's), a
    box of another class is a problem.
    """
    problems = Problems(on_error, policy)
    root = Path(root)
    if not root.exists():
        raise DetectionError(f"YOLO folder not found: {display_path(root)}", hint="check the path, or run `detection fetch` first")
    base, names, image_files = _layout(root)
    known = None if class_names is None else set(class_names)
    rows: list[dict[str, object]] = []
    labelled: set[Path] = set()
    for path in image_files:
        if bad_name(path, problems):
            continue
        label_file = label_path(path)
        labelled.add(label_file)
        size = image_size(path, problems)
        if size is None:
            continue
        boxes = _boxes(label_file, size, names, known, problems) if label_file.is_file() else []
        rows += image_rows({"image": path.relative_to(base).as_posix(), "width": size[0], "height": size[1]}, boxes)
    for orphan in sorted(_label_files(base) - labelled):
        problems.add(display_path(orphan), "label file without an image (no image of that stem)",
                     hint="put the image beside it (or in the images/ folder), or delete the file", kind="image_missing")  # fmt: skip
    df = normalize(pd.DataFrame(rows)) if rows else empty_table()
    problems.log_summary(root)
    return df, {"format": "yolo", "source": str(root), "annotations": str(base), "image_root": str(base),
                "class_names": names, **summary(df), **problems.report()}  # fmt: skip


def label_path(image: Path) -> Path:
    """The label file of an image: ``.../images/x/a.jpg`` -> ``.../labels/x/a.txt``; else beside it."""
    parts = list(image.parts)
    if "images" in parts[:-1]:
        i = len(parts) - 2 - parts[-2::-1].index("images")
        parts[i] = "labels"
    return Path(*parts).with_suffix(".txt")


def _layout(root: Path) -> tuple[Path, list[str], list[Path]]:
    """``(data set root, class names, image files)`` of a YOLO folder or data YAML."""
    yaml_file = root if root.is_file() and root.suffix in (".yaml", ".yml") else _data_yaml(root)
    if yaml_file is not None:
        data = _load_yaml(yaml_file)
        base = (yaml_file.parent / str(data.get("path") or ".")).resolve() if data.get("path") else yaml_file.parent
        names = _names(data.get("names"), yaml_file)
        files: list[Path] = []
        for key in ("train", "val", "test"):
            entries = data.get(key) or []
            for entry in entries if isinstance(entries, list) else [entries]:
                files += _entry_images(base, str(entry), yaml_file)
        if not files:
            files = _images_under(base)
        return base, names, sorted(dict.fromkeys(files))
    if root.is_file():
        raise DetectionError(f"{display_path(root)}: expected a YOLO folder or data YAML", hint=LAYOUT_HINT)
    class_file = next((root / n for n in CLASS_FILES if (root / n).is_file()), None)
    if class_file is None:
        raise DetectionError(f"{display_path(root)}: no {' / '.join(CLASS_FILES)} or data YAML with `names:`", hint=LAYOUT_HINT)
    try:
        names = [line.strip() for line in class_file.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    except UnicodeDecodeError as exc:
        raise DetectionError(f"{class_file}: not a text file ({exc})", hint=LAYOUT_HINT) from None
    if not names:
        raise DetectionError(f"{class_file}: no class name", hint="one class name per line, in class-id order")
    return root, names, _images_under(root)


def _data_yaml(root: Path) -> Path | None:
    for path in sorted(root.glob("*.y*ml")):
        data = _load_yaml(path)
        if "names" in data:
            return path
    return None


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise DetectionError(f"{path}: not valid YAML ({exc})", hint=LAYOUT_HINT) from None
    return data if isinstance(data, dict) else {}


def _names(value: Any, path: Path) -> list[str]:
    """``names:`` as a list, or a ``{id: name}`` dict with ids 0..N-1."""
    if isinstance(value, list) and value and all(isinstance(v, str | int) for v in value):
        return [str(v) for v in value]
    if isinstance(value, dict) and value:
        try:
            ids = sorted(int(k) for k in value)
        except (TypeError, ValueError):
            ids = []
        if ids == list(range(len(value))):
            return [str(value[k] if k in value else value[str(k)]) for k in ids]
    raise DetectionError(f"{path}: `names` must be a list of class names or a dict {{0: name, 1: name, ...}}, got {value!r}", hint=LAYOUT_HINT)


def _entry_images(base: Path, entry: str, yaml_file: Path) -> list[Path]:
    """The images of one ``train``/``val``/``test`` entry: a folder, or a text file listing image paths."""
    path = base / entry
    if path.is_dir():
        return _images_under(path)
    if path.is_file():
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return [(base / line) if not Path(line).is_absolute() else Path(line) for line in lines]
    raise DetectionError(f"{yaml_file}: {entry!r} (from train/val/test) is neither a folder nor a list file under {base}", hint=LAYOUT_HINT)


def _images_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and "labels" not in p.relative_to(folder).parts[:-1])


def _label_files(base: Path) -> set[Path]:
    skip = set(CLASS_FILES) | {"README.txt", "readme.txt", "LICENSE.txt", "train.txt", "val.txt", "test.txt"}
    return {p for p in base.rglob("*.txt") if p.name not in skip}


def _boxes(label_file: Path, size: tuple[int, int], names: list[str], known: set[str] | None, problems: Problems) -> list[dict[str, object]]:
    width, height = size
    try:
        lines = label_file.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        problems.add(display_path(label_file), f"not a text file ({exc})")
        return []
    boxes = []
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        where = f"{display_path(label_file)}:{number}"
        if len(fields) not in (5, 6):
            problems.add(where, f"expected 5 fields `class cx cy w h` (a 6th `conf` allowed), got {len(fields)}: {line.strip()!r}")
            continue
        try:
            class_id = int(fields[0])
            cx, cy, w, h = (float(v) for v in fields[1:5])
        except ValueError:
            problems.add(where, f"not numbers: {line.strip()!r} (class is an integer, cx cy w h are fractions of the image size)")
            continue
        if not 0 <= class_id < len(names):
            problems.add(where, f"class id {class_id} is not in 0..{len(names) - 1} ({len(names)} class names)", kind="unknown_class")
            continue
        if problems.action("outside_image") != "clip" and not all(0.0 <= v <= 1.0 for v in (cx, cy, w, h)):
            problems.add(where, f"value outside [0, 1] in {line.strip()!r}: YOLO coordinates are fractions of the image size (pixels given?)",
                         kind="outside_image")  # fmt: skip
            continue
        label = names[class_id]
        if not problems.label(where, label, known):
            continue
        corners = ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
        box = problems.box(where, corners, width, height, f"cx={fields[1]} cy={fields[2]} w={fields[3]} h={fields[4]}")
        if box is not None:
            boxes.append(dict(zip(BOX_COLUMNS, box, strict=True)) | {"label": label})
    return boxes


def write_yolo(df: pd.DataFrame, dst_dir: Path, class_names: Sequence[str], image_root: Path | None = None, images_mode: str = "link") -> Path:
    """Write ``dst_dir`` (atomically, as a whole): ``images/`` (the images, linked or copied), ``labels/<stem>.txt``,
    ``classes.txt`` and an Ultralytics ``data.yaml``; return ``dst_dir``. Every image gets a label file
    (empty for an image without a box)."""
    df = normalize(df)
    ids = {name: i - 1 for name, i in label_ids(class_names).items()}
    unknown = sorted(set(df.loc[df["label"] != "", "label"]) - set(ids))
    if unknown:
        raise DetectionError(f"cannot write YOLO: label(s) {unknown} are not in the class names {list(class_names)}")
    groups = boxes_of(df)
    check_unique_stems(groups, "YOLO", ".txt")
    sizes = {row.image: (row.width, row.height) for row in images(df).itertuples(index=False)}
    dst_dir = Path(dst_dir)
    with atomic_path(dst_dir) as tmp:
        (tmp / "labels").mkdir(parents=True)
        placed = place_images(groups, image_root, tmp / "images", images_mode, final=dst_dir / "images")
        for image, group in groups.items():
            w, h = sizes[image]
            lines = [
                f"{ids[r.label]} {(r.xmin + r.xmax) / 2 / w:.6f} {(r.ymin + r.ymax) / 2 / h:.6f} {(r.xmax - r.xmin) / w:.6f} {(r.ymax - r.ymin) / h:.6f}\n"
                for r in group.itertuples(index=False)
            ]
            (tmp / "labels" / f"{Path(placed[image]).stem}.txt").write_text("".join(lines), encoding="utf-8")
        (tmp / "classes.txt").write_text("".join(f"{n}\n" for n in class_names), encoding="utf-8")
        data = {"path": ".", "train": "images", "val": "images", "names": dict(enumerate(class_names))}
        (tmp / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    log.info("wrote %d YOLO label files -> %s", len(groups), dst_dir)
    return dst_dir
