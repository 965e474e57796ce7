"""End to end: `dvc repro` of the whole default pipeline in a temp copy of the project (tiny params)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import cv2
import onnxruntime
import pandas as pd
import yaml

from detection.stages import STAGE_NAMES
from tests.conftest import bin_path


def dvc(project: Path, env: dict[str, str], *args: str) -> str:
    proc = subprocess.run([bin_path("dvc"), *args], cwd=project, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"dvc {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def test_dvc_repro_end_to_end(tiny_project: Path, cli_env: dict[str, str]) -> None:
    log = dvc(tiny_project, cli_env, "repro")
    for stage in STAGE_NAMES:
        assert f"Running stage '{stage}'" in log
        assert f"stage {stage}: done in" in log, f"stage {stage} did not print its time"

    # Every stage's outputs exist and are real files of their kind.
    p = tiny_project
    assert (p / "data/raw/gt.txt").is_file() and (p / "data/raw/00000.ppm").is_file()
    table = pd.read_csv(p / "data/interim/annotations.csv")
    assert {"image", "xmin", "ymin", "xmax", "ymax", "label"} <= set(table.columns)
    assert json.loads((p / "data/interim/coco.json").read_text())["annotations"]
    assert any((p / "data/interim/voc/Annotations").glob("*.xml"))
    assert (p / "data/processed/train.csv").is_file() and (p / "data/processed/valid.csv").is_file()
    assert (p / "models/best.pt").is_file() and (p / "models/last.pt").is_file()
    metrics = json.loads((p / "reports/metrics.json").read_text())
    assert {"map", "map50", "per_class"} <= set(metrics)
    assert 0.0 <= metrics["map50"] <= 1.0
    assert (p / "reports/evaluate/pr_curve.png").stat().st_size > 0
    session = onnxruntime.InferenceSession(str(p / "models/model.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()
    assert json.loads((p / "reports/export.json").read_text())["ok"] is True
    video = cv2.VideoCapture(str(p / "reports/video/annotated.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 8
    video.release()
    assert len((p / "reports/video/detections.jsonl").read_text().splitlines()) == 8
    assert json.loads((p / "reports/video/metrics.json").read_text())["fps_model"] > 0
    lock = yaml.safe_load((p / "dvc.lock").read_text())
    assert list(lock["stages"]) == list(STAGE_NAMES)
    summary = subprocess.run([bin_path("detection"), "metrics"], cwd=p, env=cli_env, capture_output=True, text=True, timeout=120)
    assert summary.returncode == 0 and "not written yet" not in summary.stdout
    assert f"{metrics['map50']:.4g}" in summary.stdout and "fps_model" in summary.stdout

    # Nothing changed: everything is up to date.
    again = dvc(tiny_project, cli_env, "repro")
    assert "Running stage" not in again
    assert "Data and pipelines are up to date" in dvc(tiny_project, cli_env, "status")

    # An evaluate parameter re-runs evaluate only, never train.
    params = yaml.safe_load((p / "params.yaml").read_text())
    params["evaluate"]["score_threshold"] = 0.3
    (p / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = dvc(tiny_project, cli_env, "repro")
    assert "Running stage 'evaluate'" in third
    for stage in ("fetch", "convert", "split", "train", "export", "infer-video"):
        assert f"Running stage '{stage}'" not in third
