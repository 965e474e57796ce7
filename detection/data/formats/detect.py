"""``--from auto``: which annotation format a folder or file holds, from its layout."""

from __future__ import annotations

import json
from pathlib import Path

from detection.data.images import display_path
from detection.errors import DetectionError

FORMATS = ("gtsdb", "voc", "coco", "csv", "yolo", "kpjson")


def _json_kind(path: Path) -> str | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if isinstance(data, dict) and "images" in data and "annotations" in data:
        return "coco"
    if isinstance(data, dict) and "bboxes" in data:
        return "kpjson"
    return None


def detect_format(src: Path) -> str:
    """The format of ``src`` (one of ``FORMATS``); a DetectionError listing what was looked for if none fits."""
    src = Path(src)
    if not src.exists():
        raise DetectionError(f"source not found: {display_path(src)}", hint="check the path, or run `detection fetch` first")
    if src.is_file():
        by_suffix = {".csv": "csv", ".yaml": "yolo", ".yml": "yolo", ".xml": "voc"}
        if src.name == "gt.txt":
            return "gtsdb"
        if src.suffix == ".json" and (kind := _json_kind(src)):
            return kind
        if src.suffix in by_suffix:
            return by_suffix[src.suffix]
    else:
        for folder in [src, *sorted(d for d in src.iterdir() if d.is_dir())]:
            if (folder / "gt.txt").is_file():
                return "gtsdb"
        from detection.data.formats.voc import ANNOTATION_DIRS

        for folder in [src, *sorted(d for d in src.iterdir() if d.is_dir())]:
            if any((folder / d).is_dir() and any((folder / d).glob("*.xml")) for d in ANNOTATION_DIRS):
                return "voc"
        if any(src.glob("*.xml")):
            return "voc"
        jsons = sorted(src.glob("*.json")) + sorted(src.glob("annotations/*.json"))
        kinds = {k for p in jsons[:3] if (k := _json_kind(p))}
        if "coco" in kinds:
            return "coco"
        if "kpjson" in kinds or any(_json_kind(p) == "kpjson" for p in sorted(src.glob("labels/*.json"))[:1]):
            return "kpjson"
        if any((src / n).is_file() for n in ("classes.txt", "obj.names", "data.yaml", "dataset.yaml")) or (src / "labels").is_dir():
            return "yolo"
        if any(src.glob("*.csv")):
            return "csv"
    raise DetectionError(f"{display_path(src)}: cannot tell its annotation format",
                         hint=f"pass --from with one of {', '.join(FORMATS)} (looked for gt.txt, VOC XML folders, COCO/kpjson JSON, "
                              "classes.txt/data.yaml, *.csv)")  # fmt: skip
