"""Retries: a transient fetch failure (a local HTTP server failing the first requests) is retried and
the run completes; a user error (the CLI's exit status 2) fails once, with no retry."""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from detection.data.sample import make_sample
from tests.orchestration.conftest import task_runs


class FlakyHandler(http.server.BaseHTTPRequestHandler):
    """Answers 503 to the first ``server.failures`` requests, then serves ``server.data``."""

    def do_GET(self) -> None:  # noqa: N802
        srv = self.server
        srv.requests += 1  # type: ignore[attr-defined]
        if srv.requests <= srv.failures:  # type: ignore[attr-defined]
            self.send_error(503, "busy, try again")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(srv.data)))  # type: ignore[attr-defined]
        self.end_headers()
        self.wfile.write(srv.data)  # type: ignore[attr-defined]

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def flaky_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[http.server.ThreadingHTTPServer]:
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("DETECTION_CACHE", str(tmp_path / "download-cache"))  # read by the dvc subprocesses
    sample = make_sample(tmp_path / "sample", images=24, width=160, height=96, video_frames=8)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(sample, arcname="sample")
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FlakyHandler)
    srv.data, srv.requests, srv.failures = buf.getvalue(), 0, 2  # type: ignore[attr-defined]
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _set_fetch(project: Path, **values: object) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["fetch"].update(values)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fetch task as the flow runs it, with a short retry delay (10 s by default)."""
    from tasks.stages import STAGE_TASKS

    monkeypatch.setitem(STAGE_TASKS, "fetch", STAGE_TASKS["fetch"].with_options(retry_delay_seconds=0.5))


def test_a_transient_fetch_failure_is_retried_and_the_run_completes(
    prefect_api: str, tiny_project: Path, flaky_server: http.server.ThreadingHTTPServer, quick_retries: None
) -> None:
    from flows.pipeline import pipeline

    url = f"http://127.0.0.1:{flaky_server.server_port}/gtsdb-sample.tar.gz"
    _set_fetch(tiny_project, source=url, sha256=hashlib.sha256(flaky_server.data).hexdigest())  # type: ignore[attr-defined]
    state = pipeline(project_dir=str(tiny_project), stages=["fetch"], return_state=True)
    assert state.is_completed(), state.message
    assert flaky_server.requests == 3  # type: ignore[attr-defined]  # two 503s, then the archive
    assert (tiny_project / "data/raw/gt.txt").is_file() and len(list((tiny_project / "data/raw").glob("*.ppm"))) == 24
    (run, _status) = task_runs(state.state_details.flow_run_id, expect=2)
    assert run.name == "fetch" and run.state.is_completed() and run.run_count == 3


def test_a_user_error_fails_once_without_retries(prefect_api: str, tiny_project: Path, quick_retries: None) -> None:
    from flows.pipeline import pipeline
    from tasks.stages import StageFailed

    _set_fetch(tiny_project, source="no/such/folder")
    state = pipeline(project_dir=str(tiny_project), stages=["fetch"], return_state=True)
    assert state.is_failed()
    with pytest.raises(StageFailed) as err:
        state.result()
    assert err.value.command_returncode == 2 and "fetch source not found" in str(err.value)
    (run,) = task_runs(state.state_details.flow_run_id, expect=1)
    assert run.name == "fetch" and run.state.is_failed() and run.run_count == 1
