"""COCO detection JSON: written from and read into the canonical table.

COCO's ``bbox`` is ``[x, y, w, h]`` in continuous 0-based pixels, the table's convention, so
``xmin = x``, ``xmax = x + w`` with no shift. ``category_id`` is the contiguous id of
``table.label_ids(class_names)`` (1..N; 0 is the detectors' background). Images without a box are
listed in ``images`` with no annotation. ``difficult`` and ``truncated`` are kept as extra annotation fields
(pycocotools ignores it; its ``iscrowd`` is what COCOeval ignores). Read: any category ids (0, gaps,
unsorted) map to their names. Keypoints (COCO person-keypoints: flat ``[x, y, v] * K`` per
annotation, names in the category's ``keypoints``) are kept in the table's ``keypoints`` column and
written back when the table has them, so a keypoint model trains from the file.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from detection.data.problems import Problems
from detection.data.table import BOX_COLUMNS, check_labels, empty_table, has_box, image_rows, images, label_ids, normalize, summary
from detection.errors import DetectionError
from detection.io import write_text

log = logging.getLogger(__name__)

LAYOUT_HINT = "a COCO file is a JSON object with lists `images`, `annotations` and `categories`"
JSON_NAMES = ("coco.json", "annotations.json", "instances.json")


def to_coco_dict(
    df: pd.DataFrame, class_names: Sequence[str], file_names: dict[str, str] | None = None,
    keypoint_names: Sequence[str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The COCO detection dict of ``df`` (image ids 1..N in table order; a label outside ``class_names`` raises).

    ``file_names`` maps table image names to the ``file_name`` written (default: the table's). When
    a box has keypoints, annotations carry ``keypoints``/``num_keypoints`` and categories the
    ``keypoints`` names (``keypoint_names``, default ``kp0..``) and an empty ``skeleton``.
    """
    df = normalize(df)
    file_names = file_names or {}
    ids = label_ids(class_names)
    check_labels(df, class_names, "annotation table")
    image_ids: dict[str, int] = {}
    coco_images = []
    table = images(df)
    for i, (image, width, height) in enumerate(zip(*(table[c].tolist() for c in ("image", "width", "height")), strict=True), 1):
        image_ids[image] = i
        coco_images.append({"id": i, "file_name": file_names.get(image, image), "width": int(width), "height": int(height)})
    annotations = []
    n_points = 0
    boxed = df[has_box(df)]
    columns = ("image", "xmin", "ymin", "xmax", "ymax", "label", "iscrowd", "difficult", "truncated", "keypoints")
    for i, (image, x1, y1, x2, y2, label, crowd, difficult, truncated, keypoints) in enumerate(
        zip(*(boxed[c].tolist() for c in columns), strict=True), 1
    ):  # plain lists: row access in pandas costs more than the rest
        w, h = float(x2 - x1), float(y2 - y1)
        ann = {
            "id": i, "image_id": image_ids[image], "category_id": ids[label],
            "bbox": [float(x1), float(y1), w, h], "area": w * h,
            "iscrowd": int(crowd), "difficult": int(difficult), "truncated": int(truncated),
        }  # fmt: skip
        if keypoints:
            points = json.loads(keypoints)
            n_points = max(n_points, len(points))
            ann["keypoints"] = [float(v) for point in points for v in point]
            ann["num_keypoints"] = sum(1 for point in points if point[2] > 0)
        annotations.append(ann)
    categories = [{"id": i, "name": name, "supercategory": ""} for name, i in ids.items()]
    if n_points:
        names = list(keypoint_names or [f"kp{k}" for k in range(n_points)])
        for cat in categories:
            cat.update(keypoints=names, skeleton=[])
    return {
        "info": {"description": "written by detection.data.coco", "version": "1.0"},
        "licenses": [],
        "images": coco_images,
        "annotations": annotations,
        "categories": categories,
    }


