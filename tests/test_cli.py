"""The CLI as users see it: help for every verb, one-line errors with exit status 2."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import pytest

from detection.cli import app
from detection.data.sample import make_sample
from detection.stages import STAGES
from tests.conftest import bin_path

VERBS = [verb for _, verb in STAGES] + ["validate", "predict", "models", "metrics"]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([bin_path("detection"), *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_every_stage_has_a_verb() -> None:
    registered = {c.name or c.callback.__name__ for c in app.registered_commands}
    assert set(VERBS) <= registered


@pytest.mark.parametrize("verb", VERBS)
def test_help_explains_each_verb(verb: str) -> None:
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, [verb, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and len(result.output.splitlines()) > 5


def _assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0]


def test_missing_dataset_path(tmp_path: Path) -> None:
    _assert_one_line_error(run_cli("fetch", str(tmp_path / "no-such-folder"), "--dest", str(tmp_path / "raw")), "no-such-folder")


def test_unknown_class_id_names_file_and_line(tmp_path: Path) -> None:
    raw = make_sample(tmp_path / "raw", images=2, width=96, height=64, video_frames=0)
    lines = (raw / "gt.txt").read_text().splitlines()
    lines.insert(1, "00001.ppm;5;5;20;20;77")
    (raw / "gt.txt").write_text("\n".join(lines) + "\n")
    proc = run_cli("convert", str(raw), str(tmp_path / "out"), "--from", "gtsdb", "--data", str(Path("configs/datasets/gtsdb.yaml").resolve()))
    _assert_one_line_error(proc, "gt.txt:2", "77")
    assert not (tmp_path / "out").exists()


def test_bad_sha256(tmp_path: Path) -> None:
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("gt.txt", "00000.ppm;1;1;5;5;1\n")
    proc = run_cli("fetch", str(archive), "--dest", str(tmp_path / "raw"), "--sha256", "0" * 64)
    _assert_one_line_error(proc, "data.zip", "0" * 64)
    assert not (tmp_path / "raw").exists()


def test_unknown_model(tmp_path: Path) -> None:
    _assert_one_line_error(run_cli("train", "--model", "yolo_v99"), "yolo_v99")


def test_invalid_params_file(tmp_path: Path) -> None:
    bad = tmp_path / "params.yaml"
    bad.write_text("train:\n  epochs: -3\n  epohcs: 5\n")
    _assert_one_line_error(run_cli("train", "--params", str(bad)), "params.yaml", "epochs", "epohcs")


def test_models_json_lists_the_registry() -> None:
    import json

    proc = run_cli("models", "--json")
    assert proc.returncode == 0
    assert "fasterrcnn_tiny" in {m["name"] for m in json.loads(proc.stdout)}


@pytest.mark.parametrize(
    ("args", "needle"),
    [(["traing"], "Did you mean 'train'"), (["train", "--epochs", "abc"], "--epochs"), (["validate"], "src")],
)
def test_bad_usage_is_one_line_too(args: list[str], needle: str) -> None:
    _assert_one_line_error(run_cli(*args), needle)


def test_metrics_summary_before_and_after_a_run(tmp_path: Path) -> None:
    proc = run_cli("metrics", "--params", str(tmp_path / "none.yaml"), cwd=tmp_path)
    assert proc.returncode == 0 and "not written yet" in proc.stdout
