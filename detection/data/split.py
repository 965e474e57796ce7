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
import re
from pathlib import Path

import pandas as pd

from detection.data.table import BOX_COLUMNS, has_box, read_table, summary, write_table
from detection.errors import DetectionError
from detection.io import write_json

log = logging.getLogger(__name__)


def split(
    annotations: Path, out: Path, valid: float = 0.25, seed: int = 0, *, mode: str = "ratio",
    train_list: Path | None = None, valid_list: Path | None = None, group: str | None = None,
) -> dict[str, object]:  # fmt: skip
    """Split ``annotations`` (canonical CSV) into ``out/train.csv`` and ``out/valid.csv``; write and return ``out/split.json``'s report.

    ``mode``: ``ratio`` (stratified by class, as above), ``lists`` (``train_list``/``valid_list``: text
    files of image names, paths or stems, e.g. VOC's ``ImageSets/Main/train.txt``/``val.txt``; images
    in neither are left out and counted), ``gtsdb`` (the official split: 00000-00599 train, the rest
    valid) or ``group`` (``group``: a regular expression on the image path whose first group, or whole
    match, names the scene/video; a scene's images all land on one side, the ratio counts scenes, and a
    class that >= 2 scenes hold reaches both sides where possible).
    """
    annotations, out = Path(annotations), Path(out)
    if mode != "ratio":
        return _split_explicit(annotations, out, mode, valid, seed, train_list, valid_list, group)
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
    return _write(df, set(names) - chosen, chosen, annotations, out, seed, valid, image_count, {"mode": "ratio"})


def _write(df: pd.DataFrame, train: set[str], chosen: set[str], annotations: Path, out: Path, seed: int, valid: float,
           image_count: dict[str, int], extra: dict[str, object]) -> dict[str, object]:  # fmt: skip
    order = ["image", *BOX_COLUMNS, "label"]
    is_valid = df["image"].isin(chosen)
    parts = {
        side: df[mask].sort_values(order, kind="stable", na_position="first")
        for side, mask in (("train", df["image"].isin(train)), ("valid", is_valid))
    }
    report = {**_report(annotations, parts, seed, valid, image_count), **extra}
    for side, part in parts.items():
        write_table(part, out / f"{side}.csv")
    write_json(out / "split.json", report)
    log.info("split %s: %d train / %d valid images (seed %d) -> %s", annotations, report["images"]["train"], report["images"]["valid"], seed, out)  # type: ignore[index]
    return report


def _split_explicit(
    annotations: Path, out: Path, mode: str, valid: float, seed: int,
    train_list: Path | None, valid_list: Path | None, group: str | None,
) -> dict[str, object]:  # fmt: skip
    df = read_table(annotations)
    boxed = df[has_box(df)]
    image_count = boxed.drop_duplicates(["image", "label"])["label"].value_counts().to_dict()
    names = sorted(df["image"].unique())
    extra: dict[str, object] = {"mode": mode}
    if mode == "gtsdb":
        from detection.data.formats.gtsdb import official_split

        chosen = {n for n in names if official_split(n) == "valid"}
        train = set(names) - chosen
    elif mode == "lists":
        if train_list is None or valid_list is None:
            raise DetectionError("split mode `lists` needs both lists", hint="set split.train_list and split.valid_list (e.g. ImageSets/Main/train.txt and val.txt)")
        train, missing_t = _listed(names, Path(train_list))
        chosen, missing_v = _listed(names, Path(valid_list))
        both = sorted(train & chosen)
        if both:
            raise DetectionError(f"{valid_list}: {len(both)} image(s) are in the train list too, e.g. {both[0]}", hint="an image belongs to one split")
        left = sorted(set(names) - train - chosen)
        if left:
            log.warning("split lists: %d image(s) are in neither list (left out), e.g. %s", len(left), left[0])
        extra |= {"unlisted_images": len(left), "listed_but_absent": {"train": missing_t, "valid": missing_v}}
    elif mode == "group":
        if not group:
            raise DetectionError("split mode `group` needs a regular expression", hint=r"set split.group, e.g. '^(.*)_\d+\.jpg$' for scene_0001.jpg")
        try:
            pattern = re.compile(group)
        except re.error as exc:
            raise DetectionError(f"split.group: not a regular expression ({exc}): {group!r}") from None
        scene = {}
        for n in names:
            m = pattern.search(n)
            scene[n] = (m.group(1) if m.groups() else m.group(0)) if m else n
        members: dict[str, list[str]] = {}
        for n in names:
            members.setdefault(scene[n], []).append(n)
        labels_of = {g: set(boxed.loc[boxed["image"].isin(ms), "label"]) for g, ms in members.items()}
        key = {g: hashlib.sha256(f"{seed}:{g}".encode()).hexdigest() for g in members}
        strata: dict[str, list[str]] = {}
        for g in sorted(members):
            rarest = min(labels_of[g], key=lambda c: (image_count[c], c)) if labels_of[g] else ""
            strata.setdefault(rarest, []).append(g)
        groups_valid = _assign(strata, key, valid)
        for label in sorted(image_count, key=lambda c: (image_count[c], c)):  # a class on one side only: move one scene
            having = sorted((g for g in members if label in labels_of[g]), key=lambda g: (len(members[g]), key[g]))
            sides = {g in groups_valid for g in having}
            if len(having) < 2 or len(sides) == 2:
                continue
            if sides == {True} and len(groups_valid) > 1:
                groups_valid.discard(having[0])
            elif sides == {False} and len(groups_valid) < len(members) - 1:
                groups_valid.add(having[0])
        chosen = {n for g in groups_valid for n in members[g]}
        train = set(names) - chosen
        extra |= {"group": group, "groups": {"train": len(members) - len(groups_valid), "valid": len(groups_valid)}}
    else:
        raise DetectionError(f"unknown split mode {mode!r}", hint="use ratio, lists, gtsdb or group")
    if not chosen or not train:
        raise DetectionError(f"{annotations}: split mode {mode} leaves the {'valid' if not chosen else 'train'} split empty",
                             hint="check the lists / pattern, or use split.mode: ratio")  # fmt: skip
    return _write(df, train, chosen, annotations, out, seed, valid, image_count, extra)


def _listed(names: list[str], path: Path) -> tuple[set[str], int]:
    """The table images that ``path`` lists (by path, file name or stem) and how many listed names match none."""
    if not path.is_file():
        raise DetectionError(f"split list not found: {path}", hint="set split.train_list / split.valid_list to existing text files")
    wanted = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    index: dict[str, str] = {}
    for n in names:
        for k in (n, Path(n).name, Path(n).stem):
            index.setdefault(k, n)
    found = {index[w] for w in wanted if w in index}
    missing = sum(w not in index for w in wanted)
    if missing:
        log.warning("%s: %d listed name(s) are not in the annotation table", path, missing)
    return found, missing


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
