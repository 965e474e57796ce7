"""The bad-input suite: each case a real file made here, ending in a one-line error naming the file (and
line/field) with a hint, or a counted entry under the chosen policy, never a traceback or a partial output.

Fetch's bad inputs (a zip with ``../`` entries, a truncated download and a wrong sha256 from a real HTTP
server on 127.0.0.1) are in test_fetch.py.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from detection.cli import main
from detection.data.convert import convert, read, validate
from detection.errors import DetectionError
from tests.data.test_voc import obj, voc_xml


def image(path: Path, w: int = 100, h: int = 80, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(path.suffix, np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))
    path.write_bytes(data.tobytes())
    return path


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run the CLI in-process; return its one ``error:`` line (asserting exit status 2 and no traceback)."""
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert exc.value.code == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def voc(tmp_path: Path) -> Path:
    root = tmp_path / "voc"
    for i, name in enumerate(("a", "b")):
        image(root / "JPEGImages" / f"{name}.jpg", seed=i)
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"{name}.xml").write_text(voc_xml(f"{name}.jpg", obj("cat", 2, 3, 40, 50)))
    return root


def coco_file(root: Path, images: list[dict], annotations: list[dict], categories: list[dict] | None = None) -> Path:
    path = root / "coco.json"
    root.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories or [{"id": 1, "name": "cat"}]}))
    return path


def test_truncated_jpeg_is_found_by_validate_and_stops_convert(voc: Path, tmp_path: Path) -> None:
    data = (voc / "JPEGImages" / "b.jpg").read_bytes()
    (voc / "JPEGImages" / "b.jpg").write_bytes(data[: len(data) // 2])
    report = validate(voc, "voc")
    assert not report["ok"] and report["problem_counts"] == {"image_unreadable": 1}
    assert "b.jpg" in report["problems"][0]["where"] and "truncated JPEG" in report["problems"][0]["problem"]
    with pytest.raises(DetectionError, match=r"b\.jpg: cannot read image: truncated JPEG"):
        convert(voc, tmp_path / "out", "voc")
    assert not (tmp_path / "out").exists()  # no partial output
    skipped = convert(voc, tmp_path / "out", "voc", on_error="skip")
    assert skipped["images"] == 1 and skipped["skipped"] == 1


def test_zero_byte_image(voc: Path) -> None:
    (voc / "JPEGImages" / "b.jpg").write_bytes(b"")
    report = validate(voc, "voc")
    assert report["problem_counts"] == {"image_unreadable": 1} and "b.jpg" in report["problems"][0]["where"]


def test_text_file_named_jpg(tmp_path: Path) -> None:
    image(tmp_path / "a.jpg")
    (tmp_path / "b.jpg").write_text("not an image\n")
    path = coco_file(tmp_path, [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80}, {"id": 2, "file_name": "b.jpg", "width": 100, "height": 80}],
                     [{"id": 1, "image_id": 2, "category_id": 1, "bbox": [1, 1, 5, 5]}])  # fmt: skip
    with pytest.raises(DetectionError, match=r"b\.jpg: cannot read image: the file is corrupt or not an image"):
        read(path, "coco")


def test_coco_images_are_checked_for_existence_and_size(tmp_path: Path) -> None:
    image(tmp_path / "images" / "a.jpg", 64, 48)
    path = coco_file(tmp_path, [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80}, {"id": 2, "file_name": "gone.jpg", "width": 10, "height": 10}],
                     [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}])  # fmt: skip
    df, report = read(path, "coco", on_error="skip")
    assert report["image_root"] == str(tmp_path / "images")  # found, not the JSON's folder
    assert report["problem_counts"] == {"image_missing": 1, "size_mismatch": 1}
    assert any("is 64x48 but the annotation says 100x80" in p["problem"] for p in report["problems"])


