"""Training augmentation for keypoint models: boxes and keypoints move together.

The transforms of ``detection.data.augment`` (affine, random-resized crop, colour, blur, noise) run
through albumentations with its keypoint support, each box's keypoints tied to the box (a box that
a transform drops takes its keypoints with it). Flips are done here, before them, because a mirror
must also rename keypoints (``left_eye`` becomes ``right_eye``): ``detection.data.keypoints.mirror``
with the data set's flip map; a flip probability > 0 without a flip map is an error naming the
field. Mosaic is not supported with keypoints (an error naming ``train.augment.mosaic``). A keypoint
a transform moves outside the image becomes absent (v = 0).
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import numpy as np

from detection.config import AugmentParams
from detection.data.augment import transforms
from detection.data.keypoints import KeypointSpec, check_flip, mirror
from detection.errors import DetectionError


class KeypointAugmenter:
    """Callable as ``(image=, bboxes=, labels=, keypoints=(N, K, 3))``; re-seedable like ``Augmenter``."""

    def __init__(self, p: AugmentParams, spec: KeypointSpec, hflip: float = 0.0, seed: int = 0, imgsz: int = 640) -> None:
        if p.mosaic > 0:
            raise DetectionError(f"train.augment.mosaic = {p.mosaic:g}: mosaic is not supported with keypoint models", hint="set train.augment.mosaic: 0")
        check_flip(spec.flip, hflip, "train.hflip")
        check_flip(spec.flip, p.vflip, "train.augment.vflip")
        self.spec, self.hflip, self.vflip = spec, hflip, p.vflip
        self.compose = A.Compose(
            transforms(p.model_copy(update={"vflip": 0.0}), 0.0, imgsz),
            bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels", "box_ids"], min_area=p.min_area,
                                     min_visibility=p.min_visibility, clip=True),  # fmt: skip
            keypoint_params=A.KeypointParams(format="xy", label_fields=["point_ids"], remove_invisible=False),
            seed=seed,
        )
        self.rng = np.random.default_rng(seed)

    def set_random_seed(self, seed: int) -> None:
        self.compose.set_random_seed(seed)
        self.rng = np.random.default_rng(seed)

    def __call__(self, image: np.ndarray, bboxes: Any, labels: Any, keypoints: np.ndarray) -> dict[str, Any]:
        boxes = np.asarray(bboxes, np.float32).reshape(-1, 4)
        points = np.asarray(keypoints, np.float32).reshape(len(boxes), len(self.spec), 3)
        flips = self.rng.random(2)  # both drawn always: the sequence does not depend on the probabilities
        for horizontal, p, u in ((True, self.hflip, flips[0]), (False, self.vflip, flips[1])):
            if u < p:
                image, boxes, points = mirror(image, boxes, points, self.spec.flip or (), horizontal)
        n, k = points.shape[:2]
        out = self.compose(
            image=image, bboxes=boxes, labels=np.asarray(labels), box_ids=np.arange(n),
            keypoints=points[..., :2].reshape(-1, 2), point_ids=np.arange(n * k),
        )  # fmt: skip
        moved = np.zeros((n * k, 2), np.float32)
        moved[np.asarray(out["point_ids"], np.int64)] = np.asarray(out["keypoints"], np.float32).reshape(-1, 2)[:, :2]
        kept = np.asarray(out["box_ids"], np.int64)
        result = np.concatenate([moved.reshape(n, k, 2), points[..., 2:]], axis=-1)[kept]
        h, w = out["image"].shape[:2]
        x, y = result[..., 0], result[..., 1]
        visible = (result[..., 2] > 0) & (x >= 0) & (x <= w) & (y >= 0) & (y <= h)
        result[~visible] = 0
        return {**out, "keypoints": result}
