"""Moved to ``detection.data.formats.coco``; this module re-exports it for existing imports."""

from detection.data.formats.coco import read_coco, to_coco_dict, write_coco

__all__ = ["read_coco", "to_coco_dict", "write_coco"]
