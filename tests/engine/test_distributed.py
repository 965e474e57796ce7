"""DDP on the CPU: ``torchrun --standalone --nproc-per-node=2 -m detection train`` (gloo backend)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch
import yaml

from detection.config import DatasetConfig
from detection.engine.checkpoint import load_checkpoint
from detection.inference.predict import predict


def test_two_process_gloo_run_trains_evaluates_and_writes_one_set_of_outputs(tiny_data: DatasetConfig, tmp_path: Path) -> None:
    (tmp_path / "data.yaml").write_text(yaml.safe_dump(tiny_data.model_dump(mode="json")))
    train = {"epochs": 2, "batch": 2, "imgsz": 128, "warmup_iters": 2, "device": "cpu", "out": str(tmp_path / "models"), "reports": str(tmp_path / "reports")}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"data": str(tmp_path / "data.yaml"), "train": train}))
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [str(torchrun), "--standalone", "--nproc-per-node=2", "-m", "detection", "train", "--params", str(tmp_path / "params.yaml")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 processes (gloo)" in done.stderr and "effective batch 4 (2 x 2 processes" in done.stderr
    assert done.stderr.count("epoch 1/2") == 1, "one log line per epoch (rank 0 only)"

    history = pd.read_csv(tmp_path / "reports/history.csv")
    assert list(history["epoch"]) == [1, 2]
    assert history[["train_loss", "val_loss", "val_map"]].notna().all().all()
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["best.pt", "last.pt"]
    ckpt = load_checkpoint(tmp_path / "models/last.pt")
    assert not [k for k in ckpt["model"] if k.startswith("module.")]
    assert ckpt["resume"]["epoch"] == 3 and ckpt["params"]["train"]["batch"] == 2

    # the checkpoint loads in a single process and predicts
    images = sorted(Path(tiny_data.root).rglob("*.ppm"))[:2]
    src = tmp_path / "images"
    src.mkdir()
    for im in images:
        (src / im.name).write_bytes(im.read_bytes())
    summary = predict(src, tmp_path / "models/best.pt", tmp_path / "pred", threshold=0.0)
    assert summary["images"] == 2 and summary["backend"] == "torch"
    assert torch.load(tmp_path / "models/best.pt", weights_only=True)["class_names"] == tiny_data.names


def test_sync_bn_on_cpu_gloo_is_ignored_with_a_warning(tiny_data: DatasetConfig, tmp_path: Path) -> None:
    (tmp_path / "data.yaml").write_text(yaml.safe_dump(tiny_data.model_dump(mode="json")))
    train = {"epochs": 1, "batch": 2, "imgsz": 96, "warmup_iters": 1, "device": "cpu", "sync_bn": True, "val_loss": False, "dvclive": False,
             "out": str(tmp_path / "models"), "reports": str(tmp_path / "reports")}  # fmt: skip
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"data": str(tmp_path / "data.yaml"), "train": train}))
    cmd = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc-per-node=2", "-m", "detection", "train", "--params", str(tmp_path / "params.yaml")]
    done = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]  # torch's SyncBatchNorm would raise at the first CPU forward
    assert "train.sync_bn ignored on the CPU" in done.stderr
    assert list(pd.read_csv(tmp_path / "reports/history.csv")["epoch"]) == [1]
