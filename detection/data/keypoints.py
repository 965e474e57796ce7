"""Keypoints of a data set for a keypoint model: their names, flip map and OKS sigmas, and the
``(N, K, 3)`` arrays of the table's ``keypoints`` column.

The number of keypoints ``K`` comes from the dataset config's ``keypoints`` (names) or, without it,
from the table (every box with keypoints must have the same number). Names default to COCO person's
17 when ``K == 17``, else ``kp0 .. kp{K-1}``. The flip map (which keypoint a horizontal or vertical
mirror turns into which: ``left_eye`` <-> ``right_eye``) comes from ``keypoint_flip`` (pairs of names
or indices), or is COCO's when the names are COCO's; a flip with no map is an error (``flip_map``).
OKS sigmas (keypoint AP): ``keypoint_sigma`` (one value or one per keypoint), else COCO's for its 17
keypoints, else ``DEFAULT_SIGMA`` for every keypoint. A box without keypoints in a keypoint data set
gets ``K`` points of visibility 0 (the box trains the box head; its keypoints add no loss and are
ignored by keypoint AP).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from detection.config import DatasetConfig
from detection.data.table import has_box
from detection.errors import DetectionError

COCO_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
#: COCO's per-keypoint OKS sigmas (pycocotools' ``kpt_oks_sigmas``), in ``COCO_KEYPOINTS`` order
COCO_SIGMAS = tuple(v / 10 for v in (0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89))
#: the uniform OKS sigma of keypoints that are not COCO's (about the mean of COCO's 17: 0.067)
DEFAULT_SIGMA = 0.07


@dataclass(frozen=True)
class KeypointSpec:
    """``names`` (K), ``flip`` (mirrored keypoint k is original ``flip[k]``; None: no map), ``sigmas`` (K)."""

    names: tuple[str, ...]
    flip: tuple[int, ...] | None
    sigmas: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.names)

    def to_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "flip": None if self.flip is None else list(self.flip), "sigmas": list(self.sigmas)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KeypointSpec:
        return cls(tuple(d["names"]), None if d.get("flip") is None else tuple(int(i) for i in d["flip"]), tuple(float(s) for s in d["sigmas"]))


def table_count(table: pd.DataFrame, source: str) -> int | None:
    """The number of keypoints per box in ``table`` (None when no box has keypoints); mixed counts raise."""
    counts: dict[int, str] = {}
    boxed = table[has_box(table) & (table["keypoints"] != "")]
    for image, text in zip(boxed["image"], boxed["keypoints"], strict=True):
        counts.setdefault(len(json.loads(text)), image)
    if len(counts) > 1:
        shown = ", ".join(f"{k} (e.g. {img})" for k, img in sorted(counts.items()))
        raise DetectionError(f"{source}: boxes have different numbers of keypoints: {shown}", hint="every box needs the same keypoints (absent ones as [0, 0, 0])")
    return next(iter(counts), None)


def _index(item: str | int, names: tuple[str, ...], where: str) -> int:
    if isinstance(item, int):
        if not 0 <= item < len(names):
            raise DetectionError(f"{where}: keypoint index {item} is out of range (0..{len(names) - 1})")
        return item
    if item not in names:
        raise DetectionError(f"{where}: unknown keypoint {item!r}", hint=f"the keypoints are {', '.join(names)} (the dataset config's `keypoints`)")
    return names.index(item)


def _flip(pairs: list[tuple[str | int, str | int]] | None, names: tuple[str, ...]) -> tuple[int, ...] | None:
    if pairs is None:
        if names == COCO_KEYPOINTS:
            pairs = [(a, a.replace("left_", "right_")) for a in names if a.startswith("left_")]
        else:
            return None
    perm = list(range(len(names)))
    seen: set[int] = set()
    for a, b in pairs:
        i, j = _index(a, names, "dataset config: keypoint_flip"), _index(b, names, "dataset config: keypoint_flip")
        if {i, j} & seen:
            raise DetectionError(f"dataset config: keypoint_flip: keypoint {names[i] if i in seen else names[j]!r} is in two pairs")
        seen |= {i, j}
        perm[i], perm[j] = j, i
    return tuple(perm)


def oks_sigmas(value: float | list[float] | None, names: tuple[str, ...]) -> tuple[float, ...]:
    if value is None:
        return COCO_SIGMAS if names == COCO_KEYPOINTS else (DEFAULT_SIGMA,) * len(names)
    if isinstance(value, int | float):
        return (float(value),) * len(names)
    if len(value) != len(names):
        raise DetectionError(f"dataset config: keypoint_sigma has {len(value)} values for {len(names)} keypoints", hint="give one value, or one per keypoint")
    return tuple(float(v) for v in value)


def default_keypoint_names(count: int) -> tuple[str, ...]:
    """Names of ``count`` keypoints no config names: COCO person's for 17, else ``kp0 .. kp{count-1}``."""
    return COCO_KEYPOINTS if count == 17 else tuple(f"kp{k}" for k in range(count))


