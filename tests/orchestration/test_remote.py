"""Sharing through a DVC remote: run and push from one clone, pull into a fresh clone.

The pulled clone has the data, the checkpoints and the ONNX model; `dvc status` is clean, `dvc repro`
runs nothing and `detection predict --weights models/best.pt` works there. Metrics are versioned in
git, so `dvc metrics diff` / `dvc params diff` work against a commit. The second test does the same
through a real S3 API on 127.0.0.1 (moto's server), the remote's ``endpointurl`` pointing at it.
"""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import TINY_PARAMS, bin_path, make_project

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
# what the remote must bring into a fresh clone (DVC-cached outputs, not in git)
PULLED = ["data/raw/gt.txt", "data/interim/annotations.csv", "data/processed/valid.csv", "models/best.pt",
          "models/last.pt", "models/model.onnx", "reports/video/annotated.mp4"]  # fmt: skip
# what git must bring (uncached metrics and plots, committed beside dvc.lock)
VERSIONED = ["dvc.lock", "reports/metrics.json", "reports/train/summary.json", "reports/train/history.csv",
             "reports/export.json", "reports/video/metrics.json", "reports/evaluate/pr_curve.csv"]  # fmt: skip


def sh(cwd: Path, env: dict[str, str], *cmd: str, timeout: float = 900) -> str:
    proc = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} (in {cwd}) exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def sh_json(cwd: Path, env: dict[str, str], *cmd: str) -> dict:
    proc = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def share_and_pull(tmp_path: Path, env: dict[str, str], remote: list[str] | None = None) -> Path:
    """Clone A: commit the code, `dvc repro`, commit the run, `dvc push`. Clone B (git clone of A):
    `dvc pull`. Returns B, checked: files there, status clean, repro a no-op, git tree unchanged."""
    env = {**env, **GIT_ENV}
    a = make_project(tmp_path / "a", TINY_PARAMS)
    dvc, git = bin_path("dvc"), "git"
    for args in remote or []:
        sh(a, env, dvc, *args.split())
    sh(a, env, git, "add", "-A")
    sh(a, env, git, "commit", "-qm", "code")
    sh(a, env, dvc, "repro")
    sh(a, env, git, "add", "-A")
    sh(a, env, git, "commit", "-qm", "run")
    tracked = sh(a, env, git, "ls-files").split()
    for path in VERSIONED:
        assert path in tracked, f"{path} is not in git: metrics must be versioned"
    for path in PULLED:
        assert path not in tracked, f"{path} is in git: it belongs in the DVC cache"
    assert "everything is up to date" not in sh(a, env, dvc, "push")  # it pushed something

    b = tmp_path / "b"
    sh(tmp_path, env, git, "clone", "-q", str(a), str(b))
    assert not (b / "models/best.pt").exists()
    sh(b, env, dvc, "pull")
    for path in PULLED:
        assert (b / path).is_file() and (b / path).read_bytes() == (a / path).read_bytes(), path
    assert "Data and pipelines are up to date" in sh(b, env, dvc, "status")
    again = sh(b, env, dvc, "repro")
    assert "Running stage" not in again, again
    assert sh(b, env, git, "status", "--porcelain").strip() == ""
    return b


def test_push_from_one_clone_pull_into_a_fresh_one(tmp_path: Path, cli_env: dict[str, str]) -> None:
    b = share_and_pull(tmp_path, cli_env)
    # the project's default remote: a folder beside the clones, outside both of them
    assert any((tmp_path / "detection-dvc-remote").rglob("*")), "nothing in the default local remote"

    predicted = sh(b, cli_env, bin_path("detection"), "predict", "data/raw/00000.ppm", "--weights", "models/best.pt", "--out", "reports/predict")
    assert "predict" in predicted
    (record,) = [json.loads(line) for line in (b / "reports/predict/predictions.jsonl").read_text().splitlines()]
    assert record["image"] == "data/raw/00000.ppm" and isinstance(record["detections"], list)

    # metrics and params are versioned: diff against the commit before the run, and a param change
    dvc = bin_path("dvc")
    diff = sh_json(b, cli_env, dvc, "metrics", "diff", "HEAD~1", "--json")
    metrics = json.loads((b / "reports/metrics.json").read_text())
    assert diff["reports/metrics.json"]["map50"] == {"old": None, "new": metrics["map50"]}
    shown = sh_json(b, cli_env, dvc, "metrics", "show", "--json")
    assert "error" not in json.dumps(shown) and str(metrics["map50"]) in json.dumps(shown)
    params = (b / "params.yaml").read_text().replace("score_threshold: 0.5", "score_threshold: 0.3")
    (b / "params.yaml").write_text(params)
    pdiff = sh_json(b, cli_env, dvc, "params", "diff", "HEAD", "--json")
    change = pdiff["params.yaml"]["evaluate.score_threshold"]
    assert (change["old"], change["new"]) == (0.5, 0.3)

    # an experiment re-runs evaluate only, and `dvc exp show` has metrics for it and for the baseline
    sh(b, cli_env, "git", "checkout", "-q", "params.yaml")
    ran = sh(b, cli_env, dvc, "exp", "run", "-n", "thr04", "-S", "evaluate.score_threshold=0.4")
    assert "Running stage 'evaluate'" in ran and "Running stage 'train'" not in ran
    shown = sh_json(b, cli_env, dvc, "exp", "show", "--json")
    baseline = next(r for r in shown if r.get("rev") == "HEAD" or r.get("name") in ("master", "main"))
    (exp,) = [run for e in baseline.get("experiments") or [] for run in e["revs"] if run.get("name") == "thr04"]
    for rev in (baseline, exp):
        assert rev["data"]["metrics"]["reports/metrics.json"]["data"]["map50"] == metrics["map50"]
    assert exp["data"]["params"]["params.yaml"]["data"]["evaluate"]["score_threshold"] == 0.4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_push_and_pull_through_an_s3_api(tmp_path: Path, cli_env: dict[str, str]) -> None:
    """The same round trip through a real S3 API (moto's server on 127.0.0.1) with `endpointurl`."""
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        creds = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
        env = {**cli_env, **creds}
        endpoint = f"http://127.0.0.1:{port}"
        s3 = boto3.client("s3", endpoint_url=endpoint, **{k.lower(): v for k, v in creds.items() if k != "AWS_DEFAULT_REGION"}, region_name="us-east-1")
        s3.create_bucket(Bucket="team-dvc")
        # the README's one-line change of remote, plus the endpoint of an S3-compatible store
        share_and_pull(tmp_path, env, ["remote add -f -d s3 s3://team-dvc/detection", f"remote modify s3 endpointurl {endpoint}"])
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="team-dvc").get("Contents", [])]
        assert keys and all(k.startswith("detection/") for k in keys)
        assert not (tmp_path / "detection-dvc-remote").exists(), "pushed to the local default instead of S3"
    finally:
        server.stop()
