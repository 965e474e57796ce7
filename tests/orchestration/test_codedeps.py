"""dvc.yaml's code dependencies are the imports of each stage's entry point (tasks/codedeps.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from detection.stages import STAGE_NAMES
from tasks.codedeps import declared_code_deps, rewrite, stage_code_deps

ROOT = Path(__file__).resolve().parents[2]


def test_dvc_yaml_code_deps_are_the_imports_of_each_stage() -> None:
    computed = stage_code_deps(ROOT)
    declared = declared_code_deps(ROOT / "dvc.yaml")
    assert list(computed) == list(STAGE_NAMES)
    for stage in STAGE_NAMES:
        missing = sorted(set(computed[stage]) - set(declared[stage]))
        extra = sorted(set(declared[stage]) - set(computed[stage]))
        assert not missing and not extra, (
            f"{stage}: dvc.yaml lacks {missing}, lists {extra} that it does not import; "
            "run `python -m tasks.codedeps --write`"
        )


def test_the_gaps_of_the_issue_are_closed() -> None:
    deps = stage_code_deps(ROOT)
    # the mAP ground truth, the models and the dataset reach evaluate
    for path in ("detection/data/coco.py", "detection/models/registry.py", "detection/models/tiny.py", "detection/engine/data.py"):
        assert path in deps["evaluate"], path
    for stage in ("export", "infer-video"):
        assert "detection/models/registry.py" in deps[stage] and "detection/engine/checkpoint.py" in deps[stage]
    assert "detection/inference/video.py" in deps["infer-video"]
    # and what a stage does not import stays out: fetch never re-runs for a model change
    assert not [p for p in deps["fetch"] if p.startswith(("detection/models", "detection/engine"))]
    assert all("detection/cli.py" not in paths for paths in deps.values())


def test_a_new_import_is_found_and_written(tmp_path: Path) -> None:
    """A copy of the package where split starts importing a new module: --check fails, --write fixes."""
    import shutil

    shutil.copytree(ROOT / "detection", tmp_path / "detection", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    (tmp_path / "detection/data/strata.py").write_text("from detection.data import table\n", encoding="utf-8")
    split = tmp_path / "detection/data/split.py"
    split.write_text(split.read_text(encoding="utf-8").replace("from __future__ import annotations\n", "from __future__ import annotations\n\nfrom .strata import table as _t  # noqa: F401\n", 1), encoding="utf-8")
    assert "detection/data/strata.py" in stage_code_deps(tmp_path)["split"]

    cmd = [sys.executable, "-m", "tasks.codedeps", "--dvc-yaml", str(tmp_path / "dvc.yaml")]
    check = subprocess.run([*cmd, "--check"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert check.returncode == 1 and "+      - detection/data/strata.py" in check.stdout
    assert subprocess.run([*cmd, "--write"], cwd=ROOT, capture_output=True, text=True, timeout=60).returncode == 0
    assert subprocess.run([*cmd, "--check"], cwd=ROOT, capture_output=True, text=True, timeout=60).returncode == 0
    written = yaml.safe_load((tmp_path / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    assert "detection/data/strata.py" in written["split"]["deps"]
    assert written["split"]["deps"][0] == "${split.annotations}"  # data deps kept, in front
    # everything but the code deps is unchanged (comments included)
    original = (ROOT / "dvc.yaml").read_text(encoding="utf-8")
    assert [line for line in (tmp_path / "dvc.yaml").read_text().splitlines() if "detection/" not in line or "#" in line] == [
        line for line in original.splitlines() if "detection/" not in line or "#" in line
    ]


def test_rewrite_adds_deps_to_a_stage_and_drops_stale_ones() -> None:
    text = "stages:\n  a:\n    cmd: x\n    deps:\n      - data/in\n      - detection/old.py  # gone\n    outs:\n      - out\n"
    new = rewrite(text, {"a": ["detection/new.py"]})
    assert yaml.safe_load(new)["stages"]["a"] == {"cmd": "x", "deps": ["data/in", "detection/new.py"], "outs": ["out"]}


def test_changing_coco_py_makes_evaluate_stale(tiny_project: Path, cli_env: dict[str, str]) -> None:
    """DVC itself sees it: after fetch/convert/split, editing formats/coco.py leaves convert out of date (and
    evaluate would be, once run); editing models/ touches neither fetch nor split."""
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run([*dvc, "repro", "split"], cwd=tiny_project, env=cli_env, check=True, capture_output=True, timeout=600)
    with (tiny_project / "detection/models/tiny.py").open("a", encoding="utf-8") as fh:
        fh.write("\n# a change\n")
    status = subprocess.run([*dvc, "status", "fetch", "convert", "split"], cwd=tiny_project, env=cli_env, capture_output=True, text=True, timeout=120)
    assert "up to date" in status.stdout, status.stdout
    with (tiny_project / "detection/data/formats/coco.py").open("a", encoding="utf-8") as fh:
        fh.write("\n# a change\n")
    status = subprocess.run([*dvc, "status", "convert"], cwd=tiny_project, env=cli_env, capture_output=True, text=True, timeout=120)
    assert "modified:           detection/data/formats/coco.py" in status.stdout, status.stdout
