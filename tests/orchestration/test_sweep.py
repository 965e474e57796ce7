"""The backbone sweep: its table, Pareto front and plot, its argument checks, and (slow) a real sweep of
three models fanned out on a 2-worker Dask ``LocalCluster``."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from flows.sweep_report import COLUMNS, model_stats, pareto_front, plot_pareto, write_table
from tests.conftest import TINY_PARAMS, make_project
from tests.orchestration.conftest import prefect_env

MODELS = ["fasterrcnn_tiny", "ssdlite320_mobilenet_v3_large", "fasterrcnn_mobilenet_v3_large_320_fpn"]
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def test_pareto_front_keeps_the_models_nothing_beats() -> None:
    rows = [
        {"model": "fast", "cpu_fps": 50.0, "map": 0.2},
        {"model": "accurate", "cpu_fps": 5.0, "map": 0.6},
        {"model": "worse", "cpu_fps": 4.0, "map": 0.5},  # slower and less accurate than 'accurate'
        {"model": "tie", "cpu_fps": 50.0, "map": 0.1},  # as fast as 'fast', less accurate
        {"model": "unmeasured", "cpu_fps": None, "map": 0.9},
    ]
    assert pareto_front(rows) == [True, True, False, False, False]


def test_table_and_plot_are_written(tmp_path: Path) -> None:
    rows = [
        {"model": "a", "map": 0.3, "map50": 0.5, "params_m": 1.0, "gflops": 0.4, "train_images_per_s": 3.0, "cpu_fps": 40.0, "pareto": True},
        {"model": "b", "map": 0.4, "map50": 0.7, "params_m": 19.0, "gflops": 4.5, "train_images_per_s": 0.3, "cpu_fps": 7.0, "pareto": True},
    ]
    md, table = write_table(rows, tmp_path / "sweep")
    lines = md.read_text().splitlines()
    assert lines[0].startswith("| model | mAP | mAP@0.5 | params (M) | GFLOPs | train images/s | CPU FPS")
    assert lines[2].startswith("| b | 0.4 | 0.7 |")  # best mAP first
    with table.open() as fh:
        read = list(csv.DictReader(fh))
    assert [r["model"] for r in read] == ["b", "a"] and list(read[0]) == [k for k, _ in COLUMNS]
    png = plot_pareto(rows, tmp_path / "sweep" / "pareto.png")
    image = cv2.imread(str(png))
    assert image is not None and image.shape[0] > 200 and image.std() > 0


def test_model_stats_count_parameters_and_flops() -> None:
    small = model_stats("fasterrcnn_tiny", num_classes=4, imgsz=160)
    assert 0.1 < small["params_m"] < 10 and small["gflops"] > 0
    twice = model_stats("fasterrcnn_tiny", num_classes=4, imgsz=320)
    assert twice["params_m"] == small["params_m"] and twice["gflops"] > 2 * small["gflops"]


def test_the_command_line_rejects_unknown_models_before_starting_prefect(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "flows.sweep", "--models", "fasterrcnn_tiny", "fasterrcnn_tinny"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2
    assert "unknown model 'fasterrcnn_tinny'" in proc.stderr and "did you mean fasterrcnn_tiny" in proc.stderr


def committed_project(tmp_path: Path) -> Path:
    project = make_project(tmp_path / "project", {**TINY_PARAMS, "video": {"max_frames": 4}})
    env = {**os.environ, **GIT_ENV}
    subprocess.run(["git", "add", "-A"], cwd=project, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=project, check=True, env=env)
    return project


@pytest.mark.slow
def test_a_sweep_of_three_models_on_a_two_worker_dask_cluster(prefect_api: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from distributed import LocalCluster

    project = committed_project(tmp_path)
    monkeypatch.setenv("PREFECT_API_URL", prefect_api)  # the Dask workers report their task runs there
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        cmd = [sys.executable, "-m", "flows.sweep", "--project-dir", str(project), "--models", *MODELS, "--epochs", "1", "--cluster", cluster.scheduler_address]
        proc = subprocess.run(cmd, env={**prefect_env(prefect_api), **GIT_ENV}, capture_output=True, text=True, timeout=1800)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
        assert f"task runner DaskTaskRunner at {cluster.scheduler_address}" in proc.stdout
    with (project / "reports/sweep/table.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["model"] for r in rows) == sorted(MODELS)
    for r in rows:
        assert float(r["params_m"]) > 0 and float(r["gflops"]) > 0 and float(r["cpu_fps"]) > 0 and float(r["train_images_per_s"]) > 0
        assert 0 <= float(r["map"]) <= 1
    assert any(r["pareto"] == "True" for r in rows)
    assert cv2.imread(str(project / "reports/sweep/pareto.png")) is not None
    assert (project / "reports/sweep/table.md").read_text().count("\n") == 2 + len(MODELS)
    # every model is a DVC experiment of the project, with its params and metrics
    shown = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json"], cwd=project, capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr
    exps = [e for rev in json.loads(shown.stdout) for e in (rev.get("experiments") or [])]
    names = {run["name"]: run for e in exps for run in e.get("revs", [])}
    assert len([n for n in names if n.startswith("sweep-")]) == len(MODELS), sorted(names)
    assert not list((project / ".dvc/tmp/sweep").glob("*")), "workspaces left behind"
