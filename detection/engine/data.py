"""Torch datasets over the canonical table, with albumentations augmentation for training."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from detection.config import AugmentParams
from detection.data.augment import Augmenter, build_augmentation
from detection.data.augment_keypoints import KeypointAugmenter
from detection.data.images import read_image_rgb
from detection.data.keypoints import KeypointSpec, keypoint_array
from detection.data.table import as_arrays, boxes_of, check_labels, images, label_ids
from detection.errors import DetectionError


def train_augmentation(hflip: float = 0.0, seed: int = 0, params: AugmentParams | None = None, imgsz: int = 640, keypoints: KeypointSpec | None = None) -> Augmenter | KeypointAugmenter:
    """The training augmentation of ``params`` (``train.augment``; see detection.data.augment), seeded;
    with ``keypoints``, the keypoint-aware one (``detection.data.augment_keypoints``)."""
    if keypoints is not None:
        return KeypointAugmenter(params or AugmentParams(), keypoints, hflip, seed, imgsz)
    return build_augmentation(params, hflip, seed, imgsz)


class DetectionDataset(Dataset):
    """Images and targets of a canonical table: ``(CHW float tensor in [0,1], {"boxes", "labels", "image_id"})``,
    and ``"keypoints"`` ``(N, K, 3)`` when built with a ``KeypointSpec`` (for keypoint models)."""

    def __init__(self, table: pd.DataFrame, root: Path, class_names: Sequence[str], transform: A.Compose | None = None, keypoints: KeypointSpec | None = None) -> None:
        check_labels(table, class_names, source="annotation table")
        self.root = Path(root)
        self.ids = label_ids(class_names)
        self.images = images(table)
        # COCO crowd regions are not objects to learn (evaluation ignores them too): no training target.
        self.groups = {name: g[g["iscrowd"].fillna(0).astype(int) != 1] if "iscrowd" in g else g for name, g in boxes_of(table).items()}
        self.transform = transform
        self.keypoints = keypoints
        if hasattr(transform, "bind"):  # mosaic draws its other images from this dataset
            transform.bind(self)

    def __len__(self) -> int:
        return len(self.images)

    def read(self, name: str) -> np.ndarray:
        """The RGB image ``name`` (relative to the root)."""
        return read_image_rgb(self.root / name)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        name = self.images.at[index, "image"]
        img = self.read(name)
        boxes, labels = as_arrays(self.groups[name], self.ids)
        if self.keypoints is not None:
            return self._with_keypoints(index, img, boxes, labels)
        if self.transform is not None:
            out = self.transform(image=img, bboxes=boxes, labels=labels)
            img = out["image"]
            boxes = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
            labels = np.asarray(out["labels"], dtype=np.int64)
        tensor = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255)
        target = {"boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(labels), "image_id": index}
        return tensor, target

    def _with_keypoints(self, index: int, img: np.ndarray, boxes: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, dict[str, Any]]:
        points = keypoint_array(self.groups[self.images.at[index, "image"]], len(self.keypoints))
        if self.transform is not None:
            out = self.transform(image=img, bboxes=boxes, labels=labels, keypoints=points)
            img, points = out["image"], out["keypoints"]
            boxes = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
            labels = np.asarray(out["labels"], dtype=np.int64)
        tensor = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255)
        target = {"boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(labels), "keypoints": torch.from_numpy(points).float(), "image_id": index}
        return tensor, target


def collate(batch: list[tuple[torch.Tensor, dict[str, Any]]]) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
    images_, targets = zip(*batch, strict=True)
    return list(images_), list(targets)


def make_loader(dataset: Dataset, batch: int, shuffle: bool, workers: int, seed: int) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch,
        shuffle=shuffle,
        num_workers=workers,
        collate_fn=collate,
        generator=generator,
        persistent_workers=workers > 0,
    )


def check_images_exist(table: pd.DataFrame, root: Path, source: str) -> None:
    """Fail early, naming the first missing image and the root it was looked for in."""
    missing = [n for n in images(table)["image"] if not (root / n).is_file()]
    if missing:
        raise DetectionError(
            f"{source}: {len(missing)} image(s) not found under {root}, e.g. {root / missing[0]}",
            hint="check `root` in the dataset config, or run the fetch stage",
        )
