"""Inference speed and ONNX parity: torch eager vs onnxruntime, batch 1 vs 4, video with vs without overlap.

    python -m benchmarks.inference [--model fasterrcnn_mobilenet_v3_large_320_fpn] [--imgsz 320]
        [--images 20] [--frames 60] [--rounds 2] [--proposals 100] [--parity] [--bf16] [--ort-settings]
        [--out reports/bench/inference.json]

- images/s on real GTSDB images (../shared/data/gtsdb, else the built-in sample) for the same model
  (random init: speed does not depend on training) in torch eager and onnxruntime, batch 1 and 4.
  **Each backend runs in a process of its own** (as `detection predict` does): in one process the
  thread pool of the backend that ran last keeps spinning (libgomp's OpenMP workers, onnxruntime's
  intra-op threads) and takes the 2 cores from the next one, which once made torch look 10x slower
  than it is. The processes are interleaved over ``--rounds`` rounds and the best round of each is
  kept, so a neighbour's load hits them alike: quote the ratios. ``--proposals N`` adds an fp32
  graph exported with N RPN proposals per image (``onnx_p<N>``; a two-stage model's own count is in
  ``proposals``): faster, and its accuracy is ``benchmarks.proposals``'s to measure. The int8 graph
  (``detection.export.quantize``: int8 MatMul/Gemm weights) runs in the same rounds (``onnx_int8_*``,
  ``int8_vs_torch_batch1``); ``--bf16`` adds torch eager under ``torch.autocast("cpu", bfloat16)``.
- ``--ort-settings``: int8 and fp32 graphs at batch 1 under several onnxruntime session settings
  (intra/inter-op threads, parallel execution, intra-op spinning off), a process each, interleaved
  the same way.
- end-to-end video FPS on ../shared/data/videos/car-detection.mp4 (first ``--frames`` frames, ONNX
  fp32 under ``video``, int8 under ``video_int8``, fewer proposals under ``video_p<N>``),
  decode/model/encode overlapped vs one after another, interleaved the same way; the target is
  end-to-end within 1.3x of model-only FPS.
- ``--parity``: ONNX parity on real images (3 GTSDB + 3 BCCD) for several model families at a small size.

Every figure is printed with the size rule (longest side = imgsz). Writes ``--out`` as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from detection.data.images import read_image_rgb
from detection.engine.checkpoint import save_checkpoint
from detection.errors import DetectionError
from detection.export.onnx import export_onnx
from detection.export.quantize import quantize_int8
from detection.inference.predictor import (
    Predictor,
    cpu_cores,
    load_predictor,
    onnx_providers,
    onnx_session_options,
)
from detection.inference.size import size_rule
from detection.inference.video import infer_video
from detection.io import write_json
from detection.models import build_model

SHARED = Path(__import__("os").environ.get("DETECTION_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
NAMES = ["a", "b", "c", "d"]
PARITY_MODELS = [("fasterrcnn_tiny", 320), ("fasterrcnn_mobilenet_v3_large_320_fpn", 320), ("fcos_resnet50_fpn", 256), ("retinanet_resnet50_fpn", 256)]


def real_images(n: int, tmp: Path) -> list[Path]:
    found = sorted((SHARED / "gtsdb").glob("*.jpg"))[:n] if (SHARED / "gtsdb").is_dir() else []
    if found:
        return found
    from detection.data.sample import make_sample

    return sorted(make_sample(tmp / "sample", images=n, video_frames=0).glob("*.ppm"))


def spread_scores(model: torch.nn.Module) -> None:
    """Make an untrained detector's scores spread out and pass its threshold, as a trained one's do:
    a random Faster R-CNN head scores every box ~1/(classes+1) (near-exact ties between different
    boxes), a random RetinaNet/FCOS head ~0.01 (below its threshold: nothing to compare)."""
    with torch.no_grad():
        if hasattr(model, "roi_heads"):
            model.roi_heads.box_predictor.cls_score.weight.mul_(3.0)
        else:  # the prior bias -4.6 (score 0.01) -> 0 (score ~0.5, spread by the features)
            model.head.classification_head.cls_logits.bias.fill_(0.0)


def checkpoint(name: str, imgsz: int, path: Path, spread: bool = False) -> Path:
    torch.manual_seed(0)
    model = build_model(name, num_classes=len(NAMES) + 1, imgsz=imgsz)
    if spread:
        spread_scores(model)
    return save_checkpoint(path, model, model_name=name, class_names=NAMES, imgsz=imgsz, epoch=0, params={})


def images_per_s(predictor: Any, images: list, batch: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(images), batch):
        predictor.predict_batch(images[i : i + batch], 0.5)
    return len(images) / (time.perf_counter() - start)


def bf16_predictor(pt: Path) -> Predictor:
    """The torch predictor of ``pt`` with its forward pass under ``torch.autocast("cpu", bfloat16)``."""
    from detection.engine.checkpoint import load_model

    model, _ = load_model(pt, "cpu")
    base = load_predictor(pt)

    def run_many(chws: list) -> list:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            outs = model([torch.from_numpy(c) for c in chws])
        return [(o["boxes"].float().numpy(), o["labels"].numpy(), o["scores"].float().numpy()) for o in outs]

    return dataclasses.replace(base, run=lambda chw: run_many([chw])[0], run_many=run_many)


def measure(spec: dict[str, Any]) -> dict[str, float]:
    """images/s of one backend at each batch of ``spec["batches"]``, in this process (the worker side of
    ``in_own_process``): ``kind`` torch | torch_bf16 | onnx, ``weights``, ``paths``, optional ``threads``
    and ``proposals`` (torch) and ``ort`` (a setting of ``ORT_SETTINGS``)."""
    images = [read_image_rgb(Path(p)) for p in spec["paths"]]
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    kind, weights = spec["kind"], Path(spec["weights"])
    if kind == "torch_bf16":
        pred = bf16_predictor(weights)
    else:
        pred = session_predictor(weights, ORT_SETTINGS[spec["ort"]]) if spec.get("ort") else load_predictor(weights, proposals=spec.get("proposals"))
    pred.predict_batch(images[:4], 0.5)  # warm-up
    return {f"batch{b}": images_per_s(pred, images, int(b)) for b in spec["batches"]}


def in_own_process(spec: dict[str, Any]) -> dict[str, float]:
    """``measure(spec)`` in a fresh Python process: no other backend's threads in it."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks.inference", "--measure", json.dumps(spec)],
                          capture_output=True, text=True, check=False, cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    if proc.returncode:
        raise RuntimeError(f"benchmark worker failed ({spec['kind']}): {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def image_speed(
    pt: Path, onnx: Path, paths: list[Path], rounds: int, int8: Path | None = None, bf16: bool = False, graphs: dict[str, Path] | None = None
) -> dict[str, Any]:
    """images/s of each backend at batch 1 and 4; ``graphs``: more .onnx files, by backend name."""
    common = {"paths": [str(p) for p in paths], "batches": [1, 4]}
    backends = {"torch": {"kind": "torch", "weights": str(pt)}, "onnx": {"kind": "onnx", "weights": str(onnx)}}
    backends |= {name: {"kind": "onnx", "weights": str(path)} for name, path in (graphs or {}).items()}
    if cpu_cores() > 1:  # torch's OpenMP threads on a small CPU: one thread too
        backends["torch_1thread"] = {"kind": "torch", "weights": str(pt), "threads": 1}
    if int8 is not None:
        backends["onnx_int8"] = {"kind": "onnx", "weights": str(int8)}
    if bf16:  # bf16 autocast: fast only where the CPU has AVX512_BF16 or AMX
        backends["torch_bf16"] = {"kind": "torch_bf16", "weights": str(pt)}
    best: dict[str, float] = {}
    for _ in range(rounds):
        for backend, spec in backends.items():
            for key, value in in_own_process({**common, **spec}).items():
                best[f"{backend}_{key}"] = max(best.get(f"{backend}_{key}", 0.0), value)
    h, w = read_image_rgb(paths[0]).shape[:2]
    torch_best = max(v for k, v in best.items() if k.startswith("torch") and "bf16" not in k)
    return {
        "images": len(paths),
        "image_size": f"{w}x{h}",
        "processes": "one per backend and round (no other backend's threads in it)",
        "images_per_s": {k: round(v, 2) for k, v in best.items()},
        "onnx_vs_torch_batch1": round(best["onnx_batch1"] / best["torch_batch1"], 2),
        "onnx_vs_torch_batch4": round(best["onnx_batch4"] / best["torch_batch4"], 2),
        "torch_batch4_vs_batch1": round(best["torch_batch4"] / best["torch_batch1"], 2),
        "best_vs_torch_batch1": round(max(best.values()) / best["torch_batch1"], 2),
        "onnx_best_vs_torch_best": round(max(best["onnx_batch1"], best["onnx_batch4"]) / torch_best, 2),
        **({"int8_vs_torch_batch1": round(best["onnx_int8_batch1"] / best["torch_batch1"], 2),
            "int8_vs_torch_batch4": round(best["onnx_int8_batch4"] / best["torch_batch4"], 2),
            "int8_vs_onnx_batch1": round(best["onnx_int8_batch1"] / best["onnx_batch1"], 2)} if int8 is not None else {}),
        **({"bf16_vs_torch_batch1": round(best["torch_bf16_batch1"] / best["torch_batch1"], 2)} if bf16 else {}),
        **{f"{name}_vs_torch_batch1": round(best[f"{name}_batch1"] / best["torch_batch1"], 2) for name in graphs or {}},
    }


