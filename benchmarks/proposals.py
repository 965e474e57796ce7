"""RPN proposals per image vs accuracy and speed, on a trained two-stage checkpoint and its labelled split.

    python -m benchmarks.proposals --weights models/best.pt --valid data/processed/valid.csv --root data/raw
        [--counts 100 75 50] [--int8] [--rounds 3] [--speed-images 20] [--out reports/bench/proposals.json]

For the model's own count and each of ``--counts``: COCO mAP and mAP@0.5 on the whole split (torch,
threshold 0: the same code that ``detection export --proposals`` checks with), then the ONNX graph
exported with that count (parity-checked against torch at that count) and, with ``--int8``, its int8
graph (``detection.export.quantize``; its mAP measured on the graph itself). Speed: images/s at batch
1 on the first ``--speed-images`` images of the split for torch eager with the model's own count
(batch 1 and 4: the baseline), torch eager at each other count (batch 1: the count's share of
the gain) and every graph, each in a process of its own
(``benchmarks.inference.in_own_process``), interleaved over ``--rounds`` rounds, best round kept:
quote the ratios (``vs_torch_batch1``). Writes ``--out`` as JSON and prints a table.
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
from detection.export.quantize import quantize_int8, split_map
from detection.inference.predictor import load_predictor
from detection.inference.size import size_rule
from detection.io import write_json


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, required=True, help="a two-stage checkpoint (.pt)")
    ap.add_argument("--valid", type=Path, required=True, help="canonical split table (valid.csv)")
    ap.add_argument("--root", type=Path, required=True, help="folder the table's image paths are relative to")
    ap.add_argument("--counts", type=int, nargs="+", default=[100, 75, 50], help="proposal counts to try besides the model's own")
    ap.add_argument("--int8", action="store_true", help="also the int8 graph of each count")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--speed-images", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path("reports/bench/proposals.json"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    table = read_table(args.valid)
    paths = [args.root / n for n in images(table)["image"]]
    torch_pred = load_predictor(args.weights)
    own = torch_pred.proposals
    if own is None:
        raise SystemExit(f"{args.weights}: not a two-stage detector (no RPN proposals to change)")
    counts = [own, *[c for c in args.counts if c != own]]
    result: dict[str, Any] = {"weights": str(args.weights), "model": torch_pred.model_name, "valid": str(args.valid), "images": len(paths),
                              "size_rule": size_rule(torch_pred.imgsz), "model_proposals": own, "speed_images": min(args.speed_images, len(paths))}  # fmt: skip
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        graphs: dict[str, Path] = {}
        for n in counts:
            m = split_map(load_predictor(args.weights, proposals=n), table, args.root)
            onnx = tmp / f"p{n}.onnx"
            report = export_onnx(args.weights, onnx, paths[:2], proposals=n)
            rows[f"onnx_p{n}"] = {"proposals": n, "backend": "onnx fp32", "map": m["map"], "map50": m["map50"], "parity_matched": report["matched"]}
            graphs[f"onnx_p{n}"] = onnx
            if args.int8:
                q = quantize_int8(onnx, tmp / f"p{n}.int8.onnx")
                mq = split_map(load_predictor(q), table, args.root)
                rows[f"int8_p{n}"] = {"proposals": n, "backend": "onnx int8", "map": mq["map"], "map50": mq["map50"]}
                graphs[f"int8_p{n}"] = q
            print(json.dumps({k: v for k, v in rows.items() if k.endswith(f"p{n}")}), flush=True)
        speed_paths = [str(p) for p in paths[: args.speed_images]]
        best: dict[str, float] = {}
        for _ in range(args.rounds):
            for key, b in in_own_process({"kind": "torch", "weights": str(args.weights), "paths": speed_paths, "batches": [1, 4]}).items():
                best[f"torch_{key}"] = max(best.get(f"torch_{key}", 0.0), b)
            for n in counts[1:]:  # torch eager at the same counts: how much of the gain is the count alone
                value = in_own_process({"kind": "torch", "weights": str(args.weights), "paths": speed_paths, "batches": [1], "proposals": n})["batch1"]
                best[f"torch_p{n}"] = max(best.get(f"torch_p{n}", 0.0), value)
            for name, path in graphs.items():
                value = in_own_process({"kind": "onnx", "weights": str(path), "paths": speed_paths, "batches": [1]})["batch1"]
                best[name] = max(best.get(name, 0.0), value)
    base = best["torch_batch1"]
    # torch's mAP at a count is the fp32 graph's row (measured on torch; the graph matches it by parity)
    ordered: dict[str, dict[str, Any]] = {}
    for n in counts:  # per count: torch eager, the fp32 graph, its int8 graph
        ordered["torch" if n == own else f"torch_p{n}"] = {"proposals": n, "backend": "torch eager", "map": rows[f"onnx_p{n}"]["map"], "map50": rows[f"onnx_p{n}"]["map50"]}
        ordered |= {k: rows[k] for k in (f"onnx_p{n}", f"int8_p{n}") if k in rows}
    rows = ordered
    for name, row in rows.items():
        row["images_per_s"] = round(best["torch_batch1"] if name == "torch" else best[name], 2)
        row["vs_torch_batch1"] = round(row["images_per_s"] / base, 2)
        row["map50_drop"] = round(rows["torch"]["map50"] - row["map50"], 4)
    result["torch_batch4_images_per_s"] = round(best["torch_batch4"], 2)
    result["rows"] = rows
    print(f"{'backend':<12} {'proposals':>9} {'mAP':>7} {'mAP@0.5':>8} {'drop@0.5':>8} {'img/s':>7} {'vs torch':>8}")
    for row in rows.values():
        print(f"{row['backend']:<12} {row['proposals']:>9} {row['map']:>7.4f} {row['map50']:>8.4f} {row['map50_drop']:>8.4f} {row['images_per_s']:>7.2f} {row['vs_torch_batch1']:>7.2f}x")
    print(f"torch eager batch 4: {result['torch_batch4_images_per_s']} img/s; {result['size_rule']}")
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
