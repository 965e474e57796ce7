"""The threaded RoIAlign equals torchvision's, forward and backward, bit for bit."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn
from torchvision.ops import MultiScaleRoIAlign, roi_align

from detection.engine.tuning import apply_speed_params
from detection.ops import ThreadedMultiScaleRoIAlign, threaded_roi_align


def _rois(n: int, batch: int, extent: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * extent
    wh = torch.rand(n, 2, generator=g) * extent / 2 + 1
    return torch.cat([torch.randint(0, batch, (n, 1), generator=g).float(), xy, xy + wh], dim=1)


@pytest.mark.parametrize(("sampling", "aligned", "dtype"), [(2, False, torch.float32), (-1, True, torch.float32), (0, False, torch.float64)])
def test_forward_and_gradients_equal_torchvision(sampling: int, aligned: bool, dtype: torch.dtype) -> None:
    x = torch.rand(2, 13, 24, 20, dtype=dtype, requires_grad=True)
    rois = _rois(50, 2, 80).to(dtype)
    upstream = torch.rand(50, 13, 7, 7, dtype=dtype)
    ref = roi_align(x, rois, (7, 7), 0.25, sampling, aligned)
    (grad_ref,) = torch.autograd.grad(ref, x, upstream)
    ours = threaded_roi_align(x, rois, (7, 7), 0.25, sampling, aligned, workers=3)
    (grad_ours,) = torch.autograd.grad(ours, x, upstream)
    assert torch.equal(ours, ref) and torch.equal(grad_ours, grad_ref)


def test_multiscale_pooler_equals_torchvision_and_is_swapped_into_the_model() -> None:
    feats = {"0": torch.rand(2, 8, 40, 40, requires_grad=True), "1": torch.rand(2, 8, 20, 20, requires_grad=True)}
    boxes = [_rois(30, 1, 300, seed=1)[:, 1:], _rois(20, 1, 300, seed=2)[:, 1:]]
    shapes = [(320, 320), (320, 300)]
    ref_pool, our_pool = MultiScaleRoIAlign(["0", "1"], 7, 2), ThreadedMultiScaleRoIAlign(["0", "1"], 7, 2)
    ref = ref_pool(feats, boxes, shapes)
    grads_ref = torch.autograd.grad(ref.sum(), list(feats.values()))
    ours = our_pool(feats, boxes, shapes)
    grads = torch.autograd.grad(ours.sum(), list(feats.values()))
    assert torch.equal(ref, ours) and all(torch.equal(a, b) for a, b in zip(grads, grads_ref, strict=True))
    model = apply_speed_params(fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, num_classes=3), roi_batch=64)
    assert isinstance(model.roi_heads.box_roi_pool, ThreadedMultiScaleRoIAlign)
    assert model.roi_heads.fg_bg_sampler.batch_size_per_image == 64
