"""int8 vs fp32 on a trained checkpoint: mAP on its labelled split and images/s, for each quantization variant.

    python -m benchmarks.quantize --weights models/best.pt --valid data/processed/valid.csv --root data/raw
        [--rounds 3] [--speed-images 20] [--out reports/bench/quantize.json]

Exports ``--weights`` to ONNX (fp32, parity-checked), then writes one int8 graph per variant
(``detection.export.quantize``: MatMul/Gemm weights int8, per_channel x reduce_range) and scores each with
``quantize_export``'s own check (agreement on 3 valid images, COCO mAP / mAP@0.5 on the whole split).
Speed: torch eager (batch 1), the fp32 graph and every int8 graph on the first ``--speed-images``
images of the split, each in a process of its own, interleaved over ``--rounds`` rounds (best round
kept): quote the ratios.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.inference import in_own_process
from detection.data.table import images, read_table
from detection.export.onnx import export_onnx
from detection.export.quantize import quantize_export
from detection.io import write_json

VARIANTS = {"per_channel": (True, False), "per_tensor": (False, False), "per_channel_reduce_range": (True, True), "per_tensor_reduce_range": (False, True)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, required=True)
    ap.add_argument("--valid", type=Path, required=True, help="canonical split table (valid.csv)")
    ap.add_argument("--root", type=Path, required=True, help="folder the table's image paths are relative to")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--speed-images", type=int, default=20)
    ap.add_argument("--threshold", type=float, default=0.5, help="score threshold of the agreement check")
    ap.add_argument("--out", type=Path, default=Path("reports/bench/quantize.json"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    names = list(images(read_table(args.valid))["image"])
    paths = [args.root / n for n in names]
    result: dict[str, Any] = {"weights": str(args.weights), "valid": str(args.valid), "images": len(names)}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        fp32 = tmp / "model.onnx"
        export_onnx(args.weights, fp32, paths[:3])
        graphs = {"onnx": fp32}
        result["variants"] = {}
        for name, (per_channel, reduce_range) in VARIANTS.items():
            out = tmp / f"model.{name}.int8.onnx"
            section = quantize_export(fp32, paths[:3], out=out, valid=args.valid, images_root=args.root, map_tol=1.0, min_matched=0.0,
                                      threshold=args.threshold, per_channel=per_channel, reduce_range=reduce_range)  # fmt: skip
            section["agreement"].pop("images")
            result["variants"][name] = {k: section[k] for k in ("per_channel", "reduce_range", "file_size_bytes", "agreement", "valid")}
            graphs[f"int8_{name}"] = out
            print(name, json.dumps(result["variants"][name]))
        specs = {"torch": {"kind": "torch", "weights": str(args.weights)}, **{k: {"kind": "onnx", "weights": str(p)} for k, p in graphs.items()}}
        speed_paths = [str(p) for p in paths[: args.speed_images]]
        best: dict[str, float] = {}
        for _ in range(args.rounds):  # each backend in a process of its own (see benchmarks.inference)
            for key, spec in specs.items():
                best[key] = max(best.get(key, 0.0), in_own_process({**spec, "paths": speed_paths, "batches": [1]})["batch1"])
        result["images_per_s_batch1"] = {k: round(v, 2) for k, v in best.items()}
        result["vs_torch_batch1"] = {k: round(v / best["torch"], 2) for k, v in best.items()}
        result["vs_onnx_fp32"] = {k: round(v / best["onnx"], 2) for k, v in best.items() if k.startswith("int8")}
        result["fp32_size_bytes"] = fp32.stat().st_size
    print(json.dumps({k: result[k] for k in ("images_per_s_batch1", "vs_torch_batch1", "vs_onnx_fp32")}))
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
