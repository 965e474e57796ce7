"""A deployment on a worker, as a team runs it: a real Prefect server on 127.0.0.1, the `detection-gpu`
process pool with a concurrency limit, `prefect deploy` from prefect.yaml, a worker in a directory of
its own that git-clones the project, and `prefect deployment run ... --watch` until Completed.

The run pulls from the DVC remote, runs the stages through DVC, pushes; the test finds the stage
outputs in the worker's clone, a clean `dvc status` there, the pushed model in the remote, the
`detection-run` artifact and DVC's stage output in the flow run's logs.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import TINY_PARAMS, bin_path, make_project

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout + proc.stderr


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_a_gpu_pool_deployment_runs_on_a_worker_in_its_own_clone(tmp_path: Path) -> None:
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ, **GIT_ENV,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": api,
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
    }  # fmt: skip
    # the team's repository (committed, remote = an absolute folder every worker reaches)
    source = make_project(tmp_path / "detection", TINY_PARAMS)
    dvc, prefect = bin_path("dvc"), bin_path("prefect")
    _run([dvc, "remote", "modify", "team", "url", str(tmp_path / "team-remote")], source, env)
    _run(["git", "add", "-A"], source, env)
    _run(["git", "commit", "-qm", "project"], source, env)

    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen([prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    worker = None
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{api}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "server.log").read_text()[-3000:]
            time.sleep(0.5)

        # README: the GPU pool, with a concurrency limit; the deployment from prefect.yaml
        _run([prefect, "work-pool", "create", "detection-gpu", "--type", "process"], source, env)
        _run([prefect, "work-pool", "set-concurrency-limit", "detection-gpu", "2"], source, env)
        (tmp_path / "worker").mkdir()
        # a persistent working directory for the runs (the README's advice): the clone is kept and reused
        runs = tmp_path / "worker" / "runs"
        runs.mkdir()
        _run([prefect, "deploy", "--name", "pipeline-gpu", "--job-variable", f"working_dir={runs}"], source, {**env, "DETECTION_GIT_URL": str(source)})
        worker_log = (tmp_path / "worker.log").open("w")
        worker = subprocess.Popen([prefect, "worker", "start", "--pool", "detection-gpu"], cwd=tmp_path / "worker", env=env, stdout=worker_log, stderr=subprocess.STDOUT)

        started = time.perf_counter()
        watched = subprocess.run(
            [prefect, "deployment", "run", "pipeline/pipeline-gpu", "--watch", "--param", "device=cpu"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200,
        )  # fmt: skip
        wall = time.perf_counter() - started
        assert watched.returncode == 0 and "Completed" in watched.stdout, watched.stdout[-3000:] + watched.stderr[-3000:] + (tmp_path / "worker.log").read_text()[-5000:]
        print(f"deployment run (watch) Completed in {wall:.1f} s")

        clone = runs / "detection"  # git_clone's directory: the repository's name
        for path in ("models/best.pt", "models/model.onnx", "reports/metrics.json", "reports/video/metrics.json"):
            assert (clone / path).is_file(), path
        status = subprocess.run([dvc, "status", "--json"], cwd=clone, env=env, capture_output=True, text=True, timeout=300)
        assert status.returncode == 0 and json.loads(status.stdout or "{}") == {}, status.stdout
        assert "device: cpu" in (clone / "params.yaml").read_text()  # the run's parameter, written for DVC
        assert not (source / "models").exists(), "the worker ran in the source checkout, not its own clone"

        from prefect import get_client
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
            (artifact,) = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["detection-run"])))
            (flow_run,) = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[artifact.flow_run_id])))
            logs: list = []
            while page := client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id])), limit=200, offset=len(logs)):
                logs += page
            pool = client.read_work_pool("detection-gpu")
        assert flow_run.state.is_completed() and pool.concurrency_limit == 2
        markdown = artifact.data
        metrics = json.loads((clone / "reports/metrics.json").read_text())
        assert f"| evaluate | map50 | {metrics['map50']:.4g} |" in markdown
        # where the model lives: its md5 path in the remote, which holds it
        (best,) = [line for line in markdown.splitlines() if line.startswith("| `models/best.pt`")]
        remote_file = Path(best.split("`")[-2])
        assert remote_file.is_file() and remote_file.read_bytes() == (clone / "models/best.pt").read_bytes()
        messages = "\n".join(entry.message for entry in logs)
        for stage in ("fetch", "train", "infer-video"):
            assert f"Running stage '{stage}'" in messages, stage  # DVC's output, streamed into Prefect's logs
        assert "$ dvc pull --allow-missing --run-cache" in messages and "$ dvc push --run-cache" in messages

    finally:
        if worker is not None:
            _stop(worker)
        _stop(server)
