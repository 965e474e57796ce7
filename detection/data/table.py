"""The canonical annotation table: one row per box, every reader produces it, every writer consumes it.

Columns (see ``COLUMNS``):

- ``image``: path of the image relative to the dataset root (POSIX separators).
- ``width``, ``height``: image size in pixels.
- ``xmin``, ``ymin``, ``xmax``, ``ymax``: the box in absolute pixel coordinates, 0-based and
  continuous: ``(xmin, ymin)`` is the top-left corner and ``(xmax, ymax)`` the bottom-right corner,
  so the box is ``xmax - xmin`` pixels wide (COCO's convention; GTSDB's and VOC's inclusive pixel
  indices are converted on read and back on write).
- ``label``: the class name.
- ``difficult``, ``iscrowd``, ``truncated``: 0/1 flags (VOC's ``difficult``/``truncated``, COCO's
  ``iscrowd``: kept for evaluation, which ignores difficult and crowd boxes).
- ``keypoints``: the box's keypoints as JSON ``[[x, y, v], ...]`` (pixels, same frame as the box;
  ``v`` = 0 absent, 1 hidden, 2 visible), or ``""`` when the format has none.

An image without any box is kept as one row whose box fields and label are empty (NaN / "").
Contiguous label ids (0 = background for torchvision detectors) are assigned in ``label_ids``
and nowhere else.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from detection.errors import DetectionError
from detection.io import atomic_path

COLUMNS = ["image", "width", "height", "xmin", "ymin", "xmax", "ymax", "label", "difficult", "iscrowd", "truncated", "keypoints"]
FLAG_COLUMNS = ["difficult", "iscrowd", "truncated"]
BOX_COLUMNS = ["xmin", "ymin", "xmax", "ymax"]


def image_rows(image: dict[str, object], boxes: list[dict[str, object]]) -> list[dict[str, object]]:
    """The table rows of one image (``image``: its ``image``/``width``/``height``): one per box, or
    one row with empty box fields and label when it has no box."""
    empty = {c: math.nan for c in BOX_COLUMNS} | {"label": "", "keypoints": ""}
    return [image | box for box in boxes] or [image | empty]


def pixel(value: float) -> int:
    """Round a continuous coordinate to the nearest whole pixel (halves up), for formats of integer indices."""
    return int(math.floor(value + 0.5))


def check_unique_stems(image_names: Iterable[str], fmt: str, suffix: str) -> None:
    """Raise if two images would write the same ``<stem><suffix>`` in a format that names files by stem."""
    stems: dict[str, str] = {}
    for image in image_names:
        other = stems.setdefault(Path(image).stem, image)
        if other != image:
            raise DetectionError(f"cannot write {fmt}: images {other} and {image} would share {Path(image).stem}{suffix}")


def empty_table() -> pd.DataFrame:
    """A table with the canonical columns and no rows."""
    return normalize(pd.DataFrame({c: [] for c in COLUMNS}))


def normalize(df: pd.DataFrame) -> pd.DataFrame:
    """Return ``df`` with exactly the canonical columns, in order, with canonical dtypes."""
    df = df.copy()
    for col in FLAG_COLUMNS:
        if col not in df:
            df[col] = 0
    if "keypoints" not in df:
        df["keypoints"] = ""
    missing = [c for c in COLUMNS if c not in df]
    if missing:
        raise DetectionError(f"annotation table lacks column(s) {missing}; expected {COLUMNS}")
    df = df[COLUMNS]
    df["image"] = df["image"].astype(str)
    df["width"] = df["width"].astype(int)
    df["height"] = df["height"].astype(int)
    for col in BOX_COLUMNS:
        df[col] = df[col].astype(float)
    df["label"] = df["label"].fillna("").astype(str)
    for col in FLAG_COLUMNS:
        df[col] = df[col].fillna(0).astype(int)
    df["keypoints"] = df["keypoints"].fillna("").astype(str)
    return df.reset_index(drop=True)


def has_box(df: pd.DataFrame) -> pd.Series:
    """Boolean mask of the rows that hold a box (not the placeholder row of an empty image)."""
    return df["xmin"].notna() & (df["label"] != "")


def images(df: pd.DataFrame) -> pd.DataFrame:
    """One row per image: ``image``, ``width``, ``height``, in first-seen order."""
    return df.drop_duplicates("image")[["image", "width", "height"]].reset_index(drop=True)


def label_ids(class_names: Sequence[str]) -> dict[str, int]:
    """Map class names to contiguous ids ``1..N`` (0 is the background class of torchvision detectors)."""
    if len(set(class_names)) != len(class_names):
        dup = sorted({n for n in class_names if list(class_names).count(n) > 1})
        raise DetectionError(f"class names are not unique: {dup}; fix the `names` list of the dataset config")
    return {name: i + 1 for i, name in enumerate(class_names)}


def check_labels(df: pd.DataFrame, class_names: Sequence[str], source: str | Path) -> None:
    """Raise if ``df`` holds a label that is not one of ``class_names``."""
    known = set(class_names)
    labels = set(df.loc[has_box(df), "label"])
    unknown = sorted(labels - known)
    if unknown:
        raise DetectionError(
            f"{source}: label(s) {unknown} are not in the dataset config's classes {list(class_names)}",
            hint="add them to `names` in the dataset config, or remove those boxes",
        )


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a canonical CSV written by ``write_table``; raise a ``DetectionError`` naming the file if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise DetectionError(f"annotation table not found: {path}", hint="run the `convert` stage first")
    try:
        df = pd.read_csv(path, keep_default_na=False, na_values={c: [""] for c in BOX_COLUMNS})
    except pd.errors.EmptyDataError:
        raise DetectionError(f"{path}: empty file, not an annotation table", hint="re-run the stage that writes it") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DetectionError(f"{path}: not a readable CSV ({exc})") from None
    try:
        return normalize(df)
    except (ValueError, TypeError) as exc:
        raise DetectionError(f"{path}: bad value in the annotation table ({exc})") from None
    except DetectionError as exc:
        raise DetectionError(f"{path}: {exc.message}") from None


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` as canonical CSV, atomically."""
    df = normalize(df)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.2f")
    return Path(path)


def boxes_of(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Group the box rows by image; images without a box map to an empty frame."""
    out: dict[str, pd.DataFrame] = {name: df.iloc[0:0] for name in images(df)["image"]}
    boxed = df[has_box(df)]
    for name, group in boxed.groupby("image", sort=False):
        out[str(name)] = group
    return out


def summary(df: pd.DataFrame) -> dict[str, object]:
    """Counts for reports: images, boxes, empty images, boxes per class."""
    boxed = df[has_box(df)]
    per_class = boxed["label"].value_counts().sort_index()
    return {
        "images": int(df["image"].nunique()),
        "boxes": int(len(boxed)),
        "empty_images": int(df["image"].nunique() - boxed["image"].nunique()),
        "per_class": {str(k): int(v) for k, v in per_class.items()},
    }


def as_arrays(group: pd.DataFrame, ids: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Boxes ``(N, 4)`` float32 and label ids ``(N,)`` int64 of one image's rows."""
    boxes = group[BOX_COLUMNS].to_numpy(dtype=np.float32).reshape(-1, 4)
    labels = np.array([ids[n] for n in group["label"]], dtype=np.int64)
    return boxes, labels
