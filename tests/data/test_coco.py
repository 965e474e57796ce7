"""COCO writer/reader on real files, checked against pycocotools itself."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detection.data.formats.coco import read_coco, to_coco_dict, write_coco
from detection.data.formats.gtsdb import read_gtsdb
from detection.data.formats.voc import read_voc
from detection.data.table import has_box, normalize
from detection.errors import DetectionError

SAMPLE_NAMES = ["stop", "give way", "priority road", "no entry", "keep right"]


def box_tuples(df) -> list[tuple]:
    rows = df[has_box(df)]
    cols = ["image", "width", "height", "xmin", "ymin", "xmax", "ymax", "label", "difficult", "iscrowd"]
    return sorted(map(tuple, rows[cols].to_numpy().tolist()))


def coco_api(data: dict) -> COCO:
    api = COCO()
    api.dataset = copy.deepcopy(data)
    api.createIndex()
    return api


def test_dict_is_valid_coco_for_pycocotools(sample_ro: Path) -> None:
    df, report = read_gtsdb(sample_ro)
    data = to_coco_dict(df, SAMPLE_NAMES)
    api = coco_api(data)
    assert len(api.getImgIds()) == 12 and len(api.getAnnIds()) == report["boxes"]
    assert {c["id"]: c["name"] for c in api.loadCats(api.getCatIds())} == {i + 1: n for i, n in enumerate(SAMPLE_NAMES)}
    left, top, right, bottom, class_id = (int(v) for v in (sample_ro / "gt.txt").read_text().split("\n")[0].split(";")[1:])
    first = api.loadAnns(api.getAnnIds(imgIds=[1]))[0]
    assert first["bbox"] == [left, top, right + 1 - left, bottom + 1 - top]  # inclusive pixels -> [x, y, w, h]
    assert first["area"] == (right + 1 - left) * (bottom + 1 - top)
    assert first["category_id"] == SAMPLE_NAMES.index({14: "stop", 13: "give way", 12: "priority road", 17: "no entry", 38: "keep right"}[class_id]) + 1
    # The ground truth scored as detections must give a perfect AP: ids, boxes and areas are consistent.
    detections = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0} for a in data["annotations"]]
    evaluator = COCOeval(api, api.loadRes(detections), "bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    assert evaluator.stats[0] == pytest.approx(1.0)


def test_category_ids_follow_class_names(sample_ro: Path) -> None:
    df, _ = read_gtsdb(sample_ro)
    reverse = list(reversed(SAMPLE_NAMES))
    data = to_coco_dict(df, reverse)
    names = {c["id"]: c["name"] for c in data["categories"]}
    assert all(names[a["category_id"]] == reverse[a["category_id"] - 1] for a in data["annotations"])
    assert {names[a["category_id"]] for a in data["annotations"]} == set(df.loc[has_box(df), "label"])


def test_label_outside_class_names_raises(sample_ro: Path) -> None:
    df, _ = read_gtsdb(sample_ro)
    with pytest.raises(DetectionError, match=r"label\(s\) \['.*'\] are not in the dataset config's classes"):
        to_coco_dict(df, ["stop"])


def test_write_and_read_back(sample_ro: Path, tmp_path: Path) -> None:
    df, _ = read_gtsdb(sample_ro)
    df.loc[has_box(df).idxmax(), ["difficult", "iscrowd"]] = 1
    df.loc[has_box(df).idxmax(), "xmin"] = 1.25  # continuous coordinates survive exactly
    path = write_coco(df, tmp_path / "coco.json", SAMPLE_NAMES)
    back, report = read_coco(path)
    assert box_tuples(back) == box_tuples(normalize(df)) and report["skipped"] == 0
    assert list(back["image"].drop_duplicates()) == list(df["image"].drop_duplicates())
    assert report["empty_images"] == (df.groupby("image")["label"].apply(lambda s: (s == "").all())).sum()
    assert read_coco(tmp_path)[0].equals(back)  # a folder holding coco.json


BAD_ANNOTATIONS = [
    ({"image_id": 99}, "`image_id` 99 is not the id of an image"),
    ({"category_id": 77}, "`category_id` 77 is not the id of a category"),
    ({"bbox": [1, 2, 3]}, "`bbox` must be [x, y, width, height] numbers"),
    ({"bbox": [1, 2, "3", 4]}, "`bbox` must be [x, y, width, height] numbers"),
    ({"bbox": [10, 10, 0, 5]}, "zero or negative area box (bbox=[10, 10, 0, 5])"),
    ({"bbox": [100, 10, 50, 5]}, "lies outside the 128x96 image"),
    ({"iscrowd": 2}, "`iscrowd`, `difficult` and `truncated` must be 0 or 1"),
]


@pytest.mark.parametrize(("change", "why"), BAD_ANNOTATIONS)
def test_bad_annotation_names_file_and_entry(sample_ro: Path, tmp_path: Path, change: dict, why: str) -> None:
    data = to_coco_dict(read_gtsdb(sample_ro)[0], SAMPLE_NAMES)
    data["annotations"][1].update(change)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DetectionError) as exc:
        read_coco(path)
    assert f"{path}: annotations[1] (id 2): " in str(exc.value) and why in str(exc.value)
    df, report = read_coco(path, on_error="skip")
    assert report["skipped"] == 1 and report["boxes"] == len(data["annotations"]) - 1
    assert report["problems"][0]["where"] == f"{path}: annotations[1] (id 2)"


def test_unusable_files_always_raise(tmp_path: Path) -> None:
    with pytest.raises(DetectionError, match="COCO file not found"):
        read_coco(tmp_path / "missing.json", on_error="skip")
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [\n  {"id": 1,}\n]}')
    with pytest.raises(DetectionError, match=r"bad\.json:2: not valid JSON"):
        read_coco(bad, on_error="skip")
    bad.write_text('{"images": [], "annotations": []}')
    with pytest.raises(DetectionError, match=r"bad\.json: missing or non-list field `categories`"):
        read_coco(bad, on_error="skip")


def test_bad_image_entry(tmp_path: Path) -> None:
    data = {"images": [{"id": 1, "file_name": "a.jpg", "width": 0, "height": 10}], "annotations": [], "categories": [{"id": 1, "name": "cat"}]}
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DetectionError, match=r"c\.json: images\[0\]: `width` and `height` must be positive"):
        read_coco(path)


def test_real_bccd_through_coco(bccd_real: Path, tmp_path: Path) -> None:
    df, _ = read_voc(bccd_real, on_error="skip")
    back, report = read_coco(write_coco(df, tmp_path / "coco.json", ["RBC", "WBC", "Platelets"]))
    assert box_tuples(back) == box_tuples(df)
    assert (report["images"], report["boxes"]) == (364, 4886)
