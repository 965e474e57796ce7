"""Fixtures of the data-format tests: a small synthetic GTSDB sample on disk, and the shared real data sets."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from detection.data.sample import make_sample
from tests.conftest import shared_path


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
    return shared_path("gtsdb", "gt.txt").parent


@pytest.fixture
def bccd_real() -> Path:
    return shared_path("bccd_voc", "BCCD", "Annotations").parent

