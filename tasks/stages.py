"""One Prefect task per pipeline stage; each runs the stage through DVC.

A task runs ``python -m dvc repro --single-item <stage>`` in the project directory, so every run that
Prefect triggers is recorded in ``dvc.lock`` and cached by DVC (a stage whose inputs did not change is
skipped by DVC, not by Prefect: DVC is the cache of record, Prefect result caching is off). Prefect adds
retries (``fetch``: 1, for the network), logs (DVC's and the stage's output, line by line) and, after
``train``, ``evaluate``, ``export`` and ``infer-video``, a markdown artifact of the stage's metrics file.

The stage names and their order come from ``detection.stages.STAGE_NAMES``; ``STAGE_TASKS`` maps each
name to its task (task name and task-run name = the stage name).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from prefect import Task, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger

from detection.config import load_params
from detection.stages import STAGE_NAMES
from detection.stages import metrics_files as stage_metrics_files  # stage -> file, from params

# Telemetry off for DVC and Prefect in every subprocess the tasks start (the project's policy).
TELEMETRY_ENV: dict[str, str] = {
    "DO_NOT_TRACK": "1",
    "DVC_NO_ANALYTICS": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}

# Retries per stage (default 0). fetch may download over the network. A stage is retried only when
# its command did not fail with USER_ERROR_STATUS (a bad config, a missing file, a checksum mismatch:
# running it again cannot help); the CLI exits 75 for transient failures (network, a server's 5xx).
RETRIES: dict[str, int] = {"fetch": 2}
RETRY_DELAY_SECONDS: float = 10.0
USER_ERROR_STATUS = 2

# Lines of stderr quoted in the exception of a failed stage.
ERROR_TAIL_LINES = 30

# What DVC prints when it does not run a stage's command: up to date, or restored from its run cache.
_UP_TO_DATE = "didn't change, skipping"
_RESTORED = "is cached - skipping run"


class StageFailed(RuntimeError):
    """``dvc repro`` of a stage exited non-zero; the message ends with the tail of its stderr."""

    def __init__(self, stage: str, returncode: int, tail: list[str]) -> None:
        self.stage = stage
        self.returncode = returncode
        self.tail = tail
        # DVC exits 255 whatever the command did; it says "failed to run: <cmd>, exited with N"
        found = [int(m.group(1)) for line in tail if (m := re.search(r"exited with (-?\d+)", line))]
        self.command_returncode: int | None = found[-1] if found else None
        body = "\n".join(f"  {line}" for line in tail) if tail else "  (no output on stderr)"
        super().__init__(f"stage {stage!r} failed: `dvc repro --single-item {stage}` exited with {returncode}; last lines of stderr:\n{body}")

    def __reduce__(self) -> tuple[Any, ...]:  # picklable (Prefect may serialize a failed state's exception)
        return (StageFailed, (self.stage, self.returncode, self.tail))


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except MissingContextError:  # called outside a flow/task run (plain function use)
        return logging.getLogger(__name__)


def subprocess_env() -> dict[str, str]:
    """The environment of the DVC subprocesses: ours, telemetry off, unbuffered output, and this
    interpreter's ``bin`` first on ``PATH`` (so ``detection`` in ``dvc.yaml`` is the one installed
    beside this Python even when the virtual environment is not activated, e.g. under a worker)."""
    env = dict(os.environ)
    env.update(TELEMETRY_ENV)
    env["PYTHONUNBUFFERED"] = "1"
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bindir, *(p for p in env.get("PATH", "").split(os.pathsep) if p and p != bindir)])
    return env


def run_dvc(args: list[str], project_dir: str | Path, log: Any = None, echo: bool = True) -> tuple[int, list[str], list[str]]:
    """Run ``python -m dvc <args>`` in ``project_dir``, logging each output line as it comes (``echo``).

    Returns (exit status, stdout lines, stderr lines). The subprocess is killed if we are interrupted
    (a cancelled task run, Ctrl-C)."""
    log = log or _logger()
    cmd = [sys.executable, "-m", "dvc", *args]
    log.info("$ %s  (in %s)", " ".join(["dvc", *args]), project_dir)
    proc = subprocess.Popen(
        cmd, cwd=project_dir, env=subprocess_env(), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace", bufsize=1,
    )
    lines: queue.Queue[tuple[str, str | None]] = queue.Queue()

    def pump(name: str, stream: Any) -> None:
        for line in stream:
            lines.put((name, line.rstrip("\r\n")))
        lines.put((name, None))

    readers = [threading.Thread(target=pump, args=(n, s), daemon=True) for n, s in (("stdout", proc.stdout), ("stderr", proc.stderr))]
    for t in readers:
        t.start()
    out: list[str] = []
    err: list[str] = []
    try:
        open_streams = 2
        while open_streams:
            name, line = lines.get()
            if line is None:
                open_streams -= 1
                continue
            (out if name == "stdout" else err).append(line)
            if echo and line.strip():
                log.info("%s", line)  # one log record per line: the Prefect UI shows them as they come
        returncode = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    for t in readers:
        t.join(timeout=5)
    return returncode, out, err


def metrics_files(project_dir: str | Path = ".") -> dict[str, Path]:
    """Stage name -> its metrics file (relative to the project), from the project's ``params.yaml``."""
    return stage_metrics_files(load_params(Path(project_dir) / "params.yaml"))


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    s = json.dumps(v) if isinstance(v, (list, dict)) else str(v)
    return s.replace("|", "\\|").replace("\n", " ")