def test_coco_category_id_zero_gaps_and_unsorted(tmp_path: Path) -> None:
    image(tmp_path / "a.jpg")
    cats = [{"id": 7, "name": "dog"}, {"id": 0, "name": "cat"}]
    path = coco_file(tmp_path, [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80}],
                     [{"id": 1, "image_id": 1, "category_id": 0, "bbox": [1, 1, 5, 5]}, {"id": 2, "image_id": 1, "category_id": 7, "bbox": [9, 9, 5, 5], "iscrowd": 1}], cats)  # fmt: skip
    df, report = read(path, "coco")
    assert sorted(df["label"]) == ["cat", "dog"] and df.loc[df["label"] == "dog", "iscrowd"].item() == 1


def test_coco_bbox_of_three_numbers(tmp_path: Path) -> None:
    image(tmp_path / "a.jpg")
    path = coco_file(tmp_path, [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80}], [{"id": 5, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3]}])
    with pytest.raises(DetectionError, match=r"coco\.json: annotations\[0\] \(id 5\): `bbox` must be \[x, y, width, height\]"):
        read(path, "coco")


@pytest.fixture
def yolo(tmp_path: Path) -> Path:
    image(tmp_path / "y" / "a.jpg")
    (tmp_path / "y" / "classes.txt").write_text("cat\n")
    return tmp_path / "y"


