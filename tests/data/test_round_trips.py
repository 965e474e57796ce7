"""Every written format reads back, on the two real data sets: VOC -> COCO -> VOC exact, GTSDB -> VOC ->
GTSDB exact, COCO -> YOLO -> COCO within one pixel, and each written folder a complete data set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from detection.data.convert import FORMATS, convert, read
from detection.data.table import has_box


def boxes(df) -> list[tuple]:
    """Boxes keyed by image file name (folders differ between formats), sorted."""
    b = df[has_box(df)]
    return sorted(zip(b["image"].map(lambda s: Path(s).name), b["xmin"], b["ymin"], b["xmax"], b["ymax"], b["label"], b["difficult"], b["truncated"]))


@pytest.fixture(scope="module")
def bccd_interim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import shared_path

    src = shared_path("bccd_voc", "BCCD", "Annotations").parent
    out = tmp_path_factory.mktemp("bccd") / "interim"
    convert(src, out, "voc", None, "skip", to=("csv", "voc", "coco", "yolo", "kpjson"))
    return out


def test_bccd_voc_to_coco_to_voc_is_exact(bccd_interim: Path, tmp_path: Path) -> None:
    first, _ = read(bccd_interim / "voc", "voc")
    report = convert(bccd_interim / "coco.json", tmp_path / "c", "auto", None, to=("voc",))
    back, _ = read(tmp_path / "c" / "voc", "auto")
    assert report["format"] == "coco" and report["boxes"] == 4886 and report["skipped"] == 0
    assert boxes(back) == boxes(first) and len(boxes(back)) == 4886
    name = "BloodImage_00000.xml"
    assert (tmp_path / "c" / "voc" / "Annotations" / name).read_bytes() == (bccd_interim / "voc" / "Annotations" / name).read_bytes()
    assert int(first["truncated"].sum()) > 0  # BCCD marks truncated cells: kept through COCO


def test_bccd_coco_to_yolo_to_coco_within_a_pixel(bccd_interim: Path, tmp_path: Path) -> None:
    coco, _ = read(bccd_interim / "coco.json", "coco")
    convert(bccd_interim / "yolo", tmp_path / "y", "auto", None, to=("coco",))
    back, report = read(tmp_path / "y" / "coco.json", "coco")
    assert report["skipped"] == 0 and report["image_root"]
    def key(box: tuple) -> tuple:
        return box[0], box[5], *(round(v) for v in box[1:5])

    a, b = sorted(boxes(coco), key=key), sorted(boxes(back), key=key)
    assert len(a) == len(b) == 4886 and [(x[0], x[5]) for x in a] == [(x[0], x[5]) for x in b]
    assert np.abs(np.array([x[1:5] for x in a]) - np.array([x[1:5] for x in b])).max() <= 1.0


def test_every_written_format_is_a_complete_data_set(bccd_interim: Path) -> None:
    expected, _ = read(bccd_interim / "annotations.csv", "csv")
    def rounded(df) -> list[tuple]:  # YOLO's normalised 6 decimals: within 0.001 px on 640x480
        return sorted((b[0], *(round(v, 2) for v in b[1:5]), b[5]) for b in boxes(df))

    for fmt, path in {"csv": "annotations.csv", "voc": "voc", "coco": "coco.json", "yolo": "yolo", "kpjson": "kpjson"}.items():
        df, report = read(bccd_interim / path, "auto")  # images decoded from where the written data set points
        assert report["format"] == fmt and report["problems"] == [], (fmt, report["problems"][:3])
        assert rounded(df) == rounded(expected), fmt
    assert json.loads((bccd_interim / "report.json").read_text())["problem_counts"] == {"zero_area": 2}


def test_gtsdb_to_voc_to_gtsdb_is_exact(gtsdb_real: Path, tmp_path: Path) -> None:
    report = convert(gtsdb_real, tmp_path / "a", "gtsdb", None, to=("voc",))
    assert (report["images"], report["boxes"]) == (900, 1213)
    back = convert(tmp_path / "a" / "voc", tmp_path / "b", "voc", None, to=("gtsdb",))
    assert back["boxes"] == 1213
    original = sorted((gtsdb_real / "gt.txt").read_text().replace(".ppm", "").splitlines())
    written = sorted((tmp_path / "b" / "gtsdb" / "gt.txt").read_text().replace(".ppm", "").splitlines())
    assert written == original


def test_formats_listed() -> None:
    assert FORMATS == ("gtsdb", "voc", "coco", "csv", "yolo", "kpjson")
