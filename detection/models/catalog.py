"""The rows of `detection models`: every listed model with its figures.

Parameters and GFLOPs are measured by ``python -m benchmarks.models`` (which builds and runs each
model) and kept in ``detection/models/stats.json``; a model not measured yet shows ``-``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from detection.errors import DetectionError
from detection.models.registry import alias_note, available

STATS = Path(__file__).with_name("stats.json")


def model_size(model: Any, image: Any) -> tuple[int, int]:
    """``(parameters, FLOPs)`` of ``model``: the parameter count and the FLOPs of one eval forward pass
    on ``image`` (a CHW tensor; ``torch.utils.flop_counter``, 2 FLOPs per multiply-add). The one place
    both the `detection models` figures (benchmarks.models) and the sweep table measure size."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model([image])
    model.train(was_training)
    return sum(p.numel() for p in model.parameters()), int(counter.get_total_flops())


def load_stats() -> dict[str, dict[str, Any]]:
    return json.loads(STATS.read_text()) if STATS.is_file() else {}


def rows(family: str | None = None, cpu: bool = False) -> list[dict[str, Any]]:
    """One dict per listed model: name, aliases (with notes), family, params, imgsz, gflops, weights, cpu_friendly."""
    specs = available()
    families = sorted({s.family for s in specs})
    if family is not None and family not in families:
        raise DetectionError(f"unknown family {family!r}", hint=f"one of {', '.join(families)}")
    stats = load_stats()
    out = []
    for s in specs:
        if (family and s.family != family) or (cpu and not s.cpu_friendly):
            continue
        st = stats.get(s.name, {})
        out.append(
            {
                "name": s.name,
                "aliases": [{"name": a, "note": alias_note(a)} for a in s.aliases],
                "family": s.family,
                "params_m": st.get("params_m"),
                "imgsz": s.imgsz,
                "gflops": st.get("gflops"),
                "weights": list(s.weights),
                "cpu_friendly": s.cpu_friendly,
                "description": s.description,
            }
        )
    return out
