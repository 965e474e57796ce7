"""A faster ONNX form of torchvision's multi-scale RoI pooling, used while the exporter traces.

``MultiScaleRoIAlign`` pools each RoI on its FPN level and, when traced, merges the per-level results
with one ``ScatterElements`` per level into a zero tensor of the full size (N, C, 7, 7), each with an
int64 index tensor as large as the result (torchvision's ``poolers._onnx_merge_levels``). onnxruntime
spent 15 % of a ``fasterrcnn_mobilenet_v3_large_320_fpn`` frame there (its profiler, 2-core CPU).
The same result is the concatenation of the per-level results in level order, rows put back in RoI
order by one ``Gather`` (whole 7x7xC blocks, not single elements), which is what ``merge_levels``
traces to. Eager torch is unchanged (it never calls the merge).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor
from torchvision.ops import poolers


def merge_levels(levels: Tensor, unmerged_results: list[Tensor]) -> Tensor:
    """Rows of ``unmerged_results[l]`` are the RoIs with ``levels == l``, in RoI order; put every row
    back at its RoI's index."""
    order = torch.cat([torch.where(levels == level)[0] for level in range(len(unmerged_results))])
    return torch.cat(unmerged_results)[torch.argsort(order)]


@contextmanager
def gather_merged_levels() -> Iterator[None]:
    """Within the block, traced ``MultiScaleRoIAlign`` merges its levels with ``merge_levels``."""
    original = poolers._onnx_merge_levels
    poolers._onnx_merge_levels = merge_levels
    try:
        yield
    finally:
        poolers._onnx_merge_levels = original
