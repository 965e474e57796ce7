"""Training throughput: our engine beside a plain torchvision-references-style loop, interleaved.

    python -m benchmarks.train [--models fasterrcnn_tiny fasterrcnn_mobilenet_v3_large_320_fpn]
                               [--images 40] [--rounds 2] [--imgsz 320] [--batch 4] [--device cpu]

For each model, on the same data (sample images of imgsz x imgsz, our dataset and augmentation),
batch and device, epochs of the loops alternate (reference, ours, each lever set, reference,
...), so a busy shared machine slows them alike and their ratio holds:

- ``reference``: the loop of torchvision's ``references/detection`` ``train_one_epoch`` (SGD with
  momentum and weight decay, warm-up LambdaLR, fp32, a plain shuffled DataLoader, workers 0); the
  model comes from torchvision itself where it has one (random init);
- ``ours``: ``detection.engine.loop.train_one_epoch`` with the seeded, aspect-grouped sampler and the
  default ``train`` params;
- one more row per lever set of ``--levers``: the same loop with those train params. A set is a name
  of ``PRESETS`` (channels_last, bf16, compile, roi128, rpn1000, fast, fast_bf16, ...), ``NAME=JSON``
  or plain JSON (row ``ours_levers``); several sets are several rows of the same interleaved run:

      python -m benchmarks.train --models fasterrcnn_mobilenet_v3_large_320_fpn --images 16 --rounds 3 \
          --levers channels_last bf16 compile roi128 rpn1000 fast fast_bf16

  ``amp: on`` is bf16 autocast on the CPU; ``compile: true`` (benchmark only) runs
  ``model.backbone.compile()`` (inductor; its compile time falls in the warm-up epoch).

Reports seconds per iteration (median over rounds), images/s, the peak RSS seen while each loop
ran (sampled every 10 ms), each round's mean train loss (rows start from the same weights and batches,
so a lever's loss can be set beside the default's) and the speed ratios, as JSON
(reports/bench/train.json).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import torch
import torchvision
from torch.utils.data import DataLoader

from detection.config import TrainParams
from detection.data.convert import convert
from detection.data.sample import make_sample
from detection.data.table import read_table
from detection.engine.data import DetectionDataset, collate, train_augmentation
from detection.engine.loop import train_one_epoch
from detection.engine.optim import amp_dtype, build_optimizer, lr_factor
from detection.engine.sampler import EpochBatchSampler, SeededSamples
from detection.engine.tuning import apply_speed_params
from detection.io import write_json
from detection.models import build_model

NAMES = ["stop", "give way", "priority road", "no entry", "keep right"]
PRESETS: dict[str, dict[str, Any]] = {
    "channels_last": {"channels_last": True},
    "bf16": {"amp": "on"},
    "compile": {"compile": True},
    "roi128": {"roi_batch": 128},
    "rpn1000": {"rpn_post_nms": 1000},
    "fast": {"speed": "fast"},  # train.speed: fast (detection.engine.tuning.SPEED_PRESETS)
    "fast_bf16": {"roi_batch": 128, "rpn_post_nms": 1000, "amp": "on"},
    "fast_channels_last": {"roi_batch": 128, "rpn_post_nms": 1000, "channels_last": True},
    "single_thread_roi_align": {"threaded_roi_align": False},
}


def lever_sets(items: list[str]) -> dict[str, dict[str, Any]]:
    """``--levers`` items (preset name, NAME=JSON or JSON) as {row name: train params}."""
    sets: dict[str, dict[str, Any]] = {}
    for item in items:
        if item in PRESETS:
            sets[item] = PRESETS[item]
        elif item.lstrip().startswith("{"):
            if levers := json.loads(item):
                sets["ours_levers"] = levers
        elif "=" in item:
            name, text = item.split("=", 1)
            sets[name] = json.loads(text)
        else:
            raise SystemExit(f"error: --levers {item!r}: not a preset ({', '.join(PRESETS)}), NAME=JSON or JSON")
    return sets


class PeakRSS:
    """Peak resident memory of this process while the block runs (sampled)."""

    def __enter__(self) -> PeakRSS:
        self.proc, self.peak, self._stop = psutil.Process(), 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.01)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def reference_model(name: str, imgsz: int) -> torch.nn.Module:
    if hasattr(torchvision.models.detection, name):
        return getattr(torchvision.models.detection, name)(weights=None, weights_backbone=None, num_classes=len(NAMES) + 1, min_size=imgsz, max_size=imgsz)
    return build_model(name, num_classes=len(NAMES) + 1, imgsz=imgsz)  # our own models: the same model, plain loop


def reference_epoch(model, optimizer, scheduler, loader, device) -> float:
    """torchvision references/detection/engine.py train_one_epoch, without its logging; the mean loss."""
    model.train()
    total, count = 0.0, 0
    for images, targets in loader:
        images = [image.to(device) for image in images]
        targets = [{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in t.items()} for t in targets]
        loss_dict = model(images, targets)
        losses = sum(loss for loss in loss_dict.values())
        optimizer.zero_grad()
        losses.backward()
        optimizer.step()
        scheduler.step()
        total, count = total + float(losses.detach()), count + 1
    return total / max(1, count)


def _setup_reference(name: str, dataset, args) -> dict[str, Any]:
    torch.manual_seed(0)
    model = reference_model(name, args.imgsz).to(args.device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.02, momentum=0.9, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: min(1.0, 0.001 + it / 50))
    loader = DataLoader(dataset, batch_size=args.batch, shuffle=True, num_workers=0, collate_fn=collate, generator=torch.Generator().manual_seed(0))
    return {"run": lambda epoch: reference_epoch(model, optimizer, scheduler, loader, args.device), "iters": len(loader)}


def _setup_ours(name: str, dataset, args, levers: dict[str, Any]) -> dict[str, Any]:
    levers = dict(levers)
    compile_backbone = levers.pop("compile", False)
    p = TrainParams(batch=args.batch, imgsz=args.imgsz, **levers)
    torch.manual_seed(0)
    model = build_model(name, num_classes=len(NAMES) + 1, imgsz=args.imgsz).to(args.device)
    apply_speed_params(model, p.roi_batch, p.rpn_batch, p.rpn_post_nms, p.channels_last, p.threaded_roi_align, p.speed)
    if compile_backbone:
        model.backbone.compile()
    dtype = amp_dtype(p.amp, torch.device(args.device))
    optimizer = build_optimizer(model, p.optimizer, 0.02, p.momentum, p.weight_decay)
    sampler = EpochBatchSampler(len(dataset), args.batch, seed=0)
    loader = DataLoader(SeededSamples(dataset), batch_sampler=sampler, num_workers=0, collate_fn=collate, generator=torch.Generator().manual_seed(0))
    n = sampler.batches_per_epoch()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor("cosine", 100 * n, n, 50))

    def run(epoch: int) -> float:
        sampler.set_epoch(epoch)
        return train_one_epoch(model, optimizer, scheduler, loader, torch.device(args.device), epoch, total=n, dtype=dtype, show=False)["loss"]

    return {"run": run, "iters": n}


def measure(name: str, dataset, args, sets: dict[str, dict[str, Any]]) -> dict[str, Any]:
    loops = {"reference": _setup_reference(name, dataset, args), "ours": _setup_ours(name, dataset, args, {})}
    if name in args.lever_models:
        loops.update({key: _setup_ours(name, dataset, args, levers) for key, levers in sets.items()})
    warm: dict[str, float] = {}
    for key, loop in loops.items():  # warm-up: one epoch each (allocator, oneDNN kernels, compilation)
        t0 = time.perf_counter()
        loop["run"](0)
        warm[key] = time.perf_counter() - t0
    times: dict[str, list[float]] = {k: [] for k in loops}
    losses: dict[str, list[float]] = {k: [] for k in loops}
    peaks: dict[str, int] = dict.fromkeys(loops, 0)
    for r in range(1, args.rounds + 1):
        for key, loop in loops.items():
            with PeakRSS() as rss:
                t0 = time.perf_counter()
                losses[key].append(loop["run"](r))
                times[key].append((time.perf_counter() - t0) / loop["iters"])
            peaks[key] = max(peaks[key], rss.peak)
            print(f"{name} round {r} {key}: {times[key][-1]:.3f} s/iter, loss {losses[key][-1]:.4f}", flush=True)
    out: dict[str, Any] = {"model": name, "levers": {k: v for k, v in sets.items() if k in loops}, "loops": {}}
    for key in loops:
        s = statistics.median(times[key])
        out["loops"][key] = {
            "s_per_iter": round(s, 3), "images_per_s": round(args.batch / s, 2), "peak_rss_mb": round(peaks[key] / 2**20),
            "per_round": [round(t, 3) for t in times[key]], "warmup_s": round(warm[key], 1), "loss_per_round": [round(v, 4) for v in losses[key]],
        }  # fmt: skip
    ref = out["loops"]["reference"]["s_per_iter"]
    out["speedup_vs_reference"] = {k: round(ref / v["s_per_iter"], 2) for k, v in out["loops"].items() if k != "reference"}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["fasterrcnn_tiny", "fasterrcnn_mobilenet_v3_large_320_fpn"])
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--levers", nargs="*", default=["roi128"], help="lever sets, one row each: preset names, NAME=JSON or JSON ('{}': none)")
    ap.add_argument("--lever-models", nargs="+", default=["fasterrcnn_mobilenet_v3_large_320_fpn"], help="models that get ours_levers")
    ap.add_argument("--out", type=Path, default=Path("reports/bench/train.json"))
    args = ap.parse_args(argv)
    sets = lever_sets(args.levers)
    with tempfile.TemporaryDirectory() as tmp:
        raw = make_sample(Path(tmp) / "raw", images=args.images, width=args.imgsz, height=args.imgsz, video_frames=0)
        convert(raw, Path(tmp) / "interim", "gtsdb", NAMES)
        dataset = DetectionDataset(read_table(Path(tmp) / "interim/annotations.csv"), raw, NAMES, train_augmentation())
        result = {
            "device": args.device, "threads": torch.get_num_threads(), "images": args.images, "imgsz": args.imgsz, "batch": args.batch,
            "rounds": args.rounds, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "results": [measure(name, dataset, args, sets) for name in args.models],
        }  # fmt: skip
    print(json.dumps(result, indent=2))
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