def keypoint_spec(data: DatasetConfig, table: pd.DataFrame | None = None, source: str = "annotation table") -> KeypointSpec:
    """The keypoints of ``data`` (its ``keypoints``, ``keypoint_flip``, ``keypoint_sigma``) and of ``table``."""
    found = table_count(table, source) if table is not None else None
    names = tuple(data.keypoints) if data.keypoints else None
    if names is not None and found is not None and len(names) != found:
        raise DetectionError(f"{source}: boxes have {found} keypoints, the dataset config's `keypoints` names {len(names)}", hint="make `keypoints` name every keypoint, in order")
    if names is None:
        if found is None:
            raise DetectionError(f"{source}: a keypoint model needs keypoints, and no box has any", hint="convert a data set with keypoints (kpjson, COCO person keypoints), or set `keypoints` in the dataset config")
        names = default_keypoint_names(found)
    if len(set(names)) != len(names):
        raise DetectionError(f"dataset config: keypoints: names are not unique: {sorted({n for n in names if names.count(n) > 1})}")
    return KeypointSpec(names, _flip(data.keypoint_flip, names), oks_sigmas(data.keypoint_sigma, names))


def keypoint_array(group: pd.DataFrame, k: int) -> np.ndarray:
    """``(N, K, 3)`` float32 ``[x, y, v]`` of one image's box rows; a box without keypoints gets v=0 points."""
    out = np.zeros((len(group), k, 3), np.float32)
    for i, (image, text) in enumerate(zip(group["image"], group["keypoints"], strict=True)):
        if not text:
            continue
        points = np.asarray(json.loads(text), np.float32).reshape(-1, 3)
        if len(points) != k:
            raise DetectionError(f"{image}: a box has {len(points)} keypoints, the keypoint model has {k}", hint="every box needs the same keypoints (absent ones as [0, 0, 0])")
        out[i] = points
    return out


def check_flip(spec_flip: tuple[int, ...] | None, probability: float, field: str) -> None:
    """Raise when a flip of ``probability`` > 0 (``field``) would mirror keypoints that have no flip map."""
    if probability > 0 and spec_flip is None:
        raise DetectionError(
            f"{field} = {probability:g} mirrors the image, but the keypoints have no flip map",
            hint="name the pairs a mirror swaps in the dataset config's `keypoint_flip` (e.g. [[left_eye, right_eye]]; [] when none swap), or set the flip to 0",
        )


def mirror(image: np.ndarray, boxes: np.ndarray, points: np.ndarray, flip: tuple[int, ...], horizontal: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``image`` (HWC), ``boxes`` (N, 4 corners) and ``points`` (N, K, 3) mirrored left-right (or top-bottom),
    keypoints renamed by ``flip`` (``left_eye`` becomes ``right_eye``); absent points stay at (0, 0)."""
    h, w = image.shape[:2]
    axis, size = (0, w) if horizontal else (1, h)
    image = np.ascontiguousarray(image[:, ::-1] if horizontal else image[::-1])
    boxes = boxes.copy()
    boxes[:, [axis, axis + 2]] = size - boxes[:, [axis + 2, axis]]
    points = points[:, list(flip)].copy()
    points[..., axis] = np.where(points[..., 2] > 0, size - points[..., axis], 0)
    return image, boxes, points
