"""The split stage: a deterministic, stratified train/valid split of the canonical table, by image.

- By image: all rows (boxes) of an image land on the same side.
- Deterministic: each image's place in its stratum is a hash of ``(seed, image path)``, so the same
  seed gives the same split whatever the row order of the file, and adding images moves few others.
- Stratified: images are grouped by their rarest class (fewest images; ties by name); images without
  a box form their own stratum. Each stratum of ``n >= 2`` images sends between 1 and ``n - 1`` to
  valid (``valid`` of the total, largest remainders first); a lone image goes to train. A repair pass
  then moves single images so that every class with >= 2 images is on both sides.
Coordinates are passed through untouched (the table's 0-based continuous corners).
"""

from __future__ import annotations

import hashlib
import logging
import math
from pathlib import Path

import pandas as pd

from detection.data.table import BOX_COLUMNS, has_box, read_table, summary, write_table
from detection.errors import DetectionError
from detection.io import write_json

log = logging.getLogger(__name__)


def split(annotations: Path, out: Path, valid: float = 0.25, seed: int = 0) -> dict[str, object]:
    """Split ``annotations`` (canonical CSV) into ``out/train.csv`` and ``out/valid.csv``; write and return ``out/split.json``'s report."""
    annotations, out = Path(annotations), Path(out)
    if not 0.0 < valid < 1.0:
        raise DetectionError(f"valid ratio must lie strictly between 0 and 1, got {valid}", hint="set --valid (split.valid in params.yaml), e.g. 0.2")
    df = read_table(annotations)
    boxed = df[has_box(df)]
    if boxed.empty:
        raise DetectionError(f"{annotations}: the annotation table holds no box", hint="run the convert stage on a data set with annotations")
    labels_of = {str(k): set(v) for k, v in boxed.groupby("image")["label"]}
    image_count = boxed.drop_duplicates(["image", "label"])["label"].value_counts().to_dict()
    names = sorted(df["image"].unique())
    key = {name: hashlib.sha256(f"{seed}:{name}".encode()).hexdigest() for name in names}
    strata: dict[str, list[str]] = {}
    for name in names:
        rarest = min(labels_of[name], key=lambda c: (image_count[c], c)) if name in labels_of else ""
        strata.setdefault(rarest, []).append(name)
    chosen = _assign(strata, key, valid)
    _repair(chosen, labels_of, image_count, key)
    if not chosen:
        raise DetectionError(f"{annotations}: the valid split would be empty ({len(names)} images, valid={valid})",
                             hint="raise --valid (split.valid), or add images: a class needs >= 2 images to reach valid")  # fmt: skip
    if len(chosen) == len(names):
        raise DetectionError(f"{annotations}: the train split would be empty ({len(names)} images, valid={valid})", hint="lower --valid (split.valid)")
    order = ["image", *BOX_COLUMNS, "label"]
    is_valid = df["image"].isin(chosen)
    parts = {
        side: df[mask].sort_values(order, kind="stable", na_position="first")
        for side, mask in (("train", ~is_valid), ("valid", is_valid))
    }
    report = _report(annotations, parts, seed, valid, image_count)
    for side, part in parts.items():
        write_table(part, out / f"{side}.csv")
    write_json(out / "split.json", report)
    log.info("split %s: %d train / %d valid images (seed %d) -> %s", annotations, report["images"]["train"], report["images"]["valid"], seed, out)  # type: ignore[index]
    return report


def _assign(strata: dict[str, list[str]], key: dict[str, str], valid: float) -> set[str]:
    """Pick the valid images: per stratum a quota by largest remainders, clamped to ``1..n-1`` (0 for ``n == 1``)."""
    total = sum(len(v) for v in strata.values())
    exact = {s: len(v) * valid for s, v in strata.items()}
    quota = {s: math.floor(e) for s, e in exact.items()}
    extra = max(0, round(total * valid) - sum(quota.values()))
    for s in sorted(strata, key=lambda s: (-(exact[s] - quota[s]), s))[:extra]:
        quota[s] += 1
    chosen: set[str] = set()
    for s, members in strata.items():
        n = len(members)
        q = 0 if n < 2 else min(max(quota[s], 1), n - 1)
        chosen.update(sorted(members, key=key.__getitem__)[:q])
    return chosen


def _repair(chosen: set[str], labels_of: dict[str, set[str]], image_count: dict[str, int], key: dict[str, str]) -> None:
    """Move single images (in place) until every class with >= 2 images is in both splits, where possible."""
    members: dict[str, list[str]] = {}
    for name, labels in labels_of.items():
        for label in labels:
            members.setdefault(label, []).append(name)
    for _ in range(3):
        moved = False
        for label in sorted(members, key=lambda c: (image_count[c], c)):
            if image_count[label] < 2:
                continue
            in_valid = [m for m in members[label] if m in chosen]
            if in_valid and len(in_valid) < len(members[label]):
                continue
            source = in_valid or members[label]  # every image of the class is on one side

            def harm(name: str) -> tuple[int, str]:
                side = name in chosen
                lone = sum(1 for c in labels_of[name] if c != label and sum((m in chosen) == side for m in members[c]) == 1)
                return lone, key[name]

            best = min(source, key=harm)
            (chosen.discard if best in chosen else chosen.add)(best)
            moved = True
        if not moved:
            return


def _report(annotations: Path, parts: dict[str, pd.DataFrame], seed: int, valid: float, image_count: dict[str, int]) -> dict[str, object]:
    sums = {side: summary(part) for side, part in parts.items()}
    classes = sorted(image_count)
    per_class = {c: {side: sums[side]["per_class"].get(c, 0) for side in parts} for c in classes}  # type: ignore[attr-defined]
    class_images = {
        c: {side: int(part.loc[has_box(part) & (part["label"] == c), "image"].nunique()) for side, part in parts.items()}
        for c in classes
    }
    missing = [c for c in classes if image_count[c] >= 2 and min(class_images[c].values()) == 0]
    single = [c for c in classes if image_count[c] < 2]
    if single:
        log.warning("%d class(es) have a single image and are only in train: %s", len(single), single)
    if missing:
        log.warning("could not put class(es) %s in both splits", missing)
    n_images = {side: sums[side]["images"] for side in parts}
    return {
        "annotations": str(annotations),
        "seed": seed,
        "valid_ratio": valid,
        "valid_fraction": round(n_images["valid"] / (n_images["train"] + n_images["valid"]), 4),  # type: ignore[operator]
        "images": n_images,
        "boxes": {side: sums[side]["boxes"] for side in parts},
        "empty_images": {side: sums[side]["empty_images"] for side in parts},
        "per_class": per_class,
        "per_class_images": class_images,
        "single_image_classes": single,
        "classes_missing_from_a_split": missing,
    }
