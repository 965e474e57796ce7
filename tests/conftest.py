"""Shared fixtures: the project root, the shared real data, and a temp copy of the project."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

# Offline and private in every test and every subprocess the tests start.
for _key, _value in {"DO_NOT_TRACK": "1", "DVC_NO_ANALYTICS": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}.items():
    os.environ.setdefault(_key, _value)

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DETECTION_SHARED_DATA") or ROOT.parent / "shared" / "data")  # env: a worktree elsewhere

# Small enough for a whole `dvc repro` in about a minute on 2 cores.
TINY_PARAMS = {
    "fetch": {"sample": {"images": 24, "width": 160, "height": 96, "seed": 0, "video_frames": 8}},
    "train": {"epochs": 1, "batch": 4, "imgsz": 160, "warmup_iters": 2},
    "evaluate": {"samples": 2},
    "export": {"check_images": 1},
    "video": {"max_frames": 8},
}


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data, or a skip when this checkout has none (a user's clone)."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not found at {path} (only in the team's workspace: ../shared/data)")
    return path


def _merge(base: dict, over: dict) -> dict:
    for key, value in over.items():
        base[key] = _merge(base.get(key, {}), value) if isinstance(value, dict) else value
    return base


def bin_path(name: str) -> str:
    """A console script of the current environment (dvc, detection, prefect)."""
    return str(Path(sys.executable).parent / name)


def make_project(dest: Path, params: dict | None = None) -> Path:
    """Copy the project (code, configs, dvc.yaml, params.yaml, .dvc/config) into ``dest``; git + dvc init it."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("detection", "configs", "tasks", "flows"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "params.yaml", ".dvcignore", ".gitignore", "prefect.yaml"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, dest / name)
    (dest / "data").mkdir(exist_ok=True)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True, env=env)
    subprocess.run([bin_path("dvc"), "init", "-q"], cwd=dest, check=True, env=env)
    shutil.copy2(ROOT / ".dvc" / "config", dest / ".dvc" / "config")
    values = yaml.safe_load((dest / "params.yaml").read_text())
    (dest / "params.yaml").write_text(yaml.safe_dump(_merge(values, params or {}), sort_keys=False))
    return dest


@pytest.fixture
def tiny_project(tmp_path: Path) -> Path:
    """A temp copy of the project whose params make every stage take seconds."""
    return make_project(tmp_path / "project", TINY_PARAMS)


@pytest.fixture
def cli_env() -> dict[str, str]:
    """The environment for CLI/DVC subprocesses: this interpreter's scripts first on PATH."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
