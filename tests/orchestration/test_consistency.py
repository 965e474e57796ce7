"""dvc.yaml, the CLI, the Prefect tasks/flow and prefect.yaml stay in step with ``detection.stages``.

Static checks: no Prefect API, no stage is run.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from detection.stages import STAGE_NAMES, STAGES

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dvc_index() -> dict[str, Any]:
    """DVC's own view of dvc.yaml (``${...}`` resolved from params.yaml): stages, edges, metrics files."""
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        stages = list(repo.index.stages)
        return {
            "names": [s.name for s in stages],
            "cmds": {s.name: s.cmd for s in stages},
            # (stage, stage it depends on)
            "edges": [(a.name, b.name) for a, b in repo.index.graph.edges()],
            "metrics": {s.name: [Path(str(o.def_path)) for o in s.outs if o.metric] for s in stages},
        }


def test_dvc_yaml_lists_the_stages_in_order() -> None:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    assert list(stages) == list(STAGE_NAMES)


def test_dvc_sees_the_same_stages(dvc_index: dict[str, Any]) -> None:
    assert dvc_index["names"] == list(STAGE_NAMES)


def test_stage_order_is_a_topological_order_of_the_dvc_graph(dvc_index: dict[str, Any]) -> None:
    position = {name: i for i, name in enumerate(STAGE_NAMES)}
    for stage, upstream in dvc_index["edges"]:
        assert position[upstream] < position[stage], f"{stage} depends on {upstream}, which comes after it in STAGE_NAMES"
    # one connected pipeline: each stage after the first depends on the stage just before it or earlier
    depends = {s for s, _ in dvc_index["edges"]}
    assert depends == set(STAGE_NAMES[1:]), f"stages with no upstream stage: {set(STAGE_NAMES[1:]) - depends}"
    # and the immediate predecessor relation the flow relies on holds where dvc.yaml says so
    assert ("convert", "fetch") in dvc_index["edges"] and ("split", "convert") in dvc_index["edges"]


def test_every_dvc_cmd_is_the_stage_cli_verb(dvc_index: dict[str, Any]) -> None:
    assert dvc_index["cmds"] == {name: f"detection {verb}" for name, verb in STAGES}


def test_the_cli_has_every_stage_verb() -> None:
    import typer.main

    from detection.cli import app

    commands = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    missing = [verb for _, verb in STAGES if verb not in commands]
    assert not missing, f"CLI verbs missing for stages: {missing} (CLI has {sorted(commands)})"


def test_stage_tasks_are_named_after_the_stages() -> None:
    from prefect.cache_policies import NO_CACHE

    from tasks.stages import STAGE_TASKS

    assert list(STAGE_TASKS) == list(STAGE_NAMES)
    for name, task in STAGE_TASKS.items():
        assert task.name == name
        assert task.task_run_name == name
        assert task.retries == (2 if name == "fetch" else 0), name
        assert task.cache_policy is NO_CACHE, "DVC is the cache: Prefect must not cache stage results"


def test_metrics_files_of_the_artifacts_are_dvc_metrics(dvc_index: dict[str, Any]) -> None:
    from tasks.stages import metrics_files

    ours = metrics_files(ROOT)
    theirs = {name: paths for name, paths in dvc_index["metrics"].items() if paths}
    assert set(ours) == set(theirs) == {"train", "evaluate", "export", "infer-video"}
    for name, path in ours.items():
        assert path in theirs[name], f"{name}: artifact from {path}, dvc.yaml metrics are {theirs[name]}"


def test_the_flow_runs_the_stages_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """The flow body, without Prefect's engine: stage tasks replaced by recorders."""
    import flows.pipeline as fp
    from tasks.stages import STAGE_TASKS

    calls: list[tuple[str, Any]] = []

    def recorder(name: str):
        def run(project_dir: str = ".", force: bool = False) -> dict[str, Any]:
            calls.append((name, force))
            return {"stage": name, "skipped": False}

        return run

    for name in STAGE_NAMES:
        monkeypatch.setitem(STAGE_TASKS, name, recorder(name))
    status_calls: list[Any] = []
    monkeypatch.setattr(fp, "dvc_status", lambda project_dir, stages: status_calls.append(stages) or {})

    result = fp.pipeline.fn(project_dir=str(ROOT))
    assert [c[0] for c in calls] == list(STAGE_NAMES)
    assert [r["stage"] for r in result["stages"]] == list(STAGE_NAMES)
    assert status_calls == [None]  # the whole pipeline: plain `dvc status`

    calls.clear()
    fp.pipeline.fn(project_dir=str(ROOT), stages=["split", "fetch", "split"], force=True)
    assert calls == [("fetch", True), ("split", True)]
    assert status_calls[-1] == ["fetch", "split"]