def write_coco(
    df: pd.DataFrame, path: Path, class_names: Sequence[str], image_root: Path | None = None,
    keypoint_names: Sequence[str] | None = None,
) -> Path:  # fmt: skip
    """Write ``to_coco_dict(df, class_names)`` to ``path`` as JSON, atomically; return ``path``.

    With ``image_root`` (where the table's images lie), each ``file_name`` is the image's path
    relative to the JSON's folder, so the file opens in a tool (and reads back) wherever it is.
    Keypoints in the table are written as COCO person keypoints (see ``to_coco_dict``).
    """
    path = Path(path)
    file_names = None
    if image_root is not None:
        here = path.parent.resolve() if path.parent.exists() else path.parent.absolute()
        file_names = {name: Path(os.path.relpath(Path(image_root).resolve() / name, here)).as_posix() for name in normalize(df)["image"].unique()}
    data = to_coco_dict(df, class_names, file_names, keypoint_names)
    write_text(path, json.dumps(data, separators=(",", ":")) + "\n")  # compact, as COCO files are (json's C encoder)
    log.info("wrote %d images, %d annotations -> %s", len(data["images"]), len(data["annotations"]), path)
    return Path(path)


def read_coco(
    path: Path, class_names: Sequence[str] | None = None, on_error: str = "raise", *,
    images_dir: str | Path | None = None, policy: Mapping[str, str] | None = None,
) -> tuple[pd.DataFrame, dict[str, object]]:  # fmt: skip
    """Read a COCO detection JSON (or a folder holding ``coco.json``/``annotations.json``/one ``*.json``).

    ``image`` is each image's ``file_name`` as written (relative to wherever the images are); the label
    is the category's name. A malformed file or a missing top-level list always raises; a bad image,
    category or annotation raises a ``DetectionError`` naming the file and the entry
    (``on_error="raise"``), or is skipped and listed in the report (``"skip"``). The image root
    (``report["image_root"]``) is ``images_dir`` (relative to the JSON's folder), else the first of the
    JSON's folder, its ``images/``, ``../images/`` and ``..`` where the first file names resolve.
    """
    problems = Problems(on_error, policy)
    path = _json_path(Path(path))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DetectionError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})", hint=LAYOUT_HINT) from None
    except UnicodeDecodeError as exc:
        raise DetectionError(f"{path}: not a text file ({exc})", hint=LAYOUT_HINT) from None
    if not isinstance(data, dict):
        raise DetectionError(f"{path}: expected a JSON object at the top level", hint=LAYOUT_HINT)
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DetectionError(f"{path}: missing or non-list field `{key}`", hint=LAYOUT_HINT)
    known = None if class_names is None else set(class_names)
    categories = _categories(data["categories"], path, problems)
    coco_images = _images(data["images"], path, problems)
    boxes: dict[int, list[dict[str, object]]] = {}
    for i, ann in enumerate(data["annotations"]):
        where = f"{path}: annotations[{i}]" + (f" (id {ann['id']})" if isinstance(ann, dict) and "id" in ann else "")
        box = _annotation(ann, where, coco_images, categories, known, problems)
        if box is not None:
            boxes.setdefault(int(ann["image_id"]), []).append(box)
    rows = [row for image_id, image in coco_images.items() for row in image_rows(image, boxes.get(image_id, []))]
    df = normalize(pd.DataFrame(rows)) if rows else empty_table()
    problems.log_summary(path)
    root = image_root(path, [str(i["image"]) for i in coco_images.values()], images_dir)
    if len(df) and df["image"].str.contains(r"(?:^|/)\.\./", regex=True).any():  # file_names relative to the JSON, as write_coco writes them
        resolved = {n: os.path.normpath(root / n) for n in df["image"].unique()}
        root = Path(os.path.commonpath([os.path.dirname(p) for p in resolved.values()]))
        df["image"] = df["image"].map(lambda n: Path(os.path.relpath(resolved[n], root)).as_posix())
    return df, {"format": "coco", "source": str(path), "annotations": str(path), "image_root": str(root),
                "keypoint_names": _keypoint_names(data["categories"]), **summary(df), **problems.report()}  # fmt: skip


def image_root(path: Path, names: list[str], images_dir: str | Path | None = None) -> Path:
    """Where the COCO file's ``file_name``s resolve (see ``read_coco``); the JSON's folder when none does."""
    if images_dir is not None:
        return path.parent / images_dir
    probe = names[:20]
    candidates = (path.parent, path.parent / "images", path.parent.parent / "images", path.parent.parent)
    found = [sum((root / n).is_file() for n in probe) for root in candidates]
    return candidates[found.index(max(found))] if probe and max(found) else path.parent


