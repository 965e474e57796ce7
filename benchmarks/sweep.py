"""Wall time of the backbone sweep run one experiment at a time vs fanned out, in one process run.

    python -m benchmarks.sweep [--models a b c] [--epochs 1]

Each variant gets a fresh tiny project of its own (the tests' tiny params, committed to git), so that
neither finds the other's results in DVC's run cache. Both run the flow in this process (one Prefect
ephemeral API): first ``max_parallel=1``, then one experiment per model at once. Prints the two wall
times (data stages + experiments + table) and their ratio; writes reports/bench/sweep.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from detection.io import write_json

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["fasterrcnn_tiny", "ssdlite320_mobilenet_v3_large", "fasterrcnn_mobilenet_v3_large_320_fpn"]
GIT_ENV = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost", "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}


def tiny_project(dest: Path) -> Path:
    from tests.conftest import TINY_PARAMS, make_project

    project = make_project(dest, {**TINY_PARAMS, "video": {"max_frames": 4}})
    env = {**os.environ, **GIT_ENV}
    subprocess.run(["git", "add", "-A"], cwd=project, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", "bench"], cwd=project, check=True, env=env)
    return project


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=MODELS)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "reports/bench/sweep.json")
    args = ap.parse_args(argv)
    os.environ.update(GIT_ENV)
    from flows.sweep import sweep, sweep_runner

    base = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    seconds: dict[str, float] = {}
    tables: dict[str, str] = {}
    try:
        for label, parallel in (("sequential", 1), ("fanned_out", len(args.models))):
            project = tiny_project(base / label)
            runner = sweep_runner(None, parallel, len(args.models))
            started = time.perf_counter()
            result = sweep.with_options(task_runner=runner)(models=args.models, epochs=args.epochs, project_dir=str(project), max_parallel=parallel)
            seconds[label] = round(time.perf_counter() - started, 1)
            tables[label] = Path(result["table"]).read_text(encoding="utf-8")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    out = {
        "models": args.models,
        "epochs": args.epochs,
        "cpus": os.cpu_count(),
        "sequential_s": seconds["sequential"],
        "fanned_out_s": seconds["fanned_out"],
        "speedup": round(seconds["sequential"] / seconds["fanned_out"], 2),
        "table_fanned_out": tables["fanned_out"],
    }
    for key in ("models", "cpus", "sequential_s", "fanned_out_s", "speedup"):
        print(f"{key:14s} {out[key]}")
    print(tables["fanned_out"])
    write_json(args.out, out)
    return out


if __name__ == "__main__":
    main()
