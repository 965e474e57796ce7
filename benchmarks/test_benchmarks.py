"""`make bench` (pytest -m bench benchmarks): run the benchmark scripts; they print and write JSON."""

import pytest

pytestmark = pytest.mark.bench


def test_train_step() -> None:
    from benchmarks.train_step import main

    assert main(["--iters", "10"])["median_s_per_iter"] > 0


def test_pipeline() -> None:
    from benchmarks.pipeline import main

    result = main([])
    assert result["noop_ran"] == []


def test_inference() -> None:
    from benchmarks.inference import main

    result = main(["--images", "8", "--frames", "12", "--rounds", "1"])
    assert result["images"]["images_per_s"]["onnx_batch1"] > 0


def test_train() -> None:
    from benchmarks.train import main

    result = main(["--models", "fasterrcnn_tiny", "--images", "8", "--rounds", "1"])
    assert result["results"][0]["loops"]["ours"]["s_per_iter"] > 0


def test_sweep() -> None:
    from benchmarks.sweep import main

    result = main([])
    assert result["sequential_s"] > 0 and result["fanned_out_s"] > 0
