"""Fixtures of the data-format tests: a small synthetic GTSDB sample on disk, and the shared real data sets."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from detection.data.sample import make_sample

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="session")
def sample_ro(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-image synthetic sample in GTSDB layout (00000.ppm ... + gt.txt). Read-only: copy it to change it."""
    return make_sample(tmp_path_factory.mktemp("sample") / "gtsdb", images=12, width=128, height=96, video_frames=0)


@pytest.fixture
def sample(sample_ro: Path, tmp_path: Path) -> Path:
    """A private, writable copy of the sample."""
    return Path(shutil.copytree(sample_ro, tmp_path / "gtsdb"))


@pytest.fixture
def gtsdb_real() -> Path:
    path = SHARED_DATA / "gtsdb"
    if not (path / "gt.txt").is_file():
        pytest.skip(f"real GTSDB data not found at {path} (see ../shared/data/README.md)")
    return path


@pytest.fixture
def bccd_real() -> Path:
    path = SHARED_DATA / "bccd_voc" / "BCCD"
    if not (path / "Annotations").is_dir():
        pytest.skip(f"real BCCD (VOC) data not found at {path} (see ../shared/data/README.md)")
    return path

