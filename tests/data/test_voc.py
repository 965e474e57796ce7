"""Pascal VOC reader/writer on real files: XML files written here, the sample, and the real BCCD set when present."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree
from PIL import Image

from detection.data.formats.gtsdb import read_gtsdb
from detection.data.formats.voc import read_voc, write_voc
from detection.data.table import has_box
from detection.errors import DetectionError

OBJ = """  <object><name>{name}</name><difficult>{difficult}</difficult>
    <bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox>
  </object>
"""


def voc_xml(filename: str, objects: str = "", size: str = "<size><width>100</width><height>80</height><depth>3</depth></size>") -> str:
    return f"<annotation>\n  <folder>JPEGImages</folder>\n  <filename>{filename}</filename>\n  {size}\n{objects}</annotation>\n"


def obj(name: str = "cat", xmin: object = 11, ymin: object = 21, xmax: object = 40, ymax: object = 50, difficult: object = 0) -> str:
    return OBJ.format(name=name, xmin=xmin, ymin=ymin, xmax=xmax, ymax=ymax, difficult=difficult)


@pytest.fixture
def voc(tmp_path: Path) -> Path:
    """A small VOC folder: a.jpg with a cat (VOC 11,21,40,50) and a difficult dog, b.jpg without object."""
    root = tmp_path / "voc"
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    for name in ("a", "b"):
        Image.new("RGB", (100, 80), (120, 60, 30)).save(root / "JPEGImages" / f"{name}.jpg")
    (root / "Annotations" / "a.xml").write_text(voc_xml("a.jpg", obj() + obj("dog", 1, 1, 100, 80, difficult=1)))
    (root / "Annotations" / "b.xml").write_text(voc_xml("b.jpg"))
    return root


def box_tuples(df) -> list[tuple]:
    rows = df[has_box(df)]
    return sorted(zip(rows["image"].map(lambda s: Path(s).stem), rows["xmin"], rows["ymin"], rows["xmax"], rows["ymax"], rows["label"], rows["difficult"]))


def test_reads_one_based_inclusive_as_continuous_corners(voc: Path) -> None:
    df, report = read_voc(voc)
    assert box_tuples(df) == [("a", 0.0, 0.0, 100.0, 80.0, "dog", 1), ("a", 10.0, 20.0, 40.0, 50.0, "cat", 0)]
    assert set(df["image"]) == {"JPEGImages/a.jpg", "JPEGImages/b.jpg"}
    empty = df[df["image"] == "JPEGImages/b.jpg"]
    assert len(empty) == 1 and empty["xmin"].isna().all() and empty["label"].iloc[0] == ""
    assert (report["images"], report["boxes"], report["empty_images"], report["skipped"]) == (2, 2, 1, 0)


def test_size_from_image_header_when_absent(voc: Path) -> None:
    Image.new("RGB", (64, 48)).save(voc / "JPEGImages" / "b.jpg")
    (voc / "Annotations" / "b.xml").write_text(voc_xml("b.jpg", obj(xmin=1, ymin=1, xmax=64, ymax=48), size=""))
    df, _ = read_voc(voc)
    b = df[df["image"] == "JPEGImages/b.jpg"].iloc[0]
    assert (b["width"], b["height"], b["xmax"], b["ymax"]) == (64, 48, 64.0, 48.0)


def test_size_disagreeing_with_image_raises(voc: Path) -> None:
    Image.new("RGB", (80, 100)).save(voc / "JPEGImages" / "b.jpg")
    with pytest.raises(DetectionError, match=r"b\.xml: <size>: says 100x80 but the image b\.jpg is 80x100"):
        read_voc(voc)


BAD_OBJECTS = [
    ("<object><difficult>0</difficult><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object>\n", "missing field <object>/<name>"),
    ("<object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin><ymax>9</ymax></bndbox></object>\n", "missing field <object>/<bndbox>/<xmax>"),
    (obj(xmin="left"), "<bndbox>/<xmin> is not a number: 'left'"),
    (obj(xmin=30, xmax=30), "zero or negative area box (xmin=30 ymin=21 xmax=30 ymax=50)"),
    (obj(ymin=60, ymax=50), "zero or negative area box"),
    (obj(xmax=130), "lies outside the 100x80 image"),
    (obj(difficult=2), "<difficult> must be 0 or 1"),
]


@pytest.mark.parametrize(("bad", "why"), BAD_OBJECTS)
def test_bad_object_names_file_line_and_field(voc: Path, bad: str, why: str) -> None:
    (voc / "Annotations" / "b.xml").write_text(voc_xml("b.jpg", obj("bird") + bad))
    with pytest.raises(DetectionError) as exc:
        read_voc(voc)
    assert f"{voc / 'Annotations' / 'b.xml'}:8: " in str(exc.value) and why in str(exc.value)  # the bad <object> starts on line 8
    df, report = read_voc(voc, on_error="skip")
    assert report["skipped"] == 1 and report["problems"][0]["where"] == f"{voc / 'Annotations' / 'b.xml'}:8"
    assert sorted(df.loc[has_box(df), "label"]) == ["bird", "cat", "dog"]


def test_malformed_xml(voc: Path) -> None:
    (voc / "Annotations" / "b.xml").write_text("<annotation><filename>b.jpg</filename>\n<object>\n")
    with pytest.raises(DetectionError, match=r"b\.xml:\d+: malformed XML"):
        read_voc(voc)
    df, report = read_voc(voc, on_error="skip")
    assert report["skipped"] == 1 and set(df["image"]) == {"JPEGImages/a.jpg"}


def test_external_entities_are_not_expanded(voc: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    doctype = f'<?xml version="1.0"?>\n<!DOCTYPE annotation [<!ENTITY xxe SYSTEM "file://{secret}">]>\n'
    (voc / "Annotations" / "b.xml").write_text(doctype + voc_xml("b.jpg", obj("&xxe;")))
    with pytest.raises(DetectionError, match=r"b\.xml:1: XML declares entities .*refused, never expanded"):
        read_voc(voc)
    df, _ = read_voc(voc, on_error="skip")
    assert not df["label"].str.contains("TOPSECRET").any()


def test_wrong_root_element(voc: Path) -> None:
    (voc / "Annotations" / "b.xml").write_text("<html><body/></html>")
    with pytest.raises(DetectionError, match=r"b\.xml:1: root element is <html>, not <annotation>"):
        read_voc(voc)


def test_missing_image(voc: Path) -> None:
    (voc / "JPEGImages" / "b.jpg").unlink()
    with pytest.raises(DetectionError, match=r"b\.xml: <filename>: image b\.jpg not found"):
        read_voc(voc)
    _, report = read_voc(voc, on_error="skip")
    assert report["images"] == 1 and report["skipped"] == 1


def test_filename_with_other_extension_resolves_by_stem(voc: Path) -> None:
    (voc / "Annotations" / "b.xml").write_text(voc_xml("b.png"))
    df, report = read_voc(voc)
    assert "JPEGImages/b.jpg" in set(df["image"]) and report["extension_substitutions"] == 1


def test_class_names_filter(voc: Path) -> None:
    with pytest.raises(DetectionError, match=r"a\.xml:\d+: class 'dog' is not in the dataset config's classes \['cat'\]"):
        read_voc(voc, class_names=["cat"])
    df, report = read_voc(voc, class_names=["cat"], on_error="skip")
    assert list(df.loc[has_box(df), "label"]) == ["cat"] and report["skipped"] == 1


def test_missing_folders_always_raise(tmp_path: Path) -> None:
    with pytest.raises(DetectionError, match="VOC folder not found"):
        read_voc(tmp_path / "nowhere", on_error="skip")
    (tmp_path / "x").mkdir()
    with pytest.raises(DetectionError, match="no folder of .xml files.*Annotations/\\*.xml and JPEGImages/"):
        read_voc(tmp_path / "x", on_error="skip")
    (tmp_path / "x" / "Annotations").mkdir()
    with pytest.raises(DetectionError, match="no folder of .xml files"):
        read_voc(tmp_path / "x", on_error="skip")


def test_gtsdb_to_voc_and_back(sample_ro: Path, tmp_path: Path) -> None:
    df, _ = read_gtsdb(sample_ro)
    out = write_voc(df, tmp_path / "voc")
    assert out == tmp_path / "voc" / "Annotations" and len(list(out.glob("*.xml"))) == 12
    first = sample_ro.joinpath("gt.txt").read_text().splitlines()[0].split(";")  # 00000.ppm;left;top;right;bottom;id
    box = etree.parse(str(out / "00000.xml")).getroot().find("object/bndbox")
    assert [box.findtext(k) for k in ("xmin", "ymin", "xmax", "ymax")] == [str(int(v) + 1) for v in first[1:5]]
    (tmp_path / "voc" / "JPEGImages").symlink_to(sample_ro)
    back, report = read_voc(tmp_path / "voc")
    assert box_tuples(back) == box_tuples(df)
    assert report["empty_images"] == 12 - len({line.split(";")[0] for line in sample_ro.joinpath("gt.txt").read_text().splitlines()})


def test_write_replaces_the_whole_folder(sample_ro: Path, tmp_path: Path) -> None:
    df, _ = read_gtsdb(sample_ro)
    write_voc(df, tmp_path)
    write_voc(df[df["image"].isin(["00000.ppm", "00001.ppm"])], tmp_path)
    assert sorted(p.name for p in (tmp_path / "Annotations").iterdir()) == ["00000.xml", "00001.xml"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left behind


def test_write_rejects_two_images_with_one_stem(sample_ro: Path, tmp_path: Path) -> None:
    df, _ = read_gtsdb(sample_ro)
    df.loc[df["image"] == "00001.ppm", "image"] = "other/00000.ppm"
    with pytest.raises(DetectionError, match="would share 00000.xml"):
        write_voc(df, tmp_path)


def test_real_bccd_zero_area_boxes(bccd_real: Path) -> None:
    with pytest.raises(DetectionError, match=r"BloodImage_00338\.xml:\d+: zero or negative area box"):
        read_voc(bccd_real)
    df, report = read_voc(bccd_real, class_names=["RBC", "WBC", "Platelets"], on_error="skip")
    assert [Path(p["where"].split(":")[0]).name for p in report["problems"]] == ["BloodImage_00338.xml", "BloodImage_00343.xml"]
    assert (report["images"], report["boxes"], report["skipped"]) == (364, 4888 - 2, 2)
    assert report["per_class"] == {"Platelets": 361, "RBC": 4155 - 2, "WBC": 372}
    assert set(zip(df["width"], df["height"])) == {(640, 480)}


def test_real_bccd_round_trip(bccd_real: Path, tmp_path: Path) -> None:
    df, _ = read_voc(bccd_real, on_error="skip")
    write_voc(df, tmp_path)
    (tmp_path / "JPEGImages").symlink_to(bccd_real / "JPEGImages")
    back, report = read_voc(tmp_path)
    assert report["skipped"] == 0 and box_tuples(back) == box_tuples(df)
    corners = ("xmin", "ymin", "xmax", "ymax")
    original = etree.parse(str(bccd_real / "Annotations" / "BloodImage_00000.xml")).getroot()
    written = etree.parse(str(tmp_path / "Annotations" / "BloodImage_00000.xml")).getroot()
    assert [[o.findtext(f"bndbox/{k}").strip() for k in corners] for o in written.iter("object")] == [
        [o.findtext(f"bndbox/{k}").strip() for k in corners] for o in original.iter("object")
    ]