def test_yolo_line_with_four_fields(yolo: Path) -> None:
    (yolo / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2\n")
    with pytest.raises(DetectionError, match=r"a\.txt:2: expected 5 fields `class cx cy w h`.*got 4"):
        read(yolo, "yolo")


def test_yolo_value_above_one(yolo: Path) -> None:
    (yolo / "a.txt").write_text("0 1.5 0.5 0.2 0.2\n")
    with pytest.raises(DetectionError, match=r"a\.txt:1: value outside \[0, 1\].*pixels given\?"):
        read(yolo, "yolo")


def test_yolo_unknown_class_id_and_label_without_image(yolo: Path) -> None:
    (yolo / "a.txt").write_text("3 0.5 0.5 0.2 0.2\n")
    (yolo / "ghost.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    _, report = read(yolo, "yolo", on_error="skip")
    assert report["problem_counts"] == {"unknown_class": 1, "image_missing": 1}
    assert report["problems"][0]["where"].endswith("a.txt:1") and report["problems"][1]["where"].endswith("ghost.txt")


def test_outside_box_clip_policy(yolo: Path) -> None:
    (yolo / "a.txt").write_text("0 0.95 0.5 0.3 0.2\n")  # right edge at 1.1
    with pytest.raises(DetectionError, match="outside"):
        read(yolo, "yolo")
    df, report = read(yolo, "yolo", policy={"outside_image": "clip"})
    assert df["xmax"].item() == 100 and report["clipped_boxes"] == 1 and report["problems"] == []


def test_inverted_box(tmp_path: Path) -> None:
    image(tmp_path / "g" / "00000.jpg")
    (tmp_path / "g" / "gt.txt").write_text("00000.ppm;50;10;20;40;14\n")
    with pytest.raises(DetectionError, match=r"gt\.txt:1: zero or negative area box \(leftCol=50 topRow=10 rightCol=20"):
        read(tmp_path / "g", "gtsdb")


def test_unknown_class_name(voc: Path) -> None:
    with pytest.raises(DetectionError, match=r"a\.xml:\d+: class 'cat' is not in the dataset config's classes \['dog'\].*add it to `names`"):
        read(voc, "voc", ["dog"])


def test_image_without_annotation_and_duplicates_are_listed(voc: Path, tmp_path: Path) -> None:
    image(voc / "JPEGImages" / "c.jpg", seed=5)
    shutil.copy(voc / "JPEGImages" / "a.jpg", voc / "JPEGImages" / "b.jpg")  # same bytes
    xml = voc_xml("a.jpg", obj("cat", 2, 3, 40, 50) + obj("cat", 2, 3, 40, 50))
    (voc / "Annotations" / "a.xml").write_text(xml)
    report = validate(voc, "voc")
    assert report["problem_counts"] == {"duplicate_box": 1, "duplicate_image": 1, "image_without_annotation": 1}
    assert report["skipped"] == 0 and report["warnings"] == 3 and not report["ok"]  # kept and listed, never dropped silently
    dropped = convert(voc, tmp_path / "out", "voc", policy={"duplicate_box": "drop"})
    assert dropped["boxes"] == 2 and dropped["skipped"] == 1


def test_external_dtd_is_refused(voc: Path, tmp_path: Path) -> None:
    """An XXE through an external DTD (``SYSTEM``) rather than an inline entity (that one: test_voc.py)."""
    (tmp_path / "evil.dtd").write_text('<!ENTITY secret "TOPSECRET">')
    doctype = f'<?xml version="1.0"?>\n<!DOCTYPE annotation SYSTEM "file://{tmp_path / "evil.dtd"}">\n'
    (voc / "Annotations" / "b.xml").write_text(doctype + voc_xml("b.jpg", obj("cat")))
    df, report = read(voc, "voc", on_error="skip")
    assert report["problem_counts"] == {"malformed": 1} and report["problems"][0]["where"].endswith("b.xml:1")
    assert "TOPSECRET" not in df["label"].str.cat()


def test_billion_laughs_is_refused(voc: Path) -> None:
    lol = "".join(f'<!ENTITY lol{i} "{"&lol%d;" % (i - 1) * 10 if i else "lol"}">' for i in range(10))
    (voc / "Annotations" / "b.xml").write_text(f'<?xml version="1.0"?>\n<!DOCTYPE annotation [{lol}]>\n' + voc_xml("b.jpg", obj("&lol9;")))
    df, report = read(voc, "voc", on_error="skip")
    problem = report["problems"][0]["problem"]  # libxml2's own amplification limit, or our DTD refusal
    assert report["problem_counts"] == {"malformed": 1} and ("entity amplification" in problem or "XML declares entities" in problem)
    assert df["label"].str.len().max() < 10


def test_non_utf8_file_name_in_voc_folder(voc: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = os.fsdecode(b"caf\xe9")
    shutil.copy(voc / "Annotations" / "a.xml", voc / "Annotations" / f"{bad}.xml")
    with pytest.raises(DetectionError, match=r"caf\\xe9\.xml: file name is not valid UTF-8.*rename"):
        read(voc, "voc")
    line = cli(capsys, "convert", str(voc), str(voc.parent / "out"), "--from", "voc")
    assert "caf\\xe9.xml" in line and "not valid UTF-8" in line and not (voc.parent / "out").exists()


def test_dataset_config_with_misspelt_key(tmp_path: Path, capsys: pytest.CaptureFixture[str], voc: Path) -> None:
    (tmp_path / "ds.yaml").write_text("name: x\nformat: voc\nnmaes: [cat]\n")
    line = cli(capsys, "convert", str(voc), str(tmp_path / "out"), "--data", str(tmp_path / "ds.yaml"))
    assert "ds.yaml" in line and "nmaes" in line


def test_unsupported_from_lists_the_formats(voc: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = cli(capsys, "convert", str(voc), str(tmp_path / "out"), "--from", "nope")
    assert line == "error: invalid option value: --from 'nope': allowed: 'gtsdb', 'voc', 'coco', 'csv', 'yolo', 'kpjson' or 'auto'"


def test_auto_cannot_tell(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.md").write_text("hi")
    line = cli(capsys, "convert", str(tmp_path / "x"), str(tmp_path / "out"))
    assert "cannot tell its annotation format" in line and "--from" in line


def test_kpjson_without_image(tmp_path: Path) -> None:
    (tmp_path / "k" / "annotations").mkdir(parents=True)
    image(tmp_path / "k" / "images" / "a.jpg")
    (tmp_path / "k" / "annotations" / "a.json").write_text(json.dumps({"bboxes": [[1, 1, 9, 9]], "keypoints": [[[2, 2, 2]]]}))
    (tmp_path / "k" / "annotations" / "b.json").write_text(json.dumps({"bboxes": [[1, 1, 9, 9]], "keypoints": [[[2, 2, 2]]]}))
    with pytest.raises(DetectionError, match=r"b\.json: no image b\.\* in"):
        read(tmp_path / "k", "kpjson")