def _scalars(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Flatten nested mappings to dotted keys; lists of records (e.g. export's per-image rows) are summarised."""
    rows: list[tuple[str, Any]] = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            rows.extend(_scalars(v, f"{key}."))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            rows.append((key, f"{len(v)} rows"))
        else:
            rows.append((key, v))
    return rows


def metrics_markdown(stage: str, metrics: dict[str, Any], source: str) -> str:
    """A markdown report of a metrics file: one table of the values, one per-class table if present."""
    metrics = dict(metrics)
    per_class = metrics.pop("per_class", None)
    lines = [f"# {stage}: metrics", "", f"From `{source}`.", "", "| metric | value |", "|---|---|"]
    lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in _scalars(metrics)]
    if isinstance(per_class, dict) and per_class:
        cols = sorted({c for v in per_class.values() if isinstance(v, dict) for c in v})
        lines += ["", "## Per class", "", "| class | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
        for name, v in per_class.items():
            v = v if isinstance(v, dict) else {"value": v}
            lines.append(f"| {_cell(name)} | " + " | ".join(_cell(v.get(c)) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def artifact_key(stage: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes: ``detection-<stage>-metrics``."""
    return f"detection-{stage}-metrics"


def publish_metrics(stage: str, project_dir: str | Path = ".", log: Any = None) -> str | None:
    """Publish the stage's metrics file as a markdown artifact; return the markdown (None if the stage
    has no metrics file, or it is missing/unreadable: that is logged, not raised; the stage itself passed)."""
    log = log or _logger()
    path = metrics_files(project_dir).get(stage)
    if path is None:
        return None
    full = Path(project_dir) / path
    try:
        metrics = json.loads(full.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("stage %s: no metrics artifact: cannot read %s (%s)", stage, full, exc)
        return None
    if not isinstance(metrics, dict):
        log.warning("stage %s: no metrics artifact: %s holds a %s, not a mapping", stage, full, type(metrics).__name__)
        return None
    markdown = metrics_markdown(stage, metrics, str(path))
    create_markdown_artifact(markdown=markdown, key=artifact_key(stage), description=f"{stage} metrics ({path})")
    return markdown


def _run_stage(stage: str, project_dir: str = ".", force: bool = False) -> dict[str, Any]:
    """Run one stage with ``dvc repro --single-item`` (``--force`` to re-run an up-to-date stage)."""
    if stage not in STAGE_NAMES:
        raise ValueError(f"unknown stage {stage!r}; the stages are: {', '.join(STAGE_NAMES)}")
    log = _logger()
    args = ["repro", "--single-item", stage] + (["--force"] if force else [])
    started = time.perf_counter()
    returncode, out, err = run_dvc(args, project_dir, log)
    seconds = round(time.perf_counter() - started, 2)
    if returncode != 0:
        raise StageFailed(stage, returncode, [line for line in err if line.strip()][-ERROR_TAIL_LINES:])
    text = "\n".join(out + err)
    outcome = "up-to-date" if _UP_TO_DATE in text else "restored" if _RESTORED in text else "ran"
    how = {"ran": "ran", "up-to-date": "up to date, not run", "restored": "restored from DVC's run cache, not run"}[outcome]
    log.info("stage %s: %s (%.1f s)", stage, how, seconds)
    result: dict[str, Any] = {"stage": stage, "outcome": outcome, "skipped": outcome != "ran", "seconds": seconds}
    if stage in ("train", "evaluate", "export", "infer-video"):
        result["artifact"] = publish_metrics(stage, project_dir, log) is not None
    return result


def retry_unless_user_error(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect's ``retry_condition_fn``: retry a failed stage unless its command exited with the CLI's
    user-error status (a retry of a bad config would fail the same way, only later)."""
    exc = state.data if isinstance(state.data, BaseException) else state.result(raise_on_failure=False)
    if isinstance(exc, StageFailed) and exc.command_returncode == USER_ERROR_STATUS:
        _logger().error("stage %s: a user error (exit status %d): not retried", exc.stage, USER_ERROR_STATUS)
        return False
    return True


def stage_task(stage: str) -> Task[..., dict[str, Any]]:
    """The Prefect task of ``stage``: ``(project_dir=".", force=False) -> result``, task name and
    task-run name = the stage name, its retries; Prefect result caching off (DVC is the cache: Prefect
    must never skip a stage on its own)."""
    if stage not in STAGE_NAMES:
        raise ValueError(f"unknown stage {stage!r}; the stages are: {', '.join(STAGE_NAMES)}")

    def run(project_dir: str = ".", force: bool = False) -> dict[str, Any]:
        return _run_stage(stage, project_dir, force)

    run.__name__ = run.__qualname__ = "stage_" + stage.replace("-", "_")
    run.__doc__ = f"`dvc repro --single-item {stage}` (with `--force` if force) in project_dir."
    retries = RETRIES.get(stage, 0)
    return task(
        run,
        name=stage,
        task_run_name=stage,
        description=run.__doc__,
        retries=retries,
        retry_delay_seconds=RETRY_DELAY_SECONDS if retries else 0,
        retry_condition_fn=retry_unless_user_error if retries else None,
        cache_policy=NO_CACHE,
        persist_result=False,
    )


STAGE_TASKS: dict[str, Task[..., dict[str, Any]]] = {name: stage_task(name) for name in STAGE_NAMES}


def _dvc_status(project_dir: str = ".", stages: list[str] | None = None) -> dict[str, Any]:
    """``dvc status --json [stages]``: {} when the stages are up to date; logged, not raised."""
    log = _logger()
    returncode, out, err = run_dvc(["status", "--json", *(stages or [])], project_dir, log, echo=False)
    if returncode != 0:
        raise RuntimeError(f"`dvc status` exited with {returncode}: " + " | ".join(err[-ERROR_TAIL_LINES:]))
    text = "\n".join(out).strip()
    try:
        status = json.loads(text) if text else {}
    except ValueError:  # not JSON: keep the raw text
        status = {"output": text}
    if status:
        log.warning("dvc status: not up to date: %s", json.dumps(status))
    else:
        log.info("dvc status: %s up to date", ", ".join(stages) if stages else "pipeline")
    return status


dvc_status: Task[..., dict[str, Any]] = task(
    _dvc_status, name="dvc-status", task_run_name="dvc-status", cache_policy=NO_CACHE, persist_result=False
)