def test_plan_keeps_pipeline_order_and_rejects_unknown_stages() -> None:
    from flows.pipeline import plan

    assert plan(None) == list(STAGE_NAMES)
    assert plan(["export", "train"]) == ["train", "export"]
    assert plan("evaluate,train") == ["train", "evaluate"]
    with pytest.raises(ValueError, match=r"unknown stage\(s\): bogus, trian; the stages are, in order: fetch, convert"):
        plan(["trian", "fetch", "bogus"])
    with pytest.raises(ValueError, match="no stage given"):
        plan([])


def test_the_flow_rejects_a_directory_without_dvc_yaml(tmp_path: Path) -> None:
    from flows.pipeline import project_root

    assert project_root(ROOT) == ROOT
    with pytest.raises(ValueError, match="no dvc.yaml in"):
        project_root(tmp_path)


@pytest.fixture(scope="module")
def prefect_yaml() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))


def test_prefect_yaml_is_valid_for_prefect(prefect_yaml: dict[str, Any]) -> None:
    """Parsed by the model ``prefect deploy`` validates the file with (strict enough to catch shapes)."""
    from prefect.cli.deploy._models import PrefectYamlModel

    model = PrefectYamlModel.model_validate(prefect_yaml)
    assert [d.name for d in model.deployments] == ["pipeline", "pipeline-gpu", "sweep"]
    pools = {d.name: d.work_pool.name for d in model.deployments if d.work_pool is not None}
    assert pools == {"pipeline": "detection-cpu", "pipeline-gpu": "detection-gpu", "sweep": "detection-cpu"}
    entrypoints = {d.name: d.entrypoint for d in model.deployments}
    assert entrypoints == {"pipeline": "flows/pipeline.py:pipeline", "pipeline-gpu": "flows/pipeline.py:pipeline", "sweep": "flows/sweep.py:sweep"}


def test_the_gpu_deployment_clones_pulls_and_pushes(prefect_yaml: dict[str, Any]) -> None:
    (gpu,) = [d for d in prefect_yaml["deployments"] if d["name"] == "pipeline-gpu"]
    clone, cd = gpu["pull"]
    assert clone["prefect.deployments.steps.git_clone"]["repository"] == "{{ $DETECTION_GIT_URL }}"
    assert cd == {"prefect.deployments.steps.set_working_directory": {"directory": "{{ clone.directory }}"}}
    assert gpu["parameters"]["pull"] is True and gpu["parameters"]["push"] is True and gpu["parameters"]["device"] == "cuda"
    assert {"data", "model", "epochs", "device"} <= set(gpu["parameters"])
    (schedule,) = gpu["schedules"]
    assert schedule["cron"] and schedule["active"] is False


def test_prefect_yaml_pull_step_sets_the_project_directory(prefect_yaml: dict[str, Any]) -> None:
    (build,) = prefect_yaml["build"]
    step = build["prefect.deployments.steps.run_shell_script"]
    assert step["script"] == "pwd"
    (pull,) = prefect_yaml["pull"]
    assert pull == {"prefect.deployments.steps.set_working_directory": {"directory": "{{ %s.stdout }}" % step["id"]}}


def test_prefect_yaml_entrypoint_is_the_pipeline_flow(prefect_yaml: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect import Flow
    from prefect.flows import load_flow_from_entrypoint

    import flows.pipeline

    import flows.sweep

    monkeypatch.chdir(ROOT)  # entrypoints are relative to the project root, where the pull step puts the worker
    flows_by_name = {"pipeline": flows.pipeline.pipeline, "sweep": flows.sweep.sweep}
    for deployment in prefect_yaml["deployments"]:
        loaded = load_flow_from_entrypoint(deployment["entrypoint"])
        assert isinstance(loaded, Flow)
        assert loaded.name == flows_by_name[loaded.name].name
        # the deployment's parameters are the flow's and valid for it
        assert set(deployment["parameters"]) <= set(loaded.parameters.properties), deployment["name"]
        loaded.validate_parameters(deployment["parameters"])


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_detection_source_never_imports_prefect_or_dvc() -> None:
    """Static: no import statement anywhere in detection/, lazy (function-level) ones included."""
    offenders = {
        str(p.relative_to(ROOT)): sorted(found)
        for p in sorted((ROOT / "detection").rglob("*.py"))
        if (found := _imports(p) & {"prefect", "dvc", "tasks", "flows"})
    }
    assert not offenders, f"the library must not depend on the orchestration layers: {offenders}"


def test_importing_detection_loads_neither_prefect_nor_dvc() -> None:
    """Dynamic: import every detection module in a fresh interpreter and look at sys.modules."""
    code = (
        "import importlib, pkgutil, sys, detection\n"
        "mods = [m.name for m in pkgutil.walk_packages(detection.__path__, 'detection.') if not m.name.endswith('__main__')]\n"
        "for m in mods: importlib.import_module(m)\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in ('prefect', 'dvc', 'tasks', 'flows'))\n"
        "print(len(mods), ' '.join(bad))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    count, _, bad = proc.stdout.strip().partition(" ")
    assert int(count) > 10
    assert not bad, f"importing detection.* loaded: {bad}"
