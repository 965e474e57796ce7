"""Converting VOC XML to COCO JSON: ``detection``'s reader + writer beside a plain ``xml.etree`` loop, same files, one run.

    python -m benchmarks.data [--files 10000] [--rounds 3]

Makes ``--files`` VOC XML files (4 objects each; every image a hard link of one small JPEG), then runs,
interleaved round by round, each side in its own subprocess (imports before the clock): ours
(``read_voc`` as ``convert`` calls it: lxml without entity expansion, every field and box checked, each
image resolved; then ``write_coco``), ``ours+headers`` (the same, each image's header also opened to
check ``<size>``, as ``read_voc`` does standalone), and the baseline (``xml.etree.ElementTree.parse``
per file, a COCO dict built by hand, ``json.dumps``, no checks).
Prints files/s (median of the rounds), the ratio ours / baseline and each side's peak RSS (the
process's max resident set, imports included), and writes reports/bench/data.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["car", "person", "bike", "sign"]


def make_dataset(root: Path, n: int) -> Path:
    """``n`` VOC XML files + hard-linked 64x48 JPEGs under ``root``."""
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    ok, data = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8))
    first = root / "JPEGImages" / "img_000000.jpg"
    first.write_bytes(data.tobytes())
    rng = np.random.default_rng(1)
    for i in range(n):
        name = f"img_{i:06d}"
        if i:
            os.link(first, root / "JPEGImages" / f"{name}.jpg")
        objects = []
        for k in range(4):
            x1, y1 = (int(v) for v in rng.integers(1, 30, 2))
            objects.append(f"<object><name>{CLASSES[k]}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>"
                           f"<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x1 + 20}</xmax><ymax>{y1 + 15}</ymax></bndbox></object>")  # fmt: skip
        (root / "Annotations" / f"{name}.xml").write_text(
            f"<annotation><folder>JPEGImages</folder><filename>{name}.jpg</filename><size><width>64</width><height>48</height>"
            f"<depth>3</depth></size><segmented>0</segmented>{''.join(objects)}</annotation>\n"
        )
    return root


def ours(src: Path, out: Path, check_size: bool = False) -> None:
    from detection.data.formats.coco import write_coco
    from detection.data.formats.voc import read_voc

    df, _ = read_voc(src, check_size=check_size)
    write_coco(df, out, CLASSES)


def etree_loop(src: Path, out: Path) -> None:
    import xml.etree.ElementTree as ET

    ids = {n: i + 1 for i, n in enumerate(CLASSES)}
    images, annotations = [], []
    for i, xml in enumerate(sorted((src / "Annotations").glob("*.xml")), 1):
        root = ET.parse(xml).getroot()
        images.append({"id": i, "file_name": root.findtext("filename"), "width": int(root.findtext("size/width")), "height": int(root.findtext("size/height"))})
        for obj in root.iter("object"):
            b = [float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
            w, h = b[2] - b[0] + 1, b[3] - b[1] + 1
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": ids[obj.findtext("name")],
                                "bbox": [b[0] - 1, b[1] - 1, w, h], "area": w * h, "iscrowd": 0})  # fmt: skip
    data = {"images": images, "annotations": annotations, "categories": [{"id": i, "name": n} for n, i in ids.items()]}
    out.write_text(json.dumps(data, separators=(",", ":")))


def worker(kind: str, src: Path, out: Path) -> None:
    if kind != "etree":  # imports before the clock, as for the baseline's xml.etree
        import detection.data.formats.coco  # noqa: F401
        import detection.data.formats.voc  # noqa: F401
    started = time.perf_counter()
    if kind == "etree":
        etree_loop(src, out)
    else:
        ours(src, out, check_size=kind == "ours+headers")
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def _run(kind: str, src: Path, out: Path) -> dict[str, float]:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.data", "--worker", kind, str(src), str(out)],
                          cwd=ROOT, capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", nargs=3, metavar=("KIND", "SRC", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker[0], Path(args.worker[1]), Path(args.worker[2]))
        return {}
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        src = make_dataset(Path(tmp) / "voc", args.files)
        runs: dict[str, list[dict[str, float]]] = {"ours": [], "etree": [], "ours+headers": []}
        for r in range(args.rounds):  # interleaved, rotating who goes first
            order = list(runs)[r % 3 :] + list(runs)[: r % 3]
            for kind in order:
                runs[kind].append(_run(kind, src, Path(tmp) / f"{kind}.json"))
        ours_boxes = len(json.loads((Path(tmp) / "ours.json").read_text())["annotations"])
        base_boxes = len(json.loads((Path(tmp) / "etree.json").read_text())["annotations"])
    rate = {k: args.files / statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
    result = {
        "files": args.files, "rounds": args.rounds, "boxes": {"ours": ours_boxes, "etree": base_boxes},
        "files_per_s": {k: round(v, 1) for k, v in rate.items()}, "ratio_ours_over_etree": round(rate["ours"] / rate["etree"], 3),
        "peak_rss_mb": {k: round(max(r["max_rss_mb"] for r in v), 1) for k, v in runs.items()},
        "seconds": {k: [round(r["seconds"], 3) for r in v] for k, v in runs.items()},
    }  # fmt: skip
    print(f"VOC XML -> COCO JSON, {args.files} files, median of {args.rounds} interleaved rounds:")
    for k in runs:
        print(f"  {k:12s} {result['files_per_s'][k]:9.1f} files/s   peak RSS {result['peak_rss_mb'][k]:7.1f} MB")  # type: ignore[index]
    print(f"  ratio ours / etree: {result['ratio_ours_over_etree']:.3f}")
    out = ROOT / "reports" / "bench" / "data.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
