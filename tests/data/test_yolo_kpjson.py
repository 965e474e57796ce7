"""YOLO txt and bbox + keypoint JSON: read, written, converted to COCO (keypoints too), and the layouts users have."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from detection.data.convert import convert, read
from detection.data.formats.coco import read_coco, write_coco
from detection.data.formats.kpjson import read_kpjson, write_kpjson
from detection.data.formats.yolo import label_path, read_yolo
from detection.data.table import has_box
from detection.errors import DetectionError


def image(path: Path, w: int = 200, h: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.random.default_rng(len(path.name)).integers(0, 255, (h, w, 3), dtype=np.uint8))
    return path


@pytest.fixture
def yolo(tmp_path: Path) -> Path:
    root = tmp_path / "yolo"
    for split in ("train", "val"):
        image(root / "images" / split / f"{split}1.jpg")
    image(root / "images" / "train" / "empty.jpg")
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    (root / "labels" / "train" / "train1.txt").write_text("0 0.5 0.5 0.2 0.4\n\n1 0.25 0.25 0.1 0.1 0.93\n")
    (root / "labels" / "val" / "val1.txt").write_text("1 0.5 0.5 1.0 1.0\n")
    (root / "data.yaml").write_text(yaml.safe_dump({"path": ".", "train": "images/train", "val": "images/val", "names": {0: "cat", 1: "dog"}}))
    return root


def test_yolo_ultralytics_layout(yolo: Path) -> None:
    df, report = read_yolo(yolo)
    boxed = df[has_box(df)]
    assert report["class_names"] == ["cat", "dog"] and report["images"] == 3 and report["boxes"] == 3 and report["empty_images"] == 1
    cat = boxed[boxed["label"] == "cat"].iloc[0]
    assert (cat["xmin"], cat["ymin"], cat["xmax"], cat["ymax"]) == pytest.approx((80, 30, 120, 70))  # 200x100 image
    assert label_path(yolo / "images" / "train" / "a.jpg") == yolo / "labels" / "train" / "a.txt"


def test_yolo_names_list_and_classes_txt_beside_images(tmp_path: Path) -> None:
    image(tmp_path / "a.png", 100, 100)
    (tmp_path / "a.txt").write_text("2 0.5 0.5 0.5 0.5\n")
    (tmp_path / "classes.txt").write_text("x\ny\nz\n")
    df, report = read(tmp_path, "auto")
    assert report["format"] == "yolo" and list(df["label"]) == ["z"] and df["xmin"].iloc[0] == pytest.approx(25)


def test_yolo_written_reads_back(yolo: Path, tmp_path: Path) -> None:
    first, _ = read(yolo, "yolo")
    convert(yolo, tmp_path / "out", "yolo", None, to=("yolo",))
    written = tmp_path / "out" / "yolo"
    assert (written / "classes.txt").read_text() == "cat\ndog\n"
    assert sorted(p.name for p in (written / "images").iterdir()) == ["empty.jpg", "train1.jpg", "val1.jpg"]
    assert (written / "labels" / "empty.txt").read_text() == ""
    back, report = read(written, "auto")
    assert report["problems"] == []
    key = ["label", "xmin", "ymin", "xmax", "ymax"]
    assert back[has_box(back)][key].round(3).sort_values(key).values.tolist() == first[has_box(first)][key].round(3).sort_values(key).values.tolist()


@pytest.fixture
def kp(tmp_path: Path) -> Path:
    root = tmp_path / "kp"
    image(root / "images" / "p1.jpg", 120, 80)
    image(root / "images" / "p2.jpg", 120, 80)
    (root / "annotations").mkdir()
    (root / "annotations" / "p1.json").write_text(json.dumps(
        {"bboxes": [[10, 10, 50, 70], [60, 5, 110, 75]], "keypoints": [[[20, 20, 2], [30, 40, 1], [0, 0, 0]], [[70, 10, 2], [80, 30, 2], [90, 60, 2]]]}))
    (root / "annotations" / "p2.json").write_text(json.dumps({"bboxes": [], "keypoints": []}))
    return root


def test_kpjson_read_keeps_keypoints(kp: Path) -> None:
    df, report = read_kpjson(kp)
    assert report["images"] == 2 and report["boxes"] == 2 and report["empty_images"] == 1 and report["num_keypoints"] == [3]
    boxed = df[has_box(df)]
    assert set(boxed["label"]) == {"person"}
    assert json.loads(boxed["keypoints"].iloc[0]) == [[20, 20, 2], [30, 40, 1], [0, 0, 0]]


def test_kpjson_to_coco_person_keypoints_and_back(kp: Path, tmp_path: Path) -> None:
    df, _ = read(kp, "auto")
    path = write_coco(df, tmp_path / "person_keypoints.json", ["person"], kp, keypoint_names=["nose", "left_eye", "right_eye"])
    data = json.loads(path.read_text())
    ann = data["annotations"][0]
    assert ann["keypoints"] == [20, 20, 2, 30, 40, 1, 0, 0, 0] and ann["num_keypoints"] == 2
    assert data["categories"] == [{"id": 1, "name": "person", "supercategory": "", "keypoints": ["nose", "left_eye", "right_eye"], "skeleton": []}]
    from pycocotools.coco import COCO

    COCO(str(path))  # a valid COCO file
    back, report = read_coco(path)
    assert report["keypoint_names"] == ["nose", "left_eye", "right_eye"]
    assert list(back[has_box(back)]["keypoints"]) == list(df[has_box(df)]["keypoints"])
    write_kpjson(back, tmp_path / "kp2", Path(str(report["image_root"])))
    again, _ = read_kpjson(tmp_path / "kp2")
    assert list(again[has_box(again)]["keypoints"]) == list(df[has_box(df)]["keypoints"])


def test_kpjson_bad_keypoint_is_named(kp: Path) -> None:
    (kp / "annotations" / "p2.json").write_text(json.dumps({"bboxes": [[1, 1, 5, 5]], "keypoints": [[[1, 2, 7]]]}))
    with pytest.raises(DetectionError, match=r"p2\.json: keypoints\[0\]: each keypoint is \[x, y, v\] with v 0"):
        read_kpjson(kp)


def test_voc_common_folder_names(tmp_path: Path) -> None:
    from tests.data.test_voc import voc_xml, obj

    for ann, img in (("annots", "images"), ("annotations", "images")):
        root = tmp_path / ann
        image(root / img / "a.jpg", 100, 80)
        (root / ann).mkdir()
        (root / ann / "a.xml").write_text(voc_xml("a.jpg", obj("cat")))
        df, report = read(root, "auto")
        assert report["format"] == "voc" and list(df.loc[has_box(df), "label"]) == ["cat"] and df["image"].iloc[0] == f"{img}/a.jpg"
    other = tmp_path / "custom"
    image(other / "pics" / "a.jpg", 100, 80)
    (other / "xmls").mkdir()
    (other / "xmls" / "a.xml").write_text(voc_xml("a.jpg", obj("cat")))
    df, _ = read(other, "voc", options={"annotations_dir": "xmls", "images_dir": "pics"})
    assert df["image"].iloc[0] == "pics/a.jpg"


def test_csv_tensorflow_layout_and_column_mapping(tmp_path: Path) -> None:
    image(tmp_path / "a.jpg", 64, 48)
    (tmp_path / "labels.csv").write_text("filename,width,height,class,xmin,ymin,xmax,ymax\na.jpg,64,48,cat,1,2,30,40\n")
    df, report = read(tmp_path / "labels.csv", "auto")
    assert report["format"] == "csv" and df[["xmin", "ymin", "xmax", "ymax", "label"]].values.tolist() == [[1, 2, 30, 40, "cat"]]
    (tmp_path / "labels.csv").write_text("img,what,a,b,c,d\na.jpg,dog,1,2,30,40\n")  # no size columns: from the image
    mapping = {"image": "img", "label": "what", "xmin": "a", "ymin": "b", "xmax": "c", "ymax": "d"}
    df, _ = read(tmp_path / "labels.csv", "csv", options={"columns": mapping})
    assert (df["width"].iloc[0], df["height"].iloc[0], df["label"].iloc[0]) == (64, 48, "dog")


def test_convert_without_config_writes_one(yolo: Path, tmp_path: Path) -> None:
    from detection.config import load_dataset_config

    report = convert(yolo, tmp_path / "interim", "auto", None, write_config=tmp_path / "ds.yaml")
    config = load_dataset_config(tmp_path / "ds.yaml")
    assert config.names == ["cat", "dog"] and config.format == "yolo" and Path(config.root) == yolo.resolve() or Path(config.root) == yolo
    assert report["class_names"] == ["cat", "dog"]


def test_convert_rebases_images_onto_the_config_root(tmp_path: Path) -> None:
    image(tmp_path / "ds" / "images" / "a.jpg")  # COCO file_names relative to images/, config root one level up
    (tmp_path / "ds" / "coco.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg", "width": 200, "height": 100}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 2, 30, 40]}],
        "categories": [{"id": 3, "name": "cat"}],
    }))  # fmt: skip
    report = convert(tmp_path / "ds" / "coco.json", tmp_path / "out", "coco", ["cat"], images_root=tmp_path / "ds")
    from detection.data.table import read_table

    table = read_table(tmp_path / "out" / "annotations.csv")
    assert list(table["image"]) == ["images/a.jpg"] and report["rebased_from"] == str(tmp_path / "ds" / "images")
    assert (tmp_path / "ds" / table["image"].iloc[0]).is_file()


def test_convert_kpjson_without_config_writes_keypoint_names(kp: Path, tmp_path: Path) -> None:
    from detection.config import load_dataset_config
    from detection.data.keypoints import keypoint_spec

    convert(kp, tmp_path / "interim", "kpjson", None, write_config=tmp_path / "ds.yaml")
    config = load_dataset_config(tmp_path / "ds.yaml")
    assert config.keypoints == ["kp0", "kp1", "kp2"] and "# keypoint_flip:" in (tmp_path / "ds.yaml").read_text()
    assert keypoint_spec(config).names == ("kp0", "kp1", "kp2")  # the written config is one the keypoint model takes