ORT_SETTINGS: dict[str, dict[str, Any]] = {
    "default": {},  # detection.inference.predictor.onnx_session_options: intra = cores, inter 1, sequential
    "intra1": {"intra_op_num_threads": 1},
    "no_spinning": {"config": {"session.intra_op.allow_spinning": "0"}},
    "parallel_inter2": {"execution_mode": "ORT_PARALLEL", "inter_op_num_threads": 2},
    "intra_default": {"intra_op_num_threads": 0},  # onnxruntime's own choice (physical cores of the machine)
}


def session_predictor(path: Path, setting: dict[str, Any]) -> Predictor:
    """``load_predictor(path)`` with its onnxruntime session built under other ``setting``s."""
    import onnxruntime as ort

    opts = onnx_session_options()
    for key, value in setting.items():
        if key == "config":
            for k, v in value.items():
                opts.add_session_config_entry(k, v)
        else:
            setattr(opts, key, getattr(ort.ExecutionMode, value) if key == "execution_mode" else value)
    session = ort.InferenceSession(str(path), sess_options=opts, providers=onnx_providers("cpu"))
    names = [o.name for o in session.get_outputs()]
    feed = session.get_inputs()[0].name
    return dataclasses.replace(load_predictor(path), run=lambda chw: tuple(session.run(names, {feed: chw})))


