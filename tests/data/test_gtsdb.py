"""GTSDB reader/writer on real files: the synthetic sample (GTSDB layout) and, when present, the real GTSDB."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from PIL import Image

from detection.data.formats.gtsdb import GTSDB_CLASSES, read_gtsdb, write_gtsdb
from detection.data.table import has_box
from detection.errors import DetectionError


def gt_lines(folder: Path) -> list[list[str]]:
    """The fields of every line of ``folder/gt.txt``, parsed here independently of the reader."""
    return [line.split(";") for line in (folder / "gt.txt").read_text().splitlines() if line.strip()]


def box_tuples(df) -> list[tuple]:
    rows = df[has_box(df)]
    return sorted(zip(rows["image"].map(lambda s: Path(s).stem), rows["xmin"], rows["ymin"], rows["xmax"], rows["ymax"], rows["label"]))


def test_reads_inclusive_indices_as_continuous_corners(sample_ro: Path) -> None:
    df, report = read_gtsdb(sample_ro)
    lines = gt_lines(sample_ro)
    expected = sorted(
        (Path(n).stem, float(l), float(t), float(r) + 1, float(b) + 1, GTSDB_CLASSES[int(c)]) for n, l, t, r, b, c in lines
    )
    assert box_tuples(df) == expected
    assert set(df["width"]) == {128} and set(df["height"]) == {96}
    named = {Path(n).stem for n, *_ in lines}
    assert report["images"] == 12 and report["boxes"] == len(lines)
    assert report["empty_images"] == 12 - len(named) and report["skipped"] == 0
    assert report["per_class"] == {GTSDB_CLASSES[int(c)]: sum(x[5] == c for x in lines) for c in {x[5] for x in lines}}


def test_images_not_in_gt_are_empty_rows(sample: Path) -> None:
    lines = gt_lines(sample)
    (sample / "gt.txt").write_text("".join(";".join(x) + "\n" for x in lines if x[0] == "00000.ppm"))
    df, report = read_gtsdb(sample)
    assert report["images"] == 12 and report["empty_images"] == 11
    empty = df[df["image"] != "00000.ppm"]
    assert len(empty) == 11 and (empty["label"] == "").all() and empty["xmin"].isna().all()


def test_ppm_named_but_jpg_present_resolves_by_stem(sample: Path, sample_ro: Path, caplog: pytest.LogCaptureFixture) -> None:
    for ppm in sorted(sample.glob("*.ppm")):
        Image.open(ppm).save(ppm.with_suffix(".jpg"))
        ppm.unlink()
    with caplog.at_level(logging.INFO, logger="detection.data.formats.gtsdb"):
        df, report = read_gtsdb(sample)
    named = {x[0] for x in gt_lines(sample)}
    assert report["extension_substitutions"] == len(named)
    assert df["image"].str.endswith(".jpg").all() and report["images"] == 12
    assert box_tuples(df) == box_tuples(read_gtsdb(sample_ro)[0])
    assert sum("another extension" in r.message for r in caplog.records) == 1


def test_same_stem_with_two_extensions_is_one_image(sample: Path) -> None:
    Image.open(sample / "00000.ppm").save(sample / "00000.jpg")
    df, report = read_gtsdb(sample)
    assert report["images"] == 12 and report["duplicate_stems"] == 1
    assert "00000.ppm" in set(df["image"]) and "00000.jpg" not in set(df["image"])


BAD_LINES = [
    ("00000.ppm;1;2;3;4", "expected 6 fields"),
    ("00000.ppm;1;2;x;4;14", "rightCol is not an integer"),
    ("00000.ppm;1;2;30;40;43", "unknown class id 43"),
    ("00000.ppm;1;2;30;40;-1", "unknown class id -1"),
    ("00000.ppm;100;2;140;40;14", "outside the 128x96 image"),
    ("00000.ppm;10;2;10;40;14", "zero or negative area"),
    ("00000.ppm;20;2;10;40;14", "zero or negative area"),
    ("00099.ppm;1;2;30;40;14", "image 00099.ppm not found"),
    ("sub/00000.ppm;1;2;30;40;14", "is not a plain file name"),
]


@pytest.mark.parametrize(("bad", "why"), BAD_LINES)
def test_bad_line_raises_with_file_and_line(sample: Path, bad: str, why: str) -> None:
    lines = (sample / "gt.txt").read_text().splitlines()
    lines.insert(2, bad)
    (sample / "gt.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(DetectionError) as exc:
        read_gtsdb(sample)
    assert f"{sample / 'gt.txt'}:3:" in str(exc.value) and why in str(exc.value)
    assert "on_error: skip" in str(exc.value)  # the fix is named


@pytest.mark.parametrize(("bad", "why"), BAD_LINES)
def test_bad_line_is_skipped_and_counted(sample: Path, sample_ro: Path, bad: str, why: str) -> None:
    lines = (sample / "gt.txt").read_text().splitlines()
    lines.insert(2, bad)
    (sample / "gt.txt").write_text("\n".join(lines) + "\n")
    df, report = read_gtsdb(sample, on_error="skip")
    assert report["skipped"] == 1 and report["problems"][0]["where"] == f"{sample / 'gt.txt'}:3"
    assert why in report["problems"][0]["problem"]
    assert box_tuples(df) == box_tuples(read_gtsdb(sample_ro)[0])


def test_named_image_with_unlisted_extension_keeps_its_boxes(sample: Path) -> None:
    Image.open(sample / "00000.ppm").save(sample / "extra.bmp")
    with (sample / "gt.txt").open("a") as f:
        f.write("extra.bmp;1;2;30;40;14\n")
    df, report = read_gtsdb(sample)
    extra = df[df["image"] == "extra.bmp"]
    assert report["images"] == 13 and list(extra["label"]) == ["stop"] and list(extra["xmax"]) == [31.0]


def test_box_out_by_one_pixel_is_clipped_and_counted(sample: Path) -> None:
    (sample / "gt.txt").write_text("00000.ppm;100;0;128;40;14\n")  # rightCol 128 on a 128-wide image
    df, report = read_gtsdb(sample)
    row = df[has_box(df)].iloc[0]
    assert (row["xmin"], row["xmax"]) == (100.0, 128.0) and report["clipped_boxes"] == 1


def test_missing_root_or_gt_txt_always_raise(tmp_path: Path, sample: Path) -> None:
    with pytest.raises(DetectionError, match="GTSDB folder not found.*nowhere.*detection fetch"):
        read_gtsdb(tmp_path / "nowhere", on_error="skip")
    (sample / "gt.txt").unlink()
    with pytest.raises(DetectionError, match="no gt.txt found.*holds gt.txt"):
        read_gtsdb(sample, on_error="skip")


def test_unreadable_image(sample: Path) -> None:
    (sample / "00002.ppm").write_bytes(b"not an image at all")
    with pytest.raises(DetectionError, match=r"00002\.ppm: not a readable image"):
        read_gtsdb(sample)
    df, report = read_gtsdb(sample, on_error="skip")
    assert "00002.ppm" not in set(df["image"]) and report["images"] == 11
    assert report["problems"][0]["where"].endswith("00002.ppm")


def test_class_names_filter(sample: Path) -> None:
    keep = ["stop", "give way"]
    with pytest.raises(DetectionError, match=r"gt\.txt:\d+: class '.*' is not in the dataset config's classes"):
        read_gtsdb(sample, class_names=keep)
    df, report = read_gtsdb(sample, class_names=keep, on_error="skip")
    others = [x for x in gt_lines(sample) if GTSDB_CLASSES[int(x[5])] not in keep]
    assert set(df.loc[has_box(df), "label"]) == set(keep)
    assert report["skipped"] == len(others) > 0 and report["images"] == 12


def test_bad_on_error_value(sample_ro: Path) -> None:
    with pytest.raises(DetectionError, match="on_error must be one of"):
        read_gtsdb(sample_ro, on_error="ignore")


def test_dataset_in_single_subfolder(sample: Path) -> None:
    df, _ = read_gtsdb(sample.parent)  # tmp_path holds only gtsdb/
    assert df["image"].str.startswith("gtsdb/").all()
    assert (sample.parent / df["image"].iloc[0]).is_file()


def test_write_reproduces_gt_txt(sample_ro: Path, tmp_path: Path) -> None:
    df, _ = read_gtsdb(sample_ro)
    path = write_gtsdb(df, tmp_path / "out")
    assert path == tmp_path / "out" / "gt.txt"
    assert path.read_text() == (sample_ro / "gt.txt").read_text()


def test_write_rejects_non_gtsdb_labels(sample_ro: Path, tmp_path: Path) -> None:
    df, _ = read_gtsdb(sample_ro)
    df.loc[has_box(df).idxmax(), "label"] = "cat"
    with pytest.raises(DetectionError, match=r"\['cat'\] are not GTSDB class names"):
        write_gtsdb(df, tmp_path)
    assert not (tmp_path / "gt.txt").exists()


def test_real_gtsdb(gtsdb_real: Path, tmp_path: Path) -> None:
    df, report = read_gtsdb(gtsdb_real)
    assert (report["images"], report["boxes"], report["empty_images"], report["skipped"]) == (900, 1213, 159, 0)
    assert report["extension_substitutions"] == 741 and df["image"].str.endswith(".jpg").all()
    assert set(zip(df["width"], df["height"])) == {(1360, 800)}
    first = df[df["image"] == "00000.jpg"].iloc[0]  # gt.txt line 1: 00000.ppm;774;411;815;446;11
    assert (first["xmin"], first["ymin"], first["xmax"], first["ymax"]) == (774, 411, 816, 447)
    assert first["label"] == GTSDB_CLASSES[11]
    assert len(report["per_class"]) == 43
    written = write_gtsdb(df, tmp_path).read_text().splitlines()
    assert sorted(written) == sorted(x for x in (gtsdb_real / "gt.txt").read_text().splitlines() if x)
    boxes = df[has_box(df)]
    assert ((boxes["xmin"] >= 0) & (boxes["xmax"] <= boxes["width"]) & (boxes["xmax"] > boxes["xmin"])).all()
