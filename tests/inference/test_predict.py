"""predict(): annotated images and predictions.jsonl for an image or a folder of images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import pytest

from detection.errors import DetectionError
from detection.inference.predict import output_names, predict


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("weights_fixture", ["checkpoint_pt", "model_onnx"])
def test_folder(sample_dir: Path, tmp_path: Path, weights_fixture: str, request: pytest.FixtureRequest, class_names: list[str]) -> None:
    weights = request.getfixturevalue(weights_fixture)
    out = tmp_path / "pred"
    summary = predict(sample_dir, weights, out, threshold=0.0)
    rows = _lines(out / "predictions.jsonl")
    assert [Path(r["image"]).name for r in rows] == ["00000.ppm", "00001.ppm", "00002.ppm", "00003.ppm"]
    assert summary["images"] == 4 and summary["backend"] == ("torch" if weights.suffix == ".pt" else "onnx")
    assert summary["detections"] == sum(len(r["detections"]) for r in rows) > 0
    assert sum(summary["per_class"].values()) == summary["detections"]
    for row in rows:
        assert (row["width"], row["height"]) == (160, 96)
        annotated = cv2.imread(str(out / row["annotated"]))
        assert row["annotated"].endswith(".png") and annotated.shape == (96, 160, 3)
        for d in row["detections"]:
            assert len(d["box"]) == 4 and 0 <= d["score"] <= 1 and d["label"] in class_names
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "no temp files left behind"


def test_single_image_and_threshold(sample_dir: Path, tmp_path: Path, checkpoint_pt: Path) -> None:
    image = tmp_path / "one.jpg"
    cv2.imwrite(str(image), cv2.imread(str(sample_dir / "00001.ppm")))
    summary = predict(image, checkpoint_pt, tmp_path / "out", threshold=1.0)  # nothing scores >= 1
    rows = _lines(tmp_path / "out" / "predictions.jsonl")
    assert summary["images"] == 1 and summary["detections"] == 0
    assert rows == [{"image": str(image), "annotated": "one.jpg", "width": 160, "height": 96, "detections": []}]
    assert (tmp_path / "out" / "one.jpg").is_file()


def test_output_names_are_unique_and_viewable() -> None:
    names = output_names([Path("a.ppm"), Path("a.png"), Path("b.JPG"), Path("c.bmp")])
    assert names == ["a.ppm.png", "a.png.png", "b.JPG", "c.png"]


def test_missing_source(tmp_path: Path, checkpoint_pt: Path) -> None:
    with pytest.raises(DetectionError, match="not found: .*nowhere"):
        predict(tmp_path / "nowhere", checkpoint_pt, tmp_path / "out")


def test_empty_folder_and_non_image(tmp_path: Path, checkpoint_pt: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DetectionError, match="no images in folder .*empty"):
        predict(tmp_path / "empty", checkpoint_pt, tmp_path / "out")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DetectionError, match="notes.txt: not an image file"):
        predict(tmp_path / "notes.txt", checkpoint_pt, tmp_path / "out")


def test_corrupt_image_names_the_file(sample_dir: Path, tmp_path: Path, checkpoint_pt: Path) -> None:
    folder = Path(shutil.copytree(sample_dir, tmp_path / "imgs"))
    (folder / "00002.ppm").write_text("not an image")
    with pytest.raises(DetectionError, match="cannot read image .*00002.ppm"):
        predict(folder, checkpoint_pt, tmp_path / "out")
    assert not (tmp_path / "out" / "predictions.jsonl").exists(), "no partial predictions.jsonl"


def test_weights_of_unknown_type(sample_dir: Path, tmp_path: Path) -> None:
    weights = tmp_path / "model.txt"
    weights.write_text("x")
    with pytest.raises(DetectionError, match="model.txt: unknown weights file type"):
        predict(sample_dir, weights, tmp_path / "out")