def ort_settings(graphs: dict[str, Path], paths: list[Path], rounds: int) -> dict[str, Any]:
    """images/s at batch 1 of each graph under each of ``ORT_SETTINGS``, a process each, interleaved over ``rounds``."""
    common = {"paths": [str(p) for p in paths], "batches": [1], "kind": "onnx"}
    best: dict[tuple[str, str], float] = {}
    for _ in range(rounds):
        for g, path in graphs.items():
            for name in ORT_SETTINGS:
                value = in_own_process({**common, "weights": str(path), "ort": name})["batch1"]
                best[(g, name)] = max(best.get((g, name), 0.0), value)
    return {
        "settings": {k: str(v) for k, v in ORT_SETTINGS.items()},
        "images_per_s": {f"{g}_{name}": round(v, 2) for (g, name), v in best.items()},
        "vs_default": {f"{g}_{name}": round(v / best[(g, "default")], 2) for (g, name), v in best.items()},
    }


def video_speed(onnx: Path, frames: int, rounds: int) -> dict[str, Any] | None:  # fp32 or int8 .onnx alike
    video = SHARED / "videos" / "car-detection.mp4"
    if not video.is_file():
        return None
    pred = load_predictor(onnx)
    runs: dict[str, list[dict[str, Any]]] = {"overlap": [], "sequential": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            for mode in ("sequential", "overlap"):
                runs[mode].append(infer_video(video, onnx, Path(tmp) / mode, max_frames=frames, overlap=mode == "overlap", predictor=pred, track=True))
    best = {mode: max(r, key=lambda m: m["fps_end_to_end"]) for mode, r in runs.items()}
    keys = ("fps_decode", "fps_model", "fps_encode", "fps_end_to_end")
    over = best["overlap"]
    return {
        "video": str(video),
        "frames": frames,
        "size": f"{over['width']}x{over['height']}",
        **{mode: {k: m[k] for k in keys} for mode, m in best.items()},
        "overlap_vs_sequential_end_to_end": round(over["fps_end_to_end"] / best["sequential"]["fps_end_to_end"], 2),
        "model_vs_end_to_end_overlap": round(over["fps_model"] / over["fps_end_to_end"], 2),
    }


def parity(tmp: Path, spread: bool) -> list[dict[str, Any]]:
    images = sorted((SHARED / "gtsdb").glob("*.jpg"))[:3] + sorted((SHARED / "bccd_voc" / "BCCD" / "JPEGImages").glob("*.jpg"))[:3]
    if not images:
        return []
    rows = []
    for name, imgsz in PARITY_MODELS:
        pt = checkpoint(name, imgsz, tmp / f"{name}.pt", spread)
        try:
            export_onnx(pt, tmp / f"{name}.onnx", images, report=tmp / f"{name}.json")
        except DetectionError as exc:  # parity failed: the report is still written; record it
            print(f"{name}: {exc.message}")
        report = json.loads((tmp / f"{name}.json").read_text())
        keys = ("ok", "matched", "unmatched_torch", "unmatched_onnx", "max_box_diff_px", "max_score_diff", "export_seconds")
        rows.append({"model": name, "imgsz": imgsz, "scores": "spread" if spread else "random init", "images": len(images), **{k: report[k] for k in keys},
                     "borderline": sum(r["borderline_torch"] + r["borderline_onnx"] for r in report["images"]),
                     "failed_images": [Path(r["image"]).name for r in report["images"] if not r["ok"]]})  # fmt: skip
        print(json.dumps(rows[-1]))
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="fasterrcnn_mobilenet_v3_large_320_fpn")
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--parity", action="store_true", help="also check ONNX parity for several model families")
    ap.add_argument("--spread-only", action="store_true", help="parity only on the score-spread variant of each model")
    ap.add_argument("--no-speed", action="store_true", help="skip the speed measurements")
    ap.add_argument("--bf16", action="store_true", help="also torch eager under torch.autocast('cpu', bfloat16)")
    ap.add_argument("--ort-settings", action="store_true", help="also fp32/int8 ONNX at batch 1 under several onnxruntime session settings")
    ap.add_argument("--proposals", type=int, default=100, help="also an fp32 graph with this many RPN proposals per image (onnx_p<N>); 0: none")
    ap.add_argument("--out", type=Path, default=Path("reports/bench/inference.json"))
    ap.add_argument("--measure", help=argparse.SUPPRESS)  # worker: JSON spec of one backend (in_own_process)
    args = ap.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(json.loads(args.measure))))
        return {}
    logging.basicConfig(level=logging.WARNING)
    result: dict[str, Any] = {"model": args.model, "imgsz": args.imgsz, "size_rule": size_rule(args.imgsz), "device": "cpu",
                              "torch_threads": torch.get_num_threads(), "onnx_intra_op_threads": cpu_cores()}  # fmt: skip
    print(f"size rule: {result['size_rule']}")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if not args.no_speed:
            paths = real_images(args.images, tmp)
            pt = checkpoint(args.model, args.imgsz, tmp / "model.pt")
            onnx = tmp / "model.onnx"
            own = export_onnx(pt, onnx, paths[:2])["proposals"]  # the model's own count (None: one-stage)
            int8 = quantize_int8(onnx, tmp / "model.int8.onnx")
            graphs: dict[str, Path] = {}
            if args.proposals and own is not None:  # a two-stage model: also a graph with fewer RPN proposals
                graphs[f"onnx_p{args.proposals}"] = tmp / f"model.p{args.proposals}.onnx"
                export_onnx(pt, graphs[f"onnx_p{args.proposals}"], paths[:2], proposals=args.proposals)
            result["images"] = image_speed(pt, onnx, paths, args.rounds, int8=int8, bf16=args.bf16, graphs=graphs)
            result["images"]["proposals"] = {"torch": own, "onnx": own, **{k: args.proposals for k in graphs}}
            print(json.dumps(result["images"]))
            result["video"] = video_speed(onnx, args.frames, args.rounds)
            print(json.dumps(result["video"]))
            result["video_int8"] = video_speed(int8, args.frames, args.rounds)
            print(json.dumps(result["video_int8"]))
            for name, graph in graphs.items():  # fewer proposals: a faster model, so I/O is a larger share
                result[f"video_{name.removeprefix('onnx_')}"] = video_speed(graph, args.frames, args.rounds)
                print(json.dumps(result[f"video_{name.removeprefix('onnx_')}"]))
            if args.ort_settings:
                result["ort_settings"] = ort_settings({"onnx": onnx, "onnx_int8": int8}, paths, args.rounds)
                print(json.dumps(result["ort_settings"]))
        if args.parity:
            result["parity"] = ([] if args.spread_only else parity(tmp, spread=False)) + parity(tmp, spread=True)
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
