"""Exact resume: a CLI training killed with SIGKILL in the middle of an epoch and resumed from
``last.pt`` ends with the same weights, bit for bit, and the same metrics as one never stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

from detection.config import DatasetConfig
from detection.engine.checkpoint import load_checkpoint

TRAIN = {"epochs": 2, "batch": 4, "imgsz": 128, "warmup_iters": 2, "save_every_iters": 1, "device": "cpu", "dvclive": False, "ema": True}


def _project(tmp: Path, data: DatasetConfig) -> Path:
    tmp.mkdir(parents=True)
    (tmp / "data.yaml").write_text(yaml.safe_dump(data.model_dump(mode="json")))
    params = {"data": str(tmp / "data.yaml"), "train": {**TRAIN, "out": str(tmp / "models"), "reports": str(tmp / "reports")}}
    (tmp / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp


def _cmd(project: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "detection", "-q", "train", "--params", str(project / "params.yaml"), *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "2"}


def _kill_mid_epoch(project: Path) -> dict:
    """Start a training, SIGKILL it as soon as last.pt holds a state inside an epoch; return that state."""
    proc = subprocess.Popen(_cmd(project), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last = project / "models/last.pt"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if last.is_file():
                state = load_checkpoint(last)["resume"]
                if state["epoch"] >= 2 and state["iteration"] > 0:
                    proc.send_signal(signal.SIGKILL)
                    break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    return load_checkpoint(last)["resume"]


def test_sigkill_mid_epoch_then_resume_gives_bit_identical_weights(tiny_data: DatasetConfig, tmp_path: Path) -> None:
    whole = _project(tmp_path / "whole", tiny_data)
    unbroken = subprocess.Popen(_cmd(whole), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # alongside

    broken = _project(tmp_path / "broken", tiny_data)
    state = _kill_mid_epoch(broken)
    assert 0 < state["iteration"] and state["epoch"] <= TRAIN["epochs"]  # killed inside an epoch
    subprocess.run(_cmd(broken, "--resume"), env=_env(), check=True, capture_output=True)
    assert unbroken.wait(timeout=300) == 0, unbroken.stderr.read().decode()[-2000:]

    for name in ("last.pt", "best.pt"):
        a, b = load_checkpoint(whole / "models" / name), load_checkpoint(broken / "models" / name)
        assert a["epoch"] == b["epoch"]
        assert a["model"].keys() == b["model"].keys()
        different = [k for k in a["model"] if not torch.equal(a["model"][k], b["model"][k])]
        assert not different, f"{name}: {len(different)} tensors differ, e.g. {different[:3]}"
    ema_a, ema_b = load_checkpoint(whole / "models/last.pt")["ema"], load_checkpoint(broken / "models/last.pt")["ema"]
    assert all(torch.equal(ema_a["model"][k], ema_b["model"][k]) for k in ema_a["model"])
    ha, hb = pd.read_csv(whole / "reports/history.csv"), pd.read_csv(broken / "reports/history.csv")
    assert list(ha["epoch"]) == list(hb["epoch"]) == [1, 2]
    same = [c for c in ha.columns if c.startswith(("train_", "val_")) or c in ("lr", "epoch")]
    pd.testing.assert_frame_equal(ha[same], hb[same])
