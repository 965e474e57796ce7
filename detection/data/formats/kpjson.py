"""Bounding box + keypoint JSON (the torchvision references' keypoint format), read into and written from the table.

One JSON file per image, with the image's stem: ``{"bboxes": [[x1, y1, x2, y2], ...], "keypoints":
[[[x, y, v], ...], ...]}`` in pixels (``v`` = 0 absent, 1 hidden, 2 visible), one keypoint list per
box, every box the same number of keypoints. An optional ``"labels"`` list names each box's class;
without it every box is of the one class (the dataset config's only class, else ``person``). The JSON
files lie beside the images, or in ``annotations/`` (or ``labels/``, ``json/``) beside ``images/``.
Keypoints go to the table's ``keypoints`` column; ``write_coco`` turns them into COCO person keypoints.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from detection.data.formats.common import place_images
from detection.data.images import display_path
from detection.data.problems import Problems, bad_name, image_size, images_by_stem
from detection.data.table import (
    BOX_COLUMNS,
    boxes_of,
    check_unique_stems,
    empty_table,
    image_rows,
    normalize,
    summary,
)
from detection.errors import DetectionError
from detection.io import atomic_path

log = logging.getLogger(__name__)

JSON_DIRS = ("annotations", "labels", "json", ".")
IMAGE_DIRS = ("images", "JPEGImages", ".")
DEFAULT_LABEL = "person"
LAYOUT_HINT = "a kpjson data set holds one <image stem>.json of {\"bboxes\": [[x1,y1,x2,y2],...], \"keypoints\": [[[x,y,v],...],...]} per image"


def layout(root: Path) -> tuple[Path, Path]:
    """``(JSON folder, images folder)`` of a kpjson data set."""
    if not root.is_dir():
        raise DetectionError(f"kpjson folder not found: {display_path(root)}", hint=LAYOUT_HINT)
    ann = next((root / d for d in JSON_DIRS if (root / d).is_dir() and any((root / d).glob("*.json"))), None)
    if ann is None:
        raise DetectionError(f"{display_path(root)}: no .json file (in {', '.join(JSON_DIRS[:-1])} or the folder itself)", hint=LAYOUT_HINT)
    img = next((root / d for d in IMAGE_DIRS if (root / d).is_dir() and images_by_stem(root / d)), root)
    return ann, img


def read_kpjson(
    root: Path, class_names: Sequence[str] | None = None, on_error: str = "raise", *, policy: Mapping[str, str] | None = None
) -> tuple[pd.DataFrame, dict[str, object]]:
    """Read a kpjson folder into the canonical table (keypoints kept) and a report; images relative to ``root``."""
    problems = Problems(on_error, policy)
    root = Path(root)
    ann_dir, img_dir = layout(root)
    by_stem = images_by_stem(img_dir, problems)
    default = class_names[0] if class_names and len(class_names) == 1 else DEFAULT_LABEL
    known = None if class_names is None else set(class_names)
    rows: list[dict[str, object]] = []
    named: set[str] = set()
    n_points: set[int] = set()
    for path in sorted(ann_dir.glob("*.json")):
        if bad_name(path, problems):
            continue
        group = by_stem.get(path.stem)
        if not group:
            problems.add(display_path(path), f"no image {path.stem}.* in {display_path(img_dir)}",
                         hint="put the image there, or delete that JSON file", kind="image_missing")  # fmt: skip
            continue
        named.add(path.stem)
        size = image_size(group[0], problems)
        if size is None:
            continue
        boxes = _boxes(path, size, default, known, problems, n_points)
        if boxes is None:
            continue
        rows += image_rows({"image": group[0].relative_to(root).as_posix(), "width": size[0], "height": size[1]}, boxes)
    for stem in sorted(set(by_stem) - named):
        problems.add(display_path(by_stem[stem][0]), "image without a JSON annotation file", kind="image_without_annotation")
    df = normalize(pd.DataFrame(rows)) if rows else empty_table()
    problems.log_summary(root)
    return df, {"format": "kpjson", "source": str(root), "annotations": str(ann_dir), "image_root": str(root),
                "num_keypoints": sorted(n_points), **summary(df), **problems.report()}  # fmt: skip


def _boxes(
    path: Path, size: tuple[int, int], default: str, known: set[str] | None, problems: Problems, n_points: set[int]
) -> list[dict[str, object]] | None:
    where = display_path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        problems.add(f"{where}:{exc.lineno}", f"not valid JSON ({exc.msg})", hint=LAYOUT_HINT)
        return None
    except UnicodeDecodeError as exc:
        problems.add(where, f"not a text file ({exc})", hint=LAYOUT_HINT)
        return None
    if not isinstance(data, dict) or not isinstance(data.get("bboxes"), list):
        problems.add(where, "expected a JSON object with a `bboxes` list", hint=LAYOUT_HINT)
        return None
    bboxes, points = data["bboxes"], data.get("keypoints")
    labels = data.get("labels")
    if points is not None and (not isinstance(points, list) or len(points) != len(bboxes)):
        problems.add(where, f"`keypoints` must hold one list per box ({len(bboxes)} boxes)", hint=LAYOUT_HINT)
        return None
    if labels is not None and (not isinstance(labels, list) or len(labels) != len(bboxes)):
        problems.add(where, f"`labels` must hold one name per box ({len(bboxes)} boxes)", hint=LAYOUT_HINT)
        return None
    out = []
    for i, bbox in enumerate(bboxes):
        at = f"{where}: bboxes[{i}]"
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_number(v) for v in bbox)):
            problems.add(at, f"must be [x1, y1, x2, y2] numbers, got {bbox!r}")
            continue
        kp = _points(points[i] if points is not None else [], f"{where}: keypoints[{i}]", problems)
        if kp is None:
            continue
        label = str(labels[i]) if labels is not None else default
        if not problems.label(at, label, known):
            continue
        box = problems.box(at, tuple(float(v) for v in bbox), size[0], size[1], f"bbox={bbox}")  # type: ignore[arg-type]
        if box is None:
            continue
        if kp:
            n_points.add(len(kp))
        out.append(dict(zip(BOX_COLUMNS, box, strict=True)) | {"label": label, "keypoints": json.dumps(kp) if kp else ""})
    return out


def _points(items: Any, where: str, problems: Problems) -> list[list[float]] | None:
    if not isinstance(items, list):
        problems.add(where, f"must be a list of [x, y, v], got {str(items)[:60]}")
        return None
    out = []
    for point in items:
        if not (isinstance(point, list) and len(point) == 3 and all(_number(v) for v in point) and point[2] in (0, 1, 2)):
            problems.add(where, f"each keypoint is [x, y, v] with v 0 (absent), 1 (hidden) or 2 (visible), got {point!r}")
            return None
        out.append([float(point[0]), float(point[1]), int(point[2])])
    return out


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def write_kpjson(df: pd.DataFrame, dst_dir: Path, image_root: Path | None = None, images_mode: str = "link") -> Path:
    """Write ``dst_dir/annotations/<stem>.json`` per image and ``dst_dir/images/`` (linked or copied), atomically."""
    df = normalize(df)
    groups = boxes_of(df)
    check_unique_stems(groups, "kpjson", ".json")
    dst_dir = Path(dst_dir)
    with atomic_path(dst_dir) as tmp:
        (tmp / "annotations").mkdir(parents=True)
        placed = place_images(groups, image_root, tmp / "images", images_mode, final=dst_dir / "images")
        for image, group in groups.items():
            data = {
                "bboxes": [[float(r.xmin), float(r.ymin), float(r.xmax), float(r.ymax)] for r in group.itertuples(index=False)],
                "keypoints": [json.loads(r.keypoints) if r.keypoints else [] for r in group.itertuples(index=False)],
                "labels": [str(r.label) for r in group.itertuples(index=False)],
            }
            (tmp / "annotations" / f"{Path(placed[image]).stem}.json").write_text(json.dumps(data) + "\n", encoding="utf-8")
    log.info("wrote %d kpjson files -> %s", len(groups), dst_dir)
    return dst_dir
