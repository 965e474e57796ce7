"""The Prefect flow on a temp copy of the project (the ``tiny_project`` fixture), on a test API.

The first stages (fetch, convert, split) take seconds; the whole pipeline and the deployment through a
``process`` worker are ``slow``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import yaml

from detection.stages import STAGE_NAMES
from tests.orchestration.conftest import prefect_env, task_runs

FIRST = ["fetch", "convert", "split"]


def _env(api_url: str) -> dict[str, str]:
    return prefect_env(api_url)


def artifacts(flow_run_id: UUID) -> dict[str, Any]:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return {a.key: a for a in found}


def dvc_status(project: Path, *stages: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "dvc", "status", "--json", *stages], cwd=project, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout or "{}")


def locked_stages(project: Path) -> list[str]:
    return list(yaml.safe_load((project / "dvc.lock").read_text(encoding="utf-8"))["stages"])


def test_first_stages_run_as_task_runs_through_dvc(prefect_api: str, tiny_project: Path) -> None:
    from flows.pipeline import pipeline

    started = time.perf_counter()
    state = pipeline(project_dir=str(tiny_project), stages=FIRST, return_state=True)
    wall = time.perf_counter() - started
    assert state.is_completed(), state.message
    result = state.result()
    print(f"flow run fetch+convert+split: {wall:.1f} s")

    runs = task_runs(state.state_details.flow_run_id, expect=len(FIRST) + 1)
    assert [r.name for r in runs] == [*FIRST, "dvc-status"]
    assert all(r.state.is_completed() for r in runs)
    assert [r["stage"] for r in result["stages"]] == FIRST
    assert [r["outcome"] for r in result["stages"]] == ["ran"] * 3
    # DVC recorded every run, and the stages are up to date for DVC
    assert locked_stages(tiny_project) == FIRST
    assert result["status"] == {} == dvc_status(tiny_project, *FIRST)
    assert (tiny_project / "data" / "processed" / "train.csv").is_file()

    # Again: DVC is the cache, so nothing runs; --force re-runs a stage
    again = pipeline(project_dir=str(tiny_project), stages=FIRST)
    assert [r["outcome"] for r in again["stages"]] == ["up-to-date"] * 3
    forced = pipeline(project_dir=str(tiny_project), stages=["split"], force=True)
    assert [(r["stage"], r["outcome"]) for r in forced["stages"]] == [("split", "ran")]
    assert dvc_status(tiny_project, *FIRST) == {}


def test_an_unknown_stage_fails_with_a_clear_message(prefect_api: str, tiny_project: Path) -> None:
    from flows.pipeline import pipeline

    with pytest.raises(ValueError, match=r"unknown stage\(s\): bogus; the stages are, in order: fetch, convert, split"):
        pipeline(project_dir=str(tiny_project), stages=["fetch", "bogus"])
    assert not (tiny_project / "dvc.lock").exists()


def test_the_command_line_runs_the_flow_and_checks_its_arguments(prefect_api: str, tiny_project: Path) -> None:
    cmd = [sys.executable, "-m", "flows.pipeline", "--project-dir", str(tiny_project)]
    bad = subprocess.run([*cmd, "--stages", "fetch,bogus"], env=_env(prefect_api), capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert "unknown stage(s): bogus" in bad.stderr
    ok = subprocess.run([*cmd, "--stages", "fetch"], env=_env(prefect_api), capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-3000:]
    assert "ran fetch; dvc status: clean" in ok.stdout
    assert locked_stages(tiny_project) == ["fetch"]


def test_a_failed_stage_raises_with_the_tail_of_stderr(prefect_api: str, tiny_project: Path) -> None:
    from flows.pipeline import pipeline
    from tasks.stages import StageFailed

    # convert before fetch: its dependency data/raw is missing, and DVC says so on stderr
    state = pipeline(project_dir=str(tiny_project), stages=["convert", "split"], return_state=True)
    assert state.is_failed()
    with pytest.raises(StageFailed) as info:
        state.result()
    message = str(info.value)
    assert message.startswith("stage 'convert' failed: `dvc repro --single-item convert` exited with")
    assert "data/raw" in message.split("last lines of stderr:", 1)[1]
    runs = task_runs(state.state_details.flow_run_id, expect=1)
    assert [(r.name, r.state.type.value) for r in runs] == [("convert", "FAILED")]  # split and dvc-status never ran


def test_metrics_markdown_has_the_values_and_a_per_class_table() -> None:
    from tasks.stages import artifact_key, metrics_markdown

    md = metrics_markdown("evaluate", {"map": 0.41234, "model": "tiny", "per_class": {"stop": {"ap": 0.5, "ap50": None}}}, "reports/metrics.json")
    assert "| map | 0.4123 |" in md and "| model | tiny |" in md
    assert "| class | ap | ap50 |" in md and "| stop | 0.5 | - |" in md
    assert artifact_key("infer-video") == "detection-infer-video-metrics"


@pytest.mark.slow
def test_the_whole_pipeline_on_tiny_params(prefect_api: str, tiny_project: Path) -> None:
    from flows.pipeline import pipeline
    from tasks.stages import artifact_key

    started = time.perf_counter()
    state = pipeline(project_dir=str(tiny_project), return_state=True)
    print(f"whole flow run: {time.perf_counter() - started:.1f} s")
    assert state.is_completed(), state.message
    result = state.result()
    flow_run_id = state.state_details.flow_run_id
    runs = task_runs(flow_run_id, expect=len(STAGE_NAMES) + 1)
    assert [r.name for r in runs] == [*STAGE_NAMES, "dvc-status"]
    assert all(r.state.is_completed() for r in runs)
    assert locked_stages(tiny_project) == list(STAGE_NAMES)
    assert result["status"] == {} == dvc_status(tiny_project)
    found = artifacts(flow_run_id)
    for stage in ("train", "evaluate", "export", "infer-video"):
        assert artifact_key(stage) in found, stage
    evaluate = found[artifact_key("evaluate")].data
    assert "| map |" in evaluate and "## Per class" in evaluate
    assert "| fps_model |" in found[artifact_key("infer-video")].data


@pytest.mark.slow
def test_the_deployment_runs_on_a_process_worker(prefect_api: str, tiny_project: Path, tmp_path: Path) -> None:
    """prefect.yaml as the README uses it: work pool, deploy, worker, deployment run (fetch only)."""
    env = _env(prefect_api)
    prefect = str(Path(sys.executable).parent / "prefect")

    def run(*args: str, cwd: Path = tiny_project) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([prefect, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"prefect {' '.join(args)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc

    run("work-pool", "create", "detection-cpu", "--type", "process", "--overwrite")
    run("deploy", "--name", "pipeline")
    run("deployment", "run", "pipeline/pipeline", "--params", json.dumps({"stages": ["fetch"]}))
    # a worker started elsewhere: the pull step must take the flow run to the project
    run("worker", "start", "--pool", "detection-cpu", "--run-once", cwd=tmp_path)

    from prefect import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("pipeline/pipeline")
        assert deployment.work_pool_name == "detection-cpu"
        assert deployment.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(tiny_project.resolve())}}]
        (flow_run,) = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])))
    assert flow_run.state is not None and flow_run.state.is_completed(), flow_run.state
    assert locked_stages(tiny_project) == ["fetch"]
    (task_run,) = [r for r in task_runs(flow_run.id, expect=2) if r.name == "fetch"]
    assert task_run.state.is_completed()
