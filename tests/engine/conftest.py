from __future__ import annotations


import pytest

from detection.config import DatasetConfig
from detection.data.convert import convert
from detection.data.sample import make_sample
from detection.data.split import split

NAMES = ["stop", "give way", "priority road", "no entry", "keep right"]


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> DatasetConfig:
    """A real (tiny) data set: sample images -> convert -> split, as the pipeline does."""
    base = tmp_path_factory.mktemp("data")
    raw = make_sample(base / "raw", images=16, width=128, height=96, seed=1, video_frames=0)
    convert(raw, base / "interim", "gtsdb", NAMES)
    split(base / "interim" / "annotations.csv", base / "processed", valid=0.25, seed=0)
    return DatasetConfig(name="tiny", format="gtsdb", names=NAMES, root=raw, train=base / "processed/train.csv", valid=base / "processed/valid.csv")
