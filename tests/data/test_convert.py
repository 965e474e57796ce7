"""The convert and validate stages end to end on real files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lxml import etree

from detection.data.convert import READERS, WRITERS, convert, read_csv, validate
from detection.data.formats.gtsdb import GTSDB_CLASSES, read_gtsdb
from detection.data.table import has_box, read_table, write_table
from detection.errors import DetectionError

SAMPLE_NAMES = ["stop", "give way", "priority road", "no entry", "keep right"]


def box_tuples(df) -> list[tuple]:
    rows = df[has_box(df)]
    return sorted(zip(rows["image"], rows["xmin"], rows["ymin"], rows["xmax"], rows["ymax"], rows["label"]))


def test_readers_and_writers_cover_the_config_formats() -> None:
    assert set(READERS) == {"gtsdb", "voc", "coco", "csv", "yolo", "kpjson"} and set(WRITERS) == set(READERS)


def test_convert_writes_table_voc_coco_and_report(sample_ro: Path, tmp_path: Path) -> None:
    out = tmp_path / "interim"
    report = convert(sample_ro, out, "gtsdb", SAMPLE_NAMES)
    expected, _ = read_gtsdb(sample_ro)
    table = read_table(out / "annotations.csv")
    assert box_tuples(table) == box_tuples(expected) and table["image"].nunique() == 12
    xmls = sorted(p.name for p in (out / "voc" / "Annotations").glob("*.xml"))
    assert xmls == [f"{i:05d}.xml" for i in range(12)]
    coco = json.loads((out / "coco.json").read_text())
    assert [c["name"] for c in coco["categories"]] == SAMPLE_NAMES
    assert len(coco["images"]) == 12 and len(coco["annotations"]) == report["boxes"] == len(table[has_box(table)])
    assert json.loads((out / "report.json").read_text()) == report
    assert report["skipped"] == 0 and report["class_names"] == SAMPLE_NAMES and report["image_root"] == str(sample_ro)
    assert report["empty_images"] == 12 - table.loc[has_box(table), "image"].nunique()
    assert sorted(p.name for p in out.iterdir()) == ["annotations.csv", "coco.json", "report.json", "report.md", "voc"]
    assert sorted(p.name for p in (out / "voc").iterdir()) == ["Annotations", "JPEGImages"]  # a complete VOC folder


def test_outputs_read_back_through_their_readers(sample_ro: Path, tmp_path: Path) -> None:
    convert(sample_ro, tmp_path / "a", "gtsdb", SAMPLE_NAMES)
    expected = box_tuples(read_table(tmp_path / "a" / "annotations.csv"))
    from_csv = convert(tmp_path / "a" / "annotations.csv", tmp_path / "b", "csv", SAMPLE_NAMES)
    from_coco = convert(tmp_path / "a" / "coco.json", tmp_path / "c", "coco", SAMPLE_NAMES)
    for name, report in (("b", from_csv), ("c", from_coco)):
        assert box_tuples(read_table(tmp_path / name / "annotations.csv")) == expected
        assert report["images"] == 12


def test_other_writers_on_request(sample_ro: Path, tmp_path: Path) -> None:
    report = convert(sample_ro, tmp_path, "gtsdb", SAMPLE_NAMES, to=("gtsdb",))
    assert set(report["outputs"]) == {"csv", "gtsdb"}
    assert (tmp_path / "gtsdb" / "gt.txt").read_text() == (sample_ro / "gt.txt").read_text()
    with pytest.raises(DetectionError, match=r"unknown output format\(s\) \['nope'\]"):
        convert(sample_ro, tmp_path, "gtsdb", SAMPLE_NAMES, to=("nope",))


def test_unknown_input_format(sample_ro: Path, tmp_path: Path) -> None:
    with pytest.raises(DetectionError, match=r"unknown annotation format 'nope'.*gtsdb, voc, coco, csv, yolo, kpjson or auto"):
        convert(sample_ro, tmp_path, "nope", None)


def test_failed_convert_keeps_the_previous_outputs(sample: Path, tmp_path: Path) -> None:
    out = tmp_path / "interim"
    convert(sample, out, "gtsdb", SAMPLE_NAMES)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with (sample / "gt.txt").open("a") as f:
        f.write("00001.ppm;1;2;3\n")
    with pytest.raises(DetectionError, match=r"gt\.txt:\d+: expected 6 fields"):
        convert(sample, out, "gtsdb", SAMPLE_NAMES)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_skip_mode_reports_the_skipped_line(sample: Path, tmp_path: Path) -> None:
    lines = (sample / "gt.txt").read_text().splitlines()
    (sample / "gt.txt").write_text("\n".join([*lines, "00001.ppm;1;2;3;4;99"]) + "\n")
    report = convert(sample, tmp_path, "gtsdb", SAMPLE_NAMES, on_error="skip")
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk["skipped"] == 1 and on_disk["boxes"] == len(lines) == report["boxes"]
    assert on_disk["problems"] == [{"where": f"{sample / 'gt.txt'}:{len(lines) + 1}", "problem": "unknown class id 99 (GTSDB class ids are 0..42)",
                                    "kind": "unknown_class", "action": "dropped"}]


def test_no_box_at_all_is_an_error(sample: Path, tmp_path: Path) -> None:
    (sample / "gt.txt").write_text("")
    with pytest.raises(DetectionError, match="no box was read as gtsdb"):
        convert(sample, tmp_path / "out", "gtsdb", SAMPLE_NAMES)
    assert not (tmp_path / "out").exists()


def test_default_class_names_of_gtsdb_are_the_official_ones(sample_ro: Path, tmp_path: Path) -> None:
    report = convert(sample_ro, tmp_path, "gtsdb", None)
    coco = json.loads((tmp_path / "coco.json").read_text())
    assert report["class_names"] == list(GTSDB_CLASSES) and len(coco["categories"]) == 43
    stop = next(c["id"] for c in coco["categories"] if c["name"] == "stop")
    assert stop == 14 + 1  # official id + 1 (0 is the background)


def test_csv_rows_are_checked(sample_ro: Path, tmp_path: Path) -> None:
    df, _ = read_gtsdb(sample_ro)
    first = int(has_box(df).idxmax())
    df.loc[first, "xmax"] = df.loc[first, "xmin"] - 5
    df.loc[first + 1, "label"] = ""
    path = write_table(df, tmp_path / "annotations.csv")
    with pytest.raises(DetectionError, match=rf"annotations\.csv:{first + 2}: zero or negative area box"):
        read_csv(path)
    out, report = read_csv(tmp_path, on_error="skip")  # a folder means its annotations.csv
    assert [p["where"] for p in report["problems"]] == [f"{path}:{first + 2}", f"{path}:{first + 3}"]
    assert "incomplete box" in report["problems"][1]["problem"]
    assert report["boxes"] == int(has_box(df).sum()) - 1 and report["images"] == 12


def test_validate_clean_sample(sample_ro: Path) -> None:
    report = validate(sample_ro, "gtsdb", SAMPLE_NAMES)
    assert report["ok"] and report["skipped"] == 0 and report["images"] == 12


def test_validate_reports_every_problem(sample: Path, tmp_path: Path) -> None:
    lines = (sample / "gt.txt").read_text().splitlines()
    (sample / "gt.txt").write_text("\n".join(["bad", *lines, "00001.ppm;5;5;1;1;14"]) + "\n")
    report = validate(sample, "gtsdb", SAMPLE_NAMES, report_dir=tmp_path / "reports")
    assert not report["ok"] and report["skipped"] == 2
    assert [p["where"].rsplit(":", 1)[1] for p in report["problems"]] == ["1", str(len(lines) + 2)]
    assert json.loads((tmp_path / "reports" / "report.json").read_text()) == report


def test_real_bccd_validate_and_convert(bccd_real: Path, tmp_path: Path) -> None:
    report = validate(bccd_real, "voc", ["RBC", "WBC", "Platelets"], report_dir=tmp_path)
    assert not report["ok"] and report["skipped"] == 2
    with pytest.raises(DetectionError, match=r"BloodImage_00338\.xml:\d+: zero or negative area"):
        convert(bccd_real, tmp_path / "raise", "voc", ["RBC", "WBC", "Platelets"])
    assert not (tmp_path / "raise").exists()
    report = convert(bccd_real, tmp_path / "skip", "voc", ["RBC", "WBC", "Platelets"], on_error="skip")
    assert (report["images"], report["boxes"], report["skipped"]) == (364, 4886, 2)


def test_real_gtsdb_convert(gtsdb_real: Path, tmp_path: Path) -> None:
    report = convert(gtsdb_real, tmp_path, "gtsdb", list(GTSDB_CLASSES))
    assert (report["images"], report["boxes"], report["empty_images"], report["skipped"]) == (900, 1213, 159, 0)
    assert len(list((tmp_path / "voc" / "Annotations").glob("*.xml"))) == 900
    xml = etree.parse(str(tmp_path / "voc" / "Annotations" / "00000.xml")).getroot()
    assert xml.findtext("filename") == "00000.jpg"  # gt.txt line 1: 00000.ppm;774;411;815;446;11
    assert [xml.findtext(f"object/bndbox/{k}") for k in ("xmin", "ymin", "xmax", "ymax")] == ["775", "412", "816", "447"]
    assert len(json.loads((tmp_path / "coco.json").read_text())["annotations"]) == 1213
