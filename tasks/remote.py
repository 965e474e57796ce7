"""Prefect tasks around a run on a worker: set the run's parameters, ``dvc pull``, ``dvc push``, and a
Markdown artifact of the run's metrics and of where its model lives (in the DVC remote).

A worker's flow run works in its own checkout (prefect.yaml's pull step); it pulls what the team's
DVC remote already holds (so up-to-date stages are not run again), runs the stages through DVC, and
pushes the new outputs and its run cache to the remote. The run's ``dvc.lock`` stays in the worker's
clone (it is not committed to git); the artifact lists the md5 and remote path of each model file.
With the same commit and params, ``dvc repro --pull`` restores the stages that have no uncached
(``cache: false``) outputs from the run cache.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from tasks.stages import _cell, _logger, metrics_files, run_dvc

# flow parameter -> params.yaml keys it sets
PARAMETER_KEYS: dict[str, tuple[str, ...]] = {
    "data": ("data",),
    "model": ("model.name",),
    "epochs": ("train.epochs",),
    "device": ("train.device", "evaluate.device"),
}
RUN_ARTIFACT = "detection-run"


def overrides(**values: Any) -> dict[str, Any]:
    """``params.yaml`` keys -> values for the flow parameters that were given (not None)."""
    return {key: v for name, v in values.items() if v is not None for key in PARAMETER_KEYS[name]}


@task(name="set-params", task_run_name="set-params", cache_policy=NO_CACHE, persist_result=False)
def set_params(project_dir: str, values: dict[str, Any]) -> dict[str, Any]:
    """Write ``values`` (dotted keys) into the checkout's ``params.yaml``, comments kept (DVC's own
    round-trip YAML writer, as ``dvc exp run -S`` does), so that dvc.lock records the values used."""
    from dvc.utils.serialize import modify_yaml

    with modify_yaml(Path(project_dir) / "params.yaml") as params:
        for key, value in values.items():
            *parents, leaf = key.split(".")
            node = params
            for part in parents:
                node = node[part]
            node[leaf] = value
    _logger().info("params.yaml: %s", ", ".join(f"{k}={v}" for k, v in values.items()))
    return values


def _dvc(args: list[str], project_dir: str) -> list[str]:
    code, out, err = run_dvc(args, project_dir)
    if code != 0:
        raise RuntimeError(f"`dvc {' '.join(args)}` exited with {code}: " + " | ".join(err[-10:]))
    return out


@task(name="dvc-pull", task_run_name="dvc-pull", retries=2, retry_delay_seconds=10, cache_policy=NO_CACHE, persist_result=False)
def dvc_pull(project_dir: str) -> None:
    """``dvc pull --allow-missing --run-cache``: what the remote holds of this commit's outputs (none on a
    first run) and the run cache, so that stages someone already ran with these params are restored."""
    _dvc(["pull", "--allow-missing", "--run-cache"], project_dir)


@task(name="dvc-push", task_run_name="dvc-push", retries=2, retry_delay_seconds=10, cache_policy=NO_CACHE, persist_result=False)
def dvc_push(project_dir: str) -> None:
    """``dvc push --run-cache``: the run's outputs (data, checkpoints, ONNX model) and run cache."""
    _dvc(["push", "--run-cache"], project_dir)


def remote_url(project_dir: str) -> str | None:
    """The default DVC remote's URL (a relative local path resolved, as DVC does, from ``.dvc/``), or
    None when there is none."""
    values = []
    for key in ("core.remote", None):
        key = key or f"remote.{values[0]}.url"
        code, out, _ = run_dvc(["config", key], project_dir, echo=False)
        if code != 0 or not out or not out[-1].strip():
            return None
        values.append(out[-1].strip())
    url = values[1]
    if "://" not in url and not Path(url).is_absolute():
        url = str((Path(project_dir) / ".dvc" / url).resolve())
    return url


def model_locations(project_dir: str, url: str | None) -> list[tuple[str, str, str]]:
    """(path, md5, where the remote holds it) of the checkpoints and ONNX model in ``dvc.lock``."""
    lock = Path(project_dir) / "dvc.lock"
    if not lock.is_file():
        return []
    rows = []
    for stage in (yaml.safe_load(lock.read_text(encoding="utf-8")) or {}).get("stages", {}).values():
        for out in stage.get("outs", []):
            path, md5 = str(out.get("path", "")), str(out.get("md5", ""))
            if path.endswith((".pt", ".onnx")) and md5:
                where = f"{url.rstrip('/')}/files/md5/{md5[:2]}/{md5[2:]}" if url else "(no DVC remote)"
                rows.append((path, md5, where))
    return rows


def run_markdown(project_dir: str, pushed: bool) -> str:
    """Markdown: the main metrics of each stage, and where the model files live."""
    lines = ["# detection: pipeline run", "", "| stage | metric | value |", "|---|---|---|"]
    for stage, path in metrics_files(project_dir).items():
        full = Path(project_dir) / path
        try:
            values = json.loads(full.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            lines.append(f"| {stage} | `{path}` | not written |")
            continue
        for key, value in values.items():
            if isinstance(value, (int, float, str, bool)) and key not in ("source", "weights", "onnx"):
                lines.append(f"| {stage} | {key} | {_cell(value)} |")
    url = remote_url(project_dir)
    lines += ["", "## Model", "", f"DVC remote: `{url}`" + ("" if pushed else " (not pushed by this run)"), "",
              "| file | md5 | in the remote |", "|---|---|---|"]  # fmt: skip
    lines += [f"| `{p}` | `{m}` | `{w}` |" for p, m, w in model_locations(project_dir, url)]
    lines += ["", "Get it: `git pull && dvc pull models/best.pt models/model.onnx` in a clone of the project."]
    return "\n".join(lines) + "\n"


@task(name="run-summary", task_run_name="run-summary", cache_policy=NO_CACHE, persist_result=False)
def publish_run_summary(project_dir: str, pushed: bool) -> str:
    """Publish :func:`run_markdown` as the ``detection-run`` artifact; return the markdown."""
    markdown = run_markdown(project_dir, pushed)
    create_markdown_artifact(markdown=markdown, key=RUN_ARTIFACT, description="metrics of the run and where its model lives")
    return markdown