def _keypoint_names(categories: list[Any]) -> list[str]:
    for cat in categories:
        if isinstance(cat, dict) and isinstance(cat.get("keypoints"), list):
            return [str(n) for n in cat["keypoints"]]
    return []


def _json_path(path: Path) -> Path:
    if not path.exists():
        raise DetectionError(f"COCO file not found: {path}", hint="check the path, or run `detection fetch` first")
    if path.is_file():
        return path
    for name in JSON_NAMES:
        if (path / name).is_file():
            return path / name
    found = sorted(path.glob("*.json"))
    if len(found) == 1:
        return found[0]
    raise DetectionError(f"{path}: found {len(found)} .json files, expected one COCO file", hint=f"pass the JSON file itself, or name it {JSON_NAMES[0]}")


def _categories(items: list[Any], path: Path, problems: Problems) -> dict[int, str]:
    out: dict[int, str] = {}
    for i, cat in enumerate(items):
        where = f"{path}: categories[{i}]"
        if not isinstance(cat, dict) or not _is_int(cat.get("id")) or not str(cat.get("name") or "").strip():
            problems.add(where, "needs an integer `id` and a non-empty `name`")
        elif int(cat["id"]) in out:
            problems.add(where, f"duplicate category id {cat['id']}")
        else:
            out[int(cat["id"])] = str(cat["name"]).strip()
    return out


def _images(items: list[Any], path: Path, problems: Problems) -> dict[int, dict[str, object]]:
    out: dict[int, dict[str, object]] = {}
    names: set[str] = set()
    for i, img in enumerate(items):
        where = f"{path}: images[{i}]"
        if not isinstance(img, dict) or not _is_int(img.get("id")) or not str(img.get("file_name") or "").strip():
            problems.add(where, "needs an integer `id` and a non-empty `file_name`")
            continue
        if not (_is_int(img.get("width")) and _is_int(img.get("height")) and img["width"] > 0 and img["height"] > 0):
            problems.add(where, f"`width` and `height` must be positive integers, got {img.get('width')!r}x{img.get('height')!r}")
            continue
        name = str(img["file_name"]).strip()
        if int(img["id"]) in out or name in names:
            problems.add(where, f"duplicate image id {img['id']} or file_name {name!r}")
            continue
        names.add(name)
        out[int(img["id"])] = {"image": name, "width": int(img["width"]), "height": int(img["height"])}
    return out


def _annotation(
    ann: Any, where: str, coco_images: dict[int, dict[str, object]], categories: dict[int, str],
    known: set[str] | None, problems: Problems,
) -> dict[str, object] | None:  # fmt: skip
    if not isinstance(ann, dict):
        problems.add(where, "is not a JSON object")
        return None
    image = coco_images.get(int(ann["image_id"])) if _is_int(ann.get("image_id")) else None
    if image is None:
        problems.add(where, f"`image_id` {ann.get('image_id')!r} is not the id of an image in `images`")
        return None
    label = categories.get(int(ann["category_id"])) if _is_int(ann.get("category_id")) else None
    if label is None:
        problems.add(where, f"`category_id` {ann.get('category_id')!r} is not the id of a category in `categories`", kind="unknown_class")
        return None
    bbox = ann.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
        problems.add(where, f"`bbox` must be [x, y, width, height] numbers, got {bbox!r}")
        return None
    flags = {key: ann.get(key, 0) for key in ("iscrowd", "difficult", "truncated")}
    points = ann.get("keypoints")
    if points is not None and not (isinstance(points, list) and len(points) % 3 == 0 and all(_is_number(v) for v in points)):
        problems.add(where, f"`keypoints` must be a flat list [x, y, v, ...], got {str(points)[:80]}")
        return None
    if any(v not in (0, 1) for v in flags.values()):
        problems.add(where, f"`iscrowd`, `difficult` and `truncated` must be 0 or 1, got {flags}")
        return None
    if not problems.label(where, label, known):
        return None
    x, y, w, h = (float(v) for v in bbox)
    box = problems.box(where, (x, y, x + w, y + h), int(image["width"]), int(image["height"]), f"bbox={bbox}")
    if box is None:
        return None
    kp = json.dumps([[float(points[k]), float(points[k + 1]), int(points[k + 2])] for k in range(0, len(points), 3)]) if points else ""
    return dict(zip(BOX_COLUMNS, box, strict=True)) | {"label": label, **flags, "keypoints": kp}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
