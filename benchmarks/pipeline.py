"""Wall time of the default pipeline (`dvc repro`) in a fresh temp copy of the project, stage by stage,
then of a second, no-op `dvc repro`, and of a re-run after an evaluate parameter changes.

    python -m benchmarks.pipeline [--keep DIR]

Uses the project's own params.yaml (the real default, not the tests' tiny one). Prints a table and
writes reports/bench/pipeline.json (stage seconds, mAP, no-op seconds, which stages re-ran).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from detection.io import write_json

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "DO_NOT_TRACK": "1", "DVC_NO_ANALYTICS": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
       "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}  # fmt: skip


TOP_LEVEL_SKIP = {".venv", ".git", "data", "models", "reports", ".dvc", "dvc.lock", ".pytest_cache"}


def _ignore(folder: str, names: list[str]) -> set[str]:
    """Skip outputs and environments at the project's top level only (``detection/data`` is code)."""
    skip = {n for n in names if n == "__pycache__" or n.endswith(".egg-info")}
    return skip | (TOP_LEVEL_SKIP & set(names) if Path(folder) == ROOT else set())


def copy_project(dest: Path) -> Path:
    shutil.copytree(ROOT, dest, ignore=_ignore)
    (dest / "data").mkdir()
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=dest, check=True, env=ENV)
    shutil.copy2(ROOT / ".dvc/config", dest / ".dvc/config")
    return dest


def repro(project: Path) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=project, env=ENV, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(f"dvc repro failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return elapsed, proc.stdout + proc.stderr


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", type=Path, help="run in this folder and keep it (default: a temp folder, removed)")
    ap.add_argument("--out", type=Path, default=ROOT / "reports/bench/pipeline.json")
    args = ap.parse_args(argv)
    base = args.keep or Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    project = copy_project(base / "project")
    try:
        total, log = repro(project)
        stages = {m[0]: float(m[1]) for m in re.findall(r"stage (\S+): done in ([\d.]+) s", log)}
        metrics = json.loads((project / "reports/metrics.json").read_text())
        noop, noop_log = repro(project)
        params = yaml.safe_load((project / "params.yaml").read_text())
        params["evaluate"]["score_threshold"] = round(params["evaluate"]["score_threshold"] / 2, 3)
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        _, third_log = repro(project)
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    result = {
        "pipeline_s": round(total, 1),
        "stage_s": stages,
        "map": metrics["map"],
        "map50": metrics["map50"],
        "noop_repro_s": round(noop, 2),
        "noop_ran": re.findall(r"Running stage '([^']+)'", noop_log),
        "evaluate_param_change_ran": re.findall(r"Running stage '([^']+)'", third_log),
    }
    for key, value in result.items():
        print(f"{key:28s} {value}")
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
