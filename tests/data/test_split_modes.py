"""Split by explicit lists (GTSDB official, VOC ImageSets, text files) and group-aware (a scene never on both sides)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from detection.data.formats.gtsdb import read_gtsdb
from detection.data.formats.voc import read_voc
from detection.data.split import split
from detection.data.table import read_table, write_table
from detection.errors import DetectionError


def test_gtsdb_official_split(gtsdb_real: Path, tmp_path: Path) -> None:
    df, _ = read_gtsdb(gtsdb_real)
    report = split(write_table(df, tmp_path / "a.csv"), tmp_path / "out", mode="gtsdb")
    assert report["images"] == {"train": 600, "valid": 300} and report["mode"] == "gtsdb"
    assert max(read_table(tmp_path / "out" / "train.csv")["image"]) == "00599.jpg"
    assert sum(report["boxes"].values()) == 1213  # type: ignore[union-attr]


def test_voc_image_sets_as_lists(bccd_real: Path, tmp_path: Path) -> None:
    df, report = read_voc(bccd_real, on_error="skip")
    sets = report["image_sets"]
    result = split(write_table(df, tmp_path / "a.csv"), tmp_path / "out", mode="lists", train_list=sets["train"], valid_list=sets["val"])
    n_train = len(Path(sets["train"]).read_text().split())
    n_val = len(Path(sets["val"]).read_text().split())
    assert result["images"] == {"train": n_train, "valid": n_val}
    assert result["unlisted_images"] == 364 - n_train - n_val  # the test list: left out, counted
    per_class = json.loads((tmp_path / "out" / "split.json").read_text())["per_class"]
    assert set(per_class) == {"Platelets", "RBC", "WBC"} and all(v["valid"] > 0 for v in per_class.values())


def _scenes(tmp_path: Path) -> Path:
    rows = []
    for scene in range(12):
        for frame in range(5):
            rows.append({"image": f"scene{scene:02d}_{frame:04d}.jpg", "width": 100, "height": 100,
                         "xmin": 1, "ymin": 1, "xmax": 20, "ymax": 20, "label": "car" if scene % 3 else "bus"})  # fmt: skip
    return write_table(pd.DataFrame(rows), tmp_path / "a.csv")


def test_group_split_keeps_each_scene_on_one_side(tmp_path: Path) -> None:
    report = split(_scenes(tmp_path), tmp_path / "out", valid=0.25, mode="group", group=r"^(scene\d+)_")
    sides = {side: set(read_table(tmp_path / "out" / f"{side}.csv")["image"].str.extract(r"^(scene\d+)_")[0]) for side in ("train", "valid")}
    assert not sides["train"] & sides["valid"] and len(sides["train"] | sides["valid"]) == 12
    assert report["groups"] == {"train": 9, "valid": 3} and report["images"] == {"train": 45, "valid": 15}
    assert report["per_class"]["bus"]["valid"] > 0 and report["per_class"]["car"]["valid"] > 0  # stratified by scene class
    again = split(tmp_path / "a.csv", tmp_path / "out2", valid=0.25, mode="group", group=r"^(scene\d+)_")
    assert again["per_class"] == report["per_class"]  # deterministic for a seed


def test_group_split_puts_a_rare_class_on_both_sides(tmp_path: Path) -> None:
    rows = [{"image": f"s{g:02d}_{f}.jpg", "width": 50, "height": 50, "xmin": 1, "ymin": 1, "xmax": 9, "ymax": 9,
             "label": "car"} for g in range(10) for f in range(3)]  # fmt: skip
    rows += [{**rows[3 * g], "label": "bus"} for g in (2, 7)]  # two scenes also hold a bus, one a (rarer) tram:
    rows += [{**rows[6], "label": "tram"}]  # strata by rarest class leave both bus scenes alone in theirs (to train)
    report = split(write_table(pd.DataFrame(rows), tmp_path / "a.csv"), tmp_path / "out", valid=0.2, mode="group", group=r"^(s\d+)_")
    assert report["per_class_images"]["bus"] == {"train": 1, "valid": 1}


def test_lists_refuse_an_image_on_both_sides(tmp_path: Path) -> None:
    table = _scenes(tmp_path)
    (tmp_path / "t.txt").write_text("scene00_0000\nscene00_0001\n")
    (tmp_path / "v.txt").write_text("scene00_0001.jpg\n")
    with pytest.raises(DetectionError, match=re.escape("1 image(s) are in the train list too, e.g. scene00_0001.jpg")):
        split(table, tmp_path / "out", mode="lists", train_list=tmp_path / "t.txt", valid_list=tmp_path / "v.txt")
    with pytest.raises(DetectionError, match="not a regular expression"):
        split(table, tmp_path / "out", mode="group", group="(")
