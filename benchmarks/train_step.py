"""Training-step speed of a registered model on the built-in sample: seconds per iteration and images/s.

    python -m benchmarks.train_step [--model fasterrcnn_tiny] [--imgsz 320] [--batch 4] [--iters 20]

Prints a line per setting and writes reports/bench/train_step.json. Run it on a quiet machine: on 2
cores, another busy process slows torch's threads several-fold.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from detection.data.convert import convert
from detection.data.sample import make_sample
from detection.data.table import read_table
from detection.engine.data import DetectionDataset, make_loader, train_augmentation
from detection.io import write_json
from detection.models import build_model

NAMES = ["stop", "give way", "priority road", "no entry", "keep right"]


def measure(model_name: str, imgsz: int, batch: int, iters: int, warmup: int = 3) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        raw = make_sample(Path(tmp) / "raw", images=batch * (iters + warmup), video_frames=0)
        convert(raw, Path(tmp) / "interim", "gtsdb", NAMES)
        dataset = DetectionDataset(read_table(Path(tmp) / "interim/annotations.csv"), raw, NAMES, train_augmentation())
        batches = list(make_loader(dataset, batch, shuffle=False, workers=0, seed=0))
    torch.manual_seed(0)
    model = build_model(model_name, num_classes=len(NAMES) + 1, imgsz=imgsz).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    times = []
    for i, (images, targets) in enumerate(batches):
        t0 = time.perf_counter()
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    per_iter = sorted(times)[len(times) // 2]
    return {"model": model_name, "imgsz": imgsz, "batch": batch, "iters": len(times), "threads": torch.get_num_threads(),
            "median_s_per_iter": round(per_iter, 4), "images_per_s": round(batch / per_iter, 2)}  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="fasterrcnn_tiny")
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path("reports/bench/train_step.json"))
    args = ap.parse_args(argv)
    result = measure(args.model, args.imgsz, args.batch, args.iters)
    print(json.dumps(result))
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
