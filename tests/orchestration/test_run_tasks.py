"""The worker-run tasks without a Prefect API: parameters written into params.yaml (comments kept), and
the run summary's metrics table and model locations."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from tasks.remote import model_locations, overrides, remote_url, run_markdown, set_params

ROOT = Path(__file__).resolve().parents[2]


def test_flow_parameters_are_written_into_params_yaml_with_its_comments(tmp_path: Path) -> None:
    shutil.copy2(ROOT / "params.yaml", tmp_path / "params.yaml")
    values = overrides(data="configs/datasets/gtsdb.yaml", model="fasterrcnn_mobilenet_v3_large_fpn", epochs=3, device="cuda:1")
    assert overrides(model=None, epochs=None) == {}
    set_params.fn(str(tmp_path), values)
    text = (tmp_path / "params.yaml").read_text()
    params = yaml.safe_load(text)
    assert params["data"] == "configs/datasets/gtsdb.yaml" and params["model"]["name"] == "fasterrcnn_mobilenet_v3_large_fpn"
    assert params["train"]["epochs"] == 3 and params["train"]["device"] == params["evaluate"]["device"] == "cuda:1"
    assert "# `detection models` lists them all" in text  # the file's comments survive
    original = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert params["train"]["lr"] == original["train"]["lr"] and params["fetch"] == original["fetch"]


def test_the_run_summary_names_metrics_and_where_the_model_lives(tiny_project: Path) -> None:
    (tiny_project / "reports").mkdir()
    (tiny_project / "reports/metrics.json").write_text(json.dumps({"map": 0.25, "map50": 0.5, "per_class": {"stop": {"ap": 0.1}}}))
    lock = {"schema": "2.0", "stages": {"train": {"cmd": "detection train", "outs": [
        {"path": "models/best.pt", "md5": "0123456789abcdef0123456789abcdef", "size": 10},
        {"path": "reports/train/history.csv", "md5": "ffff", "size": 1}]}}}  # fmt: skip
    (tiny_project / "dvc.lock").write_text(yaml.safe_dump(lock))
    url = remote_url(str(tiny_project))
    assert url == str((tiny_project.parent / "detection-dvc-remote").resolve())  # the project's default
    assert model_locations(str(tiny_project), url) == [("models/best.pt", "0123456789abcdef0123456789abcdef", f"{url}/files/md5/01/23456789abcdef0123456789abcdef")]
    markdown = run_markdown(str(tiny_project), pushed=True)
    assert "| evaluate | map50 | 0.5 |" in markdown and "| train | `reports/train/summary.json` | not written |" in markdown
    assert f"`{url}/files/md5/01/23456789abcdef0123456789abcdef`" in markdown and "not pushed" not in markdown
