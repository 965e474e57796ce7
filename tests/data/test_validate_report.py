"""The validation report users read: JSON + Markdown + PNG plots, on the real BCCD set (its two zero-area boxes)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2

from detection.cli import main
from detection.data.convert import validate


def test_bccd_report_with_plots(bccd_real: Path, tmp_path: Path) -> None:
    report = validate(bccd_real, "auto", report_dir=tmp_path / "r")
    assert report["format"] == "voc" and not report["ok"]
    assert (report["images"], report["boxes"], report["empty_images"]) == (364, 4886, 0)
    assert report["problem_counts"] == {"zero_area": 2}
    assert [Path(p["where"].split(":")[0]).name for p in report["problems"]] == ["BloodImage_00338.xml", "BloodImage_00343.xml"]
    assert report["per_class"] == {"Platelets": 361, "RBC": 4153, "WBC": 372}
    sizes = report["box_sizes"]
    assert sum(sizes.values()) == 4886 and sizes["large"] > 0 and sizes["medium"] > 0  # type: ignore[union-attr]
    on_disk = json.loads((tmp_path / "r" / "report.json").read_text())
    assert on_disk["problem_counts"] == {"zero_area": 2} and on_disk["image_root"] == str(bccd_real)
    md = (tmp_path / "r" / "report.md").read_text()
    assert "| zero_area | 2 |" in md and "BloodImage_00338.xml" in md and "![samples](samples.png)" in md
    for name in ("boxes_per_class", "box_sizes", "box_centers", "image_sizes", "samples"):
        png = cv2.imread(str(tmp_path / "r" / f"{name}.png"))
        assert png is not None and png.shape[0] > 100 and png.std() > 5, name  # a real picture, not blank


def test_validate_cli_exit_status(bccd_real: Path, tmp_path: Path, capsys) -> None:
    import pytest

    with pytest.raises(SystemExit) as exc:
        main(["validate", str(bccd_real), "--report", str(tmp_path / "r"), "--no-plots"])
    assert exc.value.code == 1 and "zero_area" in capsys.readouterr().out  # problems found: status 1, by kind
    assert not (tmp_path / "r" / "samples.png").exists()
