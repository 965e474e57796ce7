"""Augmentation from params: bbox-aware transforms, mosaic of 4 images, dropped/clipped boxes, the preview grid."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from detection.config import AugmentParams
from detection.data.augment import build_augmentation, preview
from detection.engine.data import DetectionDataset


def _source(i: int):
    img = np.full((96, 128, 3), 60 * (i + 1), np.uint8)
    return img, np.array([[10, 10, 50, 60]], np.float32), np.array([i + 1])


def test_mosaic_combines_four_images_and_keeps_boxes_inside() -> None:
    aug = build_augmentation(AugmentParams(mosaic=1.0, affine=0, color=0, hsv=0), seed=1, imgsz=160)
    aug.bind_source(_source, 3)
    img, boxes, labels = _source(0)
    seen = set()
    for _ in range(8):
        out = aug(image=img, bboxes=boxes, labels=labels)
        b = np.asarray(out["bboxes"]).reshape(-1, 4)
        assert out["image"].shape == (160, 160, 3)
        assert (b >= 0).all() and (b[:, [0, 2]] <= 160).all() and (b[:, [1, 3]] <= 160).all()  # clipped to the canvas
        seen |= {int(v) for v in np.unique(out["image"])} & {60, 120, 180}
    assert len(seen) >= 2  # pixels of several source images in the mosaics


def test_mosaic_partners_are_decoded_only_for_the_samples_that_become_mosaics() -> None:
    calls: list[int] = []

    def counting(i: int):
        calls.append(i)
        return _source(i)

    aug = build_augmentation(AugmentParams(mosaic=0.5, affine=0, color=0, hsv=0), seed=2, imgsz=160)
    aug.bind_source(counting, 3)
    img, boxes, labels = _source(0)
    shapes = [aug(image=img, bboxes=boxes, labels=labels)["image"].shape for _ in range(40)]
    mosaics = sum(s == (160, 160, 3) for s in shapes)  # a mosaic is imgsz square; the source is 96x128
    assert 5 < mosaics < 35 and len(calls) == 3 * mosaics


def test_small_boxes_are_dropped_and_empty_images_pass() -> None:
    aug = build_augmentation(AugmentParams(affine=0, color=0, hsv=0, min_area=1000), seed=0)
    img = np.zeros((96, 128, 3), np.uint8)
    out = aug(image=img, bboxes=np.array([[1, 1, 10, 10], [0, 0, 60, 60]], np.float32), labels=np.array([1, 2]))
    assert list(out["labels"]) == [2]  # 81 px^2 < min_area: dropped
    out = aug(image=img, bboxes=np.zeros((0, 4), np.float32), labels=np.zeros(0, np.int64))
    assert out["image"].shape == img.shape and len(out["bboxes"]) == 0


def test_every_transform_runs_and_is_seeded() -> None:
    p = AugmentParams(vflip=0.5, rotate=15, crop=1.0, blur=1.0, noise=1.0, mosaic=0.5)
    img, boxes, labels = _source(1)
    runs = []
    for _ in range(2):
        aug = build_augmentation(p, hflip=0.5, seed=3, imgsz=128)
        aug.bind_source(_source, 3)
        runs.append([aug(image=img, bboxes=boxes, labels=labels)["image"] for _ in range(3)])
    assert all(np.array_equal(a, b) for a, b in zip(*runs, strict=True))


def test_dataset_binds_mosaic_and_preview_grid(sample_ro: Path, tmp_path: Path) -> None:
    from detection.data.convert import convert

    names = ["stop", "give way", "priority road", "no entry", "keep right"]
    convert(sample_ro, tmp_path / "i", "gtsdb", names)
    from detection.data.table import read_table

    aug = build_augmentation(AugmentParams(mosaic=1.0), seed=0, imgsz=128)
    dataset = DetectionDataset(read_table(tmp_path / "i" / "annotations.csv"), sample_ro, names, aug)
    image, target = dataset[0]
    assert tuple(image.shape) == (3, 128, 128) and target["boxes"].shape[1] == 4
    path = preview(tmp_path / "i" / "annotations.csv", sample_ro, names, AugmentParams(mosaic=0.5, rotate=10), tmp_path / "p.png", count=4, imgsz=128)
    grid = cv2.imread(str(path))
    assert grid is not None and grid.shape[:2] == (640, 640)


def test_augment_preview_cli(sample_ro: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from detection.cli import main
    from detection.data.convert import convert

    names = ["stop", "give way", "priority road", "no entry", "keep right"]
    convert(sample_ro, tmp_path / "i", "gtsdb", names)
    ds = {"name": "s", "format": "gtsdb", "names": names, "root": str(sample_ro), "train": str(tmp_path / "i" / "annotations.csv")}
    (tmp_path / "ds.yaml").write_text(yaml.safe_dump(ds))
    main(["augment-preview", "--data", str(tmp_path / "ds.yaml"), "--out", str(tmp_path / "grid.png"), "--count", "2"])
    assert cv2.imread(str(tmp_path / "grid.png")) is not None and "grid.png" in capsys.readouterr().out


def test_bound_augmenter_pickles(sample_ro: Path, tmp_path: Path) -> None:
    """Data-loader workers started with spawn (macOS, Windows) pickle the dataset and its augmenter."""
    import pickle

    from detection.data.convert import convert
    from detection.data.table import read_table

    names = ["stop", "give way", "priority road", "no entry", "keep right"]
    convert(sample_ro, tmp_path / "i", "gtsdb", names)
    dataset = DetectionDataset(read_table(tmp_path / "i" / "annotations.csv"), sample_ro, names, build_augmentation(AugmentParams(mosaic=1.0), imgsz=96))
    copy = pickle.loads(pickle.dumps(dataset))
    assert tuple(copy[1][0].shape) == (3, 96, 96)
