"""Training augmentation from ``params.yaml`` (``train.augment``): an albumentations pipeline, bbox-aware, with mosaic.

``build_augmentation`` turns ``AugmentParams`` into an ``Augmenter``: flips, affine scale/translate/
rotate, random-resized crop, colour jitter, blur, noise and mosaic (4 images in a 2x2 grid), each with
its probability. Boxes are ``pascal_voc`` (x1, y1, x2, y2 pixels, the table's corners); boxes a
transform cuts are clipped, those left under ``min_area`` pixels or ``min_visibility`` dropped; an
image without boxes goes through too. Mosaic needs three more samples: the dataset binds itself
(``Augmenter.bind``) so the augmenter can draw them. ``preview`` writes a PNG grid of augmented samples.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import albumentations as A
import cv2
import numpy as np

from detection.config import AugmentParams
from detection.data.images import read_image_rgb
from detection.data.table import as_arrays, boxes_of, images, label_ids, read_table

log = logging.getLogger(__name__)

Sample = tuple[np.ndarray, np.ndarray, np.ndarray]  # RGB image, boxes (N, 4), label ids (N,)


def transforms(p: AugmentParams, hflip: float = 0.0, imgsz: int = 640) -> list[A.BasicTransform]:
    """The albumentations transforms of ``p`` after mosaic (those with probability 0 left out)."""
    t: list[A.BasicTransform] = []
    if p.crop > 0:
        t.append(A.RandomResizedCrop(size=(imgsz, imgsz), scale=p.crop_scale, p=p.crop))
    t.append(A.HorizontalFlip(p=hflip))  # always (even p=0): keeps the random sequence of earlier releases
    if p.vflip > 0:
        t.append(A.VerticalFlip(p=p.vflip))
    if p.affine > 0:
        t.append(A.Affine(scale=p.scale, translate_percent=(-p.translate, p.translate), rotate=(-p.rotate, p.rotate),
                          p=p.affine, border_mode=cv2.BORDER_CONSTANT))  # fmt: skip
    if p.color > 0:
        t.append(A.RandomBrightnessContrast(p.brightness, p.contrast, p=p.color))
    if p.hsv > 0:
        t.append(A.HueSaturationValue(p.hue, p.saturation, p.value, p=p.hsv))
    if p.blur > 0:
        t.append(A.GaussianBlur(blur_limit=(3, 7), p=p.blur))
    if p.noise > 0:
        t.append(A.GaussNoise(std_range=(0.02, 0.08), p=p.noise))
    return t


class Augmenter:
    """Callable like an ``A.Compose`` (``image=, bboxes=, labels=``); draws mosaic partners from a bound source."""

    def __init__(self, p: AugmentParams, hflip: float = 0.0, seed: int = 0, imgsz: int = 640) -> None:
        self.params = p
        bbox = A.BboxParams(format="pascal_voc", label_fields=["labels"], min_area=p.min_area, min_visibility=p.min_visibility, clip=True)
        self.compose = A.Compose(transforms(p, hflip, imgsz), bbox_params=bbox, seed=seed)
        # mosaic in a pipeline of its own, applied when the augmenter's coin says so: the three partner
        # images are decoded only for the samples that become mosaics
        mosaic = A.Mosaic(grid_yx=(2, 2), target_size=(imgsz, imgsz), cell_shape=(imgsz, imgsz), fit_mode="contain", p=1.0)
        self.mosaic = A.Compose([mosaic], bbox_params=bbox, seed=seed)
        self.rng = np.random.default_rng(seed)
        self.size = 0
        self.source: Callable[[int], Sample] | None = None

    def bind(self, dataset: Any) -> None:
        """Let mosaic draw samples from ``dataset`` (a ``DetectionDataset``: ``images``, ``groups``, ``ids``, ``read``).

        A ``functools.partial`` of a module function, not a closure: data-loader workers can pickle it."""
        self.bind_source(functools.partial(_dataset_sample, dataset), len(dataset))

    def bind_source(self, source: Callable[[int], Sample], size: int) -> None:
        self.source, self.size = source, size

    def set_random_seed(self, seed: int) -> None:
        """Re-seed albumentations and the mosaic draws (the training sampler does this per sample, so that
        a sample's augmentation depends only on (seed, epoch, index): exact resume, any worker count)."""
        self.compose.set_random_seed(seed)
        self.mosaic.set_random_seed(seed)
        self.rng = np.random.default_rng(seed)

    def __call__(self, image: np.ndarray, bboxes: Any, labels: Any) -> dict[str, Any]:
        if self.params.mosaic > 0 and self.source is not None and self.size and self.rng.random() < self.params.mosaic:
            others = [self.source(int(i)) for i in self.rng.integers(0, self.size, 3)]
            meta = [{"image": img, "bboxes": b, "labels": lab} for img, b, lab in others]
            out = self.mosaic(image=image, bboxes=bboxes, labels=labels, mosaic_metadata=meta)
            image, bboxes, labels = out["image"], out["bboxes"], out["labels"]
        return self.compose(image=image, bboxes=bboxes, labels=labels)


def _dataset_sample(dataset: Any, i: int) -> Sample:
    name = dataset.images.at[i, "image"]
    boxes, labels = as_arrays(dataset.groups[name], dataset.ids)
    return dataset.read(name), boxes, labels


def build_augmentation(p: AugmentParams | None = None, hflip: float = 0.0, seed: int = 0, imgsz: int = 640) -> Augmenter:
    """The training augmentation of ``p`` (default ``AugmentParams()``); seeded (albumentations keeps its own generator)."""
    return Augmenter(p or AugmentParams(), hflip, seed, imgsz)


def preview(
    annotations: Path, root: Path, class_names: Sequence[str], p: AugmentParams, out_file: Path,
    *, count: int = 9, seed: int = 0, imgsz: int = 640, hflip: float = 0.0,
) -> Path:  # fmt: skip
    """Write a PNG grid of ``count`` augmented samples of ``annotations`` (boxes drawn); return its path."""
    from detection.viz.dataset import tile
    from detection.viz.draw import draw_detections, write_image

    table = read_table(annotations)
    names, groups, ids = list(images(table)["image"]), boxes_of(table), label_ids(class_names)
    id_names = {i: n for n, i in ids.items()}

    def sample(i: int) -> Sample:
        boxes, labels = as_arrays(groups[names[i]], ids)
        return read_image_rgb(Path(root) / names[i]), boxes, labels

    aug = build_augmentation(p, hflip, seed, imgsz)
    aug.bind_source(sample, len(names))
    rng = np.random.default_rng(seed)
    tiles = []
    for i in rng.integers(0, len(names), count):
        img, boxes, labels = sample(int(i))
        out = aug(image=img, bboxes=boxes, labels=labels)
        drawn = draw_detections(cv2.cvtColor(out["image"], cv2.COLOR_RGB2BGR), np.asarray(out["bboxes"]).reshape(-1, 4), [id_names[int(v)] for v in out["labels"]], None)
        tiles.append(drawn)
    path = write_image(Path(out_file), tile(tiles))
    log.info("wrote %d augmented samples -> %s", count, path)
    return path
