"""Fixtures of the orchestration tests: one Prefect test API for the session, and ways to read it."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """A Prefect API on a temporary database (one server start, ~10 s, shared by the modules); its URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield str(PREFECT_API_URL.value())


def prefect_env(api_url: str) -> dict[str, str]:
    """Subprocess environment: the harness's API (it is only set inside this process), venv first on PATH."""
    return {**os.environ, "PREFECT_API_URL": api_url, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def task_runs(flow_run_id: UUID, expect: int, timeout: float = 30.0) -> list[Any]:
    """The task runs of a flow run, in start order, once ``expect`` of them are final (task states reach
    the API through events, a moment after the flow returns)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            final = [r for r in runs if r.state is not None and r.state.is_final()]
            if len(final) >= expect or time.monotonic() > deadline:
                return sorted(runs, key=lambda r: (r.start_time is None, r.start_time))
            time.sleep(0.5)
