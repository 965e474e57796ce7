"""The ONNX form of multi-scale RoI pooling: one Gather merges the FPN levels (no ScatterElements), with
the same values as torchvision's merge and parity on real image files."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
import torch
from torchvision.ops import poolers

from detection.data.sample import make_sample
from detection.engine.checkpoint import save_checkpoint
from detection.export.onnx import export_onnx
from detection.export.tracing import gather_merged_levels, merge_levels
from detection.models import build_model


@pytest.mark.parametrize("levels", [[0, 2, 1, 0, 3, 2, 2, 0], [1, 1, 1], [3, 0, 3, 0], []])
def test_merge_equals_torchvisions_scatter_merge(levels: list[int]) -> None:
    lv = torch.tensor(levels, dtype=torch.int64)
    gen = torch.Generator().manual_seed(0)
    unmerged = [torch.rand(int((lv == level).sum()), 5, 7, 7, generator=gen) for level in range(4)]  # a level may be empty
    assert torch.equal(merge_levels(lv, unmerged), poolers._onnx_merge_levels(lv, unmerged))


def test_context_restores_torchvisions_merge() -> None:
    original = poolers._onnx_merge_levels
    with gather_merged_levels():
        assert poolers._onnx_merge_levels is merge_levels
    assert poolers._onnx_merge_levels is original


def test_exported_fpn_detector_merges_levels_by_gather_with_parity(tmp_path: Path) -> None:
    images = sorted(make_sample(tmp_path / "raw", images=2, width=160, height=96, video_frames=0).glob("*.ppm"))
    torch.manual_seed(0)
    name = "fasterrcnn_mobilenet_v3_small_nano_head"  # an FPN over 3 stages + pool: RoIs on several levels
    model = build_model(name, num_classes=3, imgsz=160)
    assert len(model.roi_heads.box_roi_pool.featmap_names) > 1
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.weight.mul_(3.0)  # distinct scores (untrained heads tie)
    ckpt = save_checkpoint(tmp_path / "best.pt", model, model_name=name, class_names=["a", "b"], imgsz=160, epoch=1, params={})
    result = export_onnx(ckpt, tmp_path / "model.onnx", images, report=tmp_path / "export.json")
    ops = [n.op_type for n in onnx.load(str(tmp_path / "model.onnx")).graph.node]
    assert "ScatterElements" not in ops and "RoiAlign" in ops
    assert result["ok"] and result["matched"] > 0, result
