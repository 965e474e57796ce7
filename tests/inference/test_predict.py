"""predict(): annotated images and predictions.jsonl for an image or a folder of images."""

from __future__ import annotations

import csv
import functools
import http.server
import json
import os
import subprocess
import sys
import threading
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


def test_empty_folder_and_a_binary_non_image(tmp_path: Path, checkpoint_pt: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DetectionError, match="no images in folder .*empty"):
        predict(tmp_path / "empty", checkpoint_pt, tmp_path / "out")
    (tmp_path / "blob.bin").write_bytes(b"\xff\xfe\x00" * 10)
    with pytest.raises(DetectionError, match="blob.bin: not a text list of images"):
        predict(tmp_path / "blob.bin", checkpoint_pt, tmp_path / "out")


def _bad_folder(sample_dir: Path, tmp_path: Path) -> Path:
    """good, text named .jpg, good, truncated JPEG, a non-UTF-8 name, an empty file, good (in a subfolder)."""
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    good = cv2.imread(str(sample_dir / "00000.ppm"))
    cv2.imwrite(str(folder / "a_good.jpg"), good)
    (folder / "b_text.jpg").write_text("not an image")
    cv2.imwrite(str(folder / "c_good.png"), good)
    jpeg = cv2.imencode(".jpg", good)[1].tobytes()
    (folder / "d_truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (folder / os.fsdecode(b"e_caf\xe9.jpg")).write_bytes(jpeg)  # latin-1 name: not valid UTF-8
    (folder / "f_empty.png").write_bytes(b"")
    cv2.imwrite(str(folder / "sub" / "g_good.jpg"), good)
    return folder


def test_bad_files_in_a_folder_are_reported_counted_and_skipped(sample_dir: Path, tmp_path: Path, checkpoint_pt: Path) -> None:
    out = tmp_path / "out"
    summary = predict(_bad_folder(sample_dir, tmp_path), checkpoint_pt, out, threshold=0.0)
    assert summary["images"] == 4 and summary["skipped"] == 3
    reasons = {s["image"]: s["reason"] for s in summary["skipped_files"]}
    assert set(reasons) == {"b_text.jpg", "d_truncated.jpg", "f_empty.png"}
    assert "corrupt or not an image" in reasons["b_text.jpg"] and "truncated JPEG" in reasons["d_truncated.jpg"] and "empty" in reasons["f_empty.png"]
    rows = _lines(out / "predictions.jsonl")
    assert [r["image"] for r in rows] == ["a_good.jpg", "c_good.png", "e_caf\\xe9.jpg", "sub/g_good.jpg"]
    assert (out / "sub__g_good.jpg").is_file() and (out / "e_caf\\xe9.jpg").is_file()
    table = list(csv.DictReader((out / "predictions.csv").open(encoding="utf-8")))
    assert len(table) == summary["detections"] == sum(len(r["detections"]) for r in rows) > 0
    assert set(table[0]) == {"image", "xmin", "ymin", "xmax", "ymax", "label", "score"}
    assert json.loads((out / "summary.json").read_text())["skipped"] == 3
    assert summary["images_per_second"] > 0 and "longest side" in summary["size_rule"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "no temp folder left behind"


def test_cli_on_a_bad_folder_exits_0_and_names_each_skip(sample_dir: Path, tmp_path: Path, checkpoint_pt: Path) -> None:
    folder = _bad_folder(sample_dir, tmp_path)
    run = subprocess.run([sys.executable, "-m", "detection", "predict", str(folder), "--weights", str(checkpoint_pt), "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "skipped b_text.jpg: the file is corrupt or not an image" in run.stdout
    assert "images/s" in run.stdout or "images_per_second" in run.stdout
    assert "Traceback" not in run.stderr


def test_nothing_readable_is_one_error(tmp_path: Path, checkpoint_pt: Path) -> None:
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "x.jpg").write_text("no")
    with pytest.raises(DetectionError, match="no image could be read .*x.jpg: the file is corrupt"):
        predict(tmp_path / "imgs", checkpoint_pt, tmp_path / "out")
    assert not (tmp_path / "out" / "predictions.jsonl").exists(), "no partial predictions.jsonl"
    assert not list((tmp_path / "out").iterdir()), "no temp folder left behind"


def test_glob_list_file_url_batch_and_class_filter(sample_dir: Path, tmp_path: Path, checkpoint_pt: Path, class_names: list[str]) -> None:
    base = predict(str(sample_dir / "*.ppm"), checkpoint_pt, tmp_path / "glob", threshold=0.0)
    assert base["images"] == 4
    listing = tmp_path / "list.txt"
    listing.write_text(f"# two images and one that is missing\n{sample_dir / '00000.ppm'}\n\nmissing.ppm\n{sample_dir / '00001.ppm'}\n")
    listed = predict(listing, checkpoint_pt, tmp_path / "list", threshold=0.0, batch=2)
    assert listed["images"] == 2 and listed["skipped"] == 1 and "missing" in listed["skipped_files"][0]["reason"]
    batched = predict(sample_dir, checkpoint_pt, tmp_path / "batch", threshold=0.0, batch=4)
    assert batched["images"] == 4 and batched["batch"] == 4 and batched["detections"] > 0
    keep = max(base["per_class"], key=base["per_class"].get)
    only = predict(sample_dir, checkpoint_pt, tmp_path / "only", threshold=0.0, classes=[keep])
    assert set(only["per_class"]) == {keep} and only["detections"] == base["per_class"][keep]
    with pytest.raises(DetectionError, match="unknown class 'stp'.*did you mean stop"):
        predict(sample_dir, checkpoint_pt, tmp_path / "bad", classes=["stp"])
    with pytest.raises(DetectionError, match="no image could be read .*127.0.0.1:9/none.jpg"):
        predict("http://127.0.0.1:9/none.jpg", checkpoint_pt, tmp_path / "url")


def test_url_source(sample_dir: Path, tmp_path: Path, checkpoint_pt: Path) -> None:
    served = tmp_path / "www"
    served.mkdir()
    cv2.imwrite(str(served / "img.jpg"), cv2.imread(str(sample_dir / "00002.ppm")))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/img.jpg"
        (tmp_path / "urls.txt").write_text(f"{url}\n{url.replace('img.jpg', 'gone.jpg')}\n")
        summary = predict(tmp_path / "urls.txt", checkpoint_pt, tmp_path / "out", threshold=0.0)
        server.shutdown()
    assert summary["images"] == 1 and summary["skipped"] == 1 and "HTTP 404" in summary["skipped_files"][0]["reason"]
    assert _lines(tmp_path / "out" / "predictions.jsonl")[0]["image"] == url and (tmp_path / "out" / "img.jpg").is_file()


def test_weights_of_unknown_type(sample_dir: Path, tmp_path: Path) -> None:
    weights = tmp_path / "model.txt"
    weights.write_text("x")
    with pytest.raises(DetectionError, match="model.txt: unknown weights file type"):
        predict(sample_dir, weights, tmp_path / "out")


def test_cli_classes_take_several_values(sample_dir: Path, tmp_path: Path, checkpoint_pt: Path, class_names: list[str]) -> None:
    from detection.cli import _split_classes, main

    assert _split_classes(["video", "--classes", "person", "car", "--track"]) == ["video", "--classes", "person", "--classes", "car", "--track"]
    assert _split_classes(["predict", "--classes", "a", "imgs/x.jpg"]) == ["predict", "--classes", "a", "imgs/x.jpg"]
    main(["predict", str(sample_dir), "--weights", str(checkpoint_pt), "--threshold", "0", "--out", str(tmp_path / "o"), "--classes", class_names[0], class_names[1]])
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["classes"] == class_names[:2] and set(summary["per_class"]) <= set(class_names[:2])
