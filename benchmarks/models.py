"""The model zoo's speed/size table: pick a backbone for a speed budget.

    python -m benchmarks.models [--models NAME ...] [--family retinanet] [--cpu] [--repeats 1] [--budget-s 600] [--stats]
    python -m benchmarks.models --missing --size-only --stats   # params + GFLOPs of every model not yet in stats.json

For every listed model (``detection models``; CPU-friendly ones first): parameters, GFLOPs of one
eval forward at its default input size (``torch.utils.flop_counter.FlopCounterMode``, 2 FLOPs per
multiply-add, convolutions and matmuls), CPU latency per image in eval mode at 320 and 640 px, and the
time of one train step (SGD, forward + backward + step) on a batch of 2 at 320 px. Random init, random
images of 4:3 aspect, medians of ``--repeats`` runs after one warm-up. Rows are written as they come
(reports/bench/models.json and models.md), so a run stopped by ``--budget-s`` keeps what it measured.
``--stats`` also records params and GFLOPs in detection/models/stats.json, which `detection models` shows.
On a shared machine latencies are inflated; each row records the load average it ran under.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from detection.io import write_json
from detection.models import available, build_model, get_spec
from detection.models.catalog import STATS, load_stats, model_size

NUM_CLASSES = 6


def _resize(model: torch.nn.Module, size: int) -> None:
    """Make the model's transform resize to ``size`` (SSD has a fixed size too)."""
    t = model.transform
    t.min_size, t.max_size = (size,), size
    if getattr(t, "fixed_size", None) is not None:
        t.fixed_size = (size, size)


def _image(size: int) -> torch.Tensor:
    return torch.rand(3, size * 3 // 4, size, generator=torch.Generator().manual_seed(size))


def _targets(family: str) -> list[dict[str, torch.Tensor]]:
    out = []
    for i in range(2):
        t = {"boxes": torch.tensor([[20.0 + i, 30.0, 120.0, 150.0], [150.0, 60.0, 260.0, 200.0]]), "labels": torch.tensor([1, 2])}
        if family == "keypoint_rcnn":
            kps = torch.zeros(2, 17, 3)
            kps[:, :, 0], kps[:, :, 1], kps[:, :, 2] = torch.linspace(30, 110, 17), torch.linspace(40, 140, 17), 1
            t["keypoints"] = kps
        out.append(t)
    return out


def _median_time(fn: Any, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(name: str, repeats: int, size_only: bool = False) -> dict[str, Any]:
    spec = get_spec(name)
    t0 = time.perf_counter()
    torch.manual_seed(0)
    model = build_model(name, num_classes=NUM_CLASSES, weights="none", imgsz=spec.imgsz).eval()
    build_s = time.perf_counter() - t0
    row: dict[str, Any] = {"name": name, "family": spec.family, "cpu_friendly": spec.cpu_friendly, "imgsz": spec.imgsz}
    params, flops = model_size(model, _image(spec.imgsz))
    row["params_m"], row["gflops"] = round(params / 1e6, 2), round(flops / 1e9, 2)
    row["load_avg"] = round(os.getloadavg()[0], 1)
    if size_only:
        return row
    with torch.no_grad():
        for size in (320, 640):
            _resize(model, size)
            image = _image(size)
            row[f"cpu_ms_{size}"] = round(1000 * _median_time(lambda: model([image]), repeats), 1)
    _resize(model, 320)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    images, targets = [_image(320), _image(320)], _targets(spec.family)

    def step() -> None:
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    row["train_s_b2_320"] = round(_median_time(step, repeats), 3)
    row["build_s"] = round(build_s, 2)
    row["threads"] = torch.get_num_threads()
    row["load_avg"] = round(os.getloadavg()[0], 1)
    return row


COLUMNS = [
    ("name", "model"), ("family", "family"), ("params_m", "params (M)"), ("imgsz", "size"), ("gflops", "GFLOPs @size"),
    ("cpu_ms_320", "CPU ms/img 320"), ("cpu_ms_640", "CPU ms/img 640"), ("train_s_b2_320", "train step s (b2, 320)"), ("load_avg", "load"),
]  # fmt: skip


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(h for _, h in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join(str(r.get(k, "-")) for k, _ in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", help="names (default: every listed model)")
    ap.add_argument("--family")
    ap.add_argument("--cpu", action="store_true", help="only CPU-friendly models")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--budget-s", type=float, default=float("inf"), help="start no new model after this many seconds")
    ap.add_argument("--out", type=Path, default=Path("reports/bench/models.json"))
    ap.add_argument("--stats", action="store_true", help="record params and GFLOPs in detection/models/stats.json")
    ap.add_argument("--size-only", action="store_true", help="params and GFLOPs only (seconds per model), no timings")
    ap.add_argument("--missing", action="store_true", help="only models that detection/models/stats.json lacks")
    args = ap.parse_args(argv)
    names = args.models or [s.name for s in sorted(available(), key=lambda s: (not s.cpu_friendly, s.name))]
    names = [n for n in names if (not args.family or get_spec(n).family == args.family) and (not args.cpu or get_spec(n).cpu_friendly)]
    if args.missing:
        names = [n for n in names if n not in load_stats()]
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for name in names:
        if time.perf_counter() - started > args.budget_s:
            print(f"budget of {args.budget_s:.0f} s spent: {len(names) - len(rows)} models left unmeasured")
            break
        try:
            row = measure(name, args.repeats, args.size_only)
        except Exception as exc:  # noqa: BLE001 - a benchmark reports a model that fails and goes on
            row = {"name": name, "error": f"{type(exc).__name__}: {exc}"[:200]}
        rows.append(row)
        print(json.dumps(row), flush=True)
        write_json(args.out, rows)
        args.out.with_suffix(".md").write_text(markdown(rows))
        if args.stats and "error" not in row:
            stats = load_stats()
            stats[name] = {k: row[k] for k in ("params_m", "gflops", "imgsz")}
            write_json(STATS, dict(sorted(stats.items())))
    return rows


if __name__ == "__main__":
    main()
