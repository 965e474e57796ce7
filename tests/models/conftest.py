from __future__ import annotations

from pathlib import Path

import pytest

from detection.data.sample import make_sample


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sample(tmp_path_factory.mktemp("sample") / "raw", images=4, width=128, height=96, video_frames=0)
