"""CSV annotations: the canonical table (``write_table``'s), and the common CSV layouts of other tools.

Columns are matched by name: the canonical ones, or a common synonym (``filename``/``file_name``/
``path`` for ``image``, ``class``/``class_name`` for ``label``, ``x1``/``x_min``/``left`` for ``xmin``...,
the TensorFlow/Roboflow layout ``filename,width,height,class,xmin,ymin,xmax,ymax`` among them), or
an explicit mapping ``columns={"image": "my_col", ...}``. Coordinates are absolute pixels in the
table's convention (0-based continuous corners). Without ``width``/``height`` columns the sizes come
from the image headers (images found relative to the CSV's folder).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from detection.data.problems import Problems, image_size
from detection.data.table import (
    BOX_COLUMNS,
    COLUMNS,
    FLAG_COLUMNS,
    normalize,
    summary,
    write_table,
)
from detection.errors import DetectionError

SYNONYMS: dict[str, tuple[str, ...]] = {
    "image": ("filename", "file_name", "file", "image_path", "img", "path", "image_name", "image_id"),
    "label": ("class", "class_name", "classname", "label_name", "category", "category_name", "name"),
    "width": ("image_width", "img_width", "w_img"),
    "height": ("image_height", "img_height", "h_img"),
    "xmin": ("x1", "x_min", "left", "bbox_x1"),
    "ymin": ("y1", "y_min", "top", "bbox_y1"),
    "xmax": ("x2", "x_max", "right", "bbox_x2"),
    "ymax": ("y2", "y_max", "bottom", "bbox_y2"),
}
HINT = "a CSV needs columns image (or filename), label (or class), xmin, ymin, xmax, ymax (width, height optional)"


def column_map(header: Sequence[str], columns: Mapping[str, str] | None = None) -> dict[str, str]:
    """Source column -> canonical column, by explicit mapping, exact name or synonym (case-insensitive)."""
    lower = {h.strip().lower(): h for h in header}
    out: dict[str, str] = {}
    for canon, src in (columns or {}).items():
        if src not in header:
            raise DetectionError(f"CSV column {src!r} (given for {canon!r}) is not in the header {list(header)}", hint=HINT)
        out[src] = canon
    for canon in COLUMNS:
        if canon in out.values():
            continue
        for name in (canon, *SYNONYMS.get(canon, ())):
            if name in lower and lower[name] not in out:
                out[lower[name]] = canon
                break
    return out


def read_csv(
    path: Path, class_names: Sequence[str] | None = None, on_error: str = "raise", *,
    columns: Mapping[str, str] | None = None, images_dir: str | Path | None = None, policy: Mapping[str, str] | None = None,
) -> tuple[pd.DataFrame, dict[str, object]]:  # fmt: skip
    """Read a CSV (a folder means its ``annotations.csv``, else its one ``*.csv``) and check every row.

    A row must hold a whole box and label, or none (an image without a box); boxes must have a
    positive area and lie in their image. An image whose every box was skipped stays as an image
    without a box.
    """
    problems = Problems(on_error, policy)
    path = _csv_path(Path(path))
    try:
        raw = pd.read_csv(path, keep_default_na=False, dtype=str)
    except pd.errors.EmptyDataError:
        raise DetectionError(f"{path}: empty file, not an annotation table", hint=HINT) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DetectionError(f"{path}: not a readable CSV ({exc})", hint=HINT) from None
    mapping = column_map(list(raw.columns), columns)
    df = raw.rename(columns=mapping)[list(mapping.values())]
    missing = [c for c in ("image", "label", *BOX_COLUMNS) if c not in df]
    if missing:
        raise DetectionError(f"{path}: no column for {missing} in the header {list(raw.columns)}",
                             hint=f"{HINT}; or map them with --column NAME=COLUMN (convert.columns)")  # fmt: skip
    known = None if class_names is None else set(class_names)
    root = _image_root(path, images_dir)
    sizes: dict[str, tuple[int, int] | None] = {}
    keep: list[dict[str, object]] = []
    seen: dict[str, tuple[int, int]] = {}
    for i, row in enumerate(df.to_dict("records")):
        where = f"{path}:{i + 2}"
        parsed = _row(row, where, root, sizes, problems)
        if parsed is None:
            continue
        seen.setdefault(str(parsed["image"]), (int(parsed["width"]), int(parsed["height"])))
        if parsed["label"] == "" and all(math.isnan(parsed[c]) for c in BOX_COLUMNS):  # type: ignore[arg-type]
            keep.append(parsed)
            continue
        shown = ", ".join(f"{c}={row[c]}" for c in BOX_COLUMNS)
        box = problems.box(where, tuple(parsed[c] for c in BOX_COLUMNS), *seen[str(parsed["image"])], shown)  # type: ignore[arg-type]
        if box is not None and problems.label(where, str(parsed["label"]), known):
            keep.append(parsed | dict(zip(BOX_COLUMNS, box, strict=True)))
    kept_images = {str(r["image"]) for r in keep}
    for image, (w, h) in seen.items():
        if image not in kept_images:  # every box of that image was skipped: keep the image, boxless
            keep.append({"image": image, "width": w, "height": h, **{c: math.nan for c in BOX_COLUMNS}, "label": ""})
    out = normalize(pd.DataFrame(keep)) if keep else normalize(pd.DataFrame({c: [] for c in COLUMNS}))
    problems.log_summary(path)
    return out, {"format": "csv", "source": str(path), "annotations": str(path), "image_root": str(root),
                 **summary(out), **problems.report()}  # fmt: skip


def _image_root(path: Path, images_dir: str | Path | None) -> Path:
    if images_dir is not None:
        return path.parent / images_dir
    beside = path.parent / "report.json"
    if beside.is_file():
        try:
            root = json.loads(beside.read_text(encoding="utf-8")).get("image_root")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            root = None
        if root and Path(root).is_dir():
            return Path(root)
    return path.parent


def _csv_path(path: Path) -> Path:
    if not path.exists():
        raise DetectionError(f"CSV file not found: {path}", hint="check the path")
    if path.is_file():
        return path
    if (path / "annotations.csv").is_file():
        return path / "annotations.csv"
    found = sorted(path.glob("*.csv"))
    if len(found) == 1:
        return found[0]
    raise DetectionError(f"{path}: found {len(found)} .csv files, expected annotations.csv or one CSV", hint="pass the CSV file itself")


def _row(row: dict[str, str], where: str, root: Path, sizes: dict[str, tuple[int, int] | None], problems: Problems) -> dict[str, object] | None:
    image = row["image"].strip()
    if not image:
        problems.add(where, "empty image name", kind="malformed")
        return None
    out: dict[str, object] = {"image": image, "label": row["label"].strip()}
    for c in BOX_COLUMNS:
        text = row[c].strip()
        try:
            out[c] = float(text) if text else math.nan
        except ValueError:
            problems.add(where, f"column {c} is not a number: {text!r}", kind="malformed")
            return None
    for c in FLAG_COLUMNS:
        text = str(row.get(c, "") or "0").strip()
        if text not in ("0", "1"):
            problems.add(where, f"column {c} must be 0 or 1, got {text!r}", kind="malformed")
            return None
        out[c] = int(text)
    out["keypoints"] = row.get("keypoints", "") or ""
    given = [c for c in BOX_COLUMNS if not math.isnan(out[c])] + (["label"] if out["label"] else [])  # type: ignore[arg-type]
    if given and len(given) < len(BOX_COLUMNS) + 1:
        empty = [c for c in (*BOX_COLUMNS, "label") if c not in given]
        problems.add(where, f"incomplete box: empty {empty} (a row holds a whole box and label, or none of them)", kind="malformed")
        return None
    if "width" in row and "height" in row and row["width"].strip() and row["height"].strip():
        try:
            w, h = int(float(row["width"])), int(float(row["height"]))
        except ValueError:
            problems.add(where, f"width/height are not numbers: {row['width']!r}x{row['height']!r}", kind="malformed")
            return None
    else:
        if image not in sizes:
            sizes[image] = image_size(root / image, problems)
        if sizes[image] is None:
            return None
        w, h = sizes[image]  # type: ignore[misc]
    if w <= 0 or h <= 0:
        problems.add(where, f"image size must be positive, got {w}x{h}", kind="malformed")
        return None
    return out | {"width": w, "height": h}


def write_csv(df: pd.DataFrame, out_dir: Path) -> Path:
    """The canonical CSV ``out_dir/annotations.csv``."""
    return write_table(df, Path(out_dir) / "annotations.csv")
