"""A trained fasterrcnn_tiny project shared by the export tests (trained once for the package)."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PARAMS = {
    "fetch": {"sample": {"images": 32, "width": 160, "height": 96, "seed": 0, "video_frames": 0}},
    "train": {"epochs": 15, "batch": 4, "imgsz": 160, "warmup_iters": 4, "dvclive": False, "val_loss": False},
    "export": {"check_images": 2},
}


def _cli(args: list[str]) -> None:
    """``detection ARGS`` in this process (it raises SystemExit on an error)."""
    from detection.cli import main

    main(["-q", *args])


@pytest.fixture(scope="package")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fasterrcnn_tiny trained on the sample data (160 px, ~20 s), exported by ``detection export
    --quantize int8`` (fp32 + int8 .onnx): a real, non-zero mAP on its valid split. Tests that change it
    work on a copy (``copy_project``)."""
    root = tmp_path_factory.mktemp("project")
    shutil.copytree(ROOT / "configs", root / "configs")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in PARAMS.items():
        params[section] = {**params[section], **values}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with contextlib.chdir(root):
        for verb in ("fetch", "convert", "split", "train"):
            _cli([verb])
        _cli(["export", "--quantize", "int8"])
    return root


def copy_project(project: Path, dest: Path) -> Path:
    """A copy of ``project`` (configs, params, data, models, reports) for a test that writes into it."""
    shutil.copytree(project, dest, symlinks=True)
    return dest
