"""The end-to-end pipeline as a Prefect flow: each stage of ``dvc.yaml``, in order, through DVC.

Run it locally (Prefect's ephemeral API, no server needed)::

    python -m flows.pipeline                              # every stage
    python -m flows.pipeline --stages fetch convert split # a subset, kept in pipeline order
    python -m flows.pipeline --stages train --force       # re-run a stage DVC finds up to date

or deploy it to a ``process`` work pool with ``prefect.yaml`` (see the README). Each stage is one task
run named after the stage; it runs ``dvc repro --single-item <stage>``, so DVC records the run in
``dvc.lock`` and skips stages whose inputs did not change. The flow ends with a ``dvc status`` check.
"""

from __future__ import annotations

import os

# Unless the user chose otherwise (set before Prefect is imported: it reads them then): telemetry off,
# and a longer wait for the ephemeral API than Prefect's 20 s, which a busy 2-core machine can exceed.
for _key, _value in {
    "DO_NOT_TRACK": "1",
    "DVC_NO_ANALYTICS": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
}.items():
    os.environ.setdefault(_key, _value)

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from prefect import flow  # noqa: E402
from prefect.exceptions import MissingContextError  # noqa: E402
from prefect.logging import get_run_logger  # noqa: E402

from detection.stages import STAGE_NAMES  # noqa: E402
from tasks.stages import STAGE_TASKS, dvc_status  # noqa: E402


def plan(stages: Iterable[str] | str | None = None) -> list[str]:
    """The stages to run, in pipeline order (``STAGE_NAMES``): all of them for None, else the named ones
    (a list, or one comma-separated string). Raises ``ValueError`` naming any unknown stage."""
    if stages is None:
        return list(STAGE_NAMES)
    if isinstance(stages, str):
        stages = [stages]
    wanted = {s.strip() for item in stages for s in str(item).split(",") if s.strip()}
    unknown = sorted(wanted - set(STAGE_NAMES))
    if unknown:
        raise ValueError(f"unknown stage(s): {', '.join(unknown)}; the stages are, in order: {', '.join(STAGE_NAMES)}")
    if not wanted:
        raise ValueError(f"no stage given; the stages are, in order: {', '.join(STAGE_NAMES)}")
    return [s for s in STAGE_NAMES if s in wanted]


def project_root(project_dir: str | Path) -> Path:
    """The absolute project directory; raises ``ValueError`` unless it holds ``dvc.yaml``."""
    root = Path(project_dir).expanduser().resolve()
    if not (root / "dvc.yaml").is_file():
        raise ValueError(f"no dvc.yaml in {root}: pass the project directory (project_dir / --project-dir)")
    return root


def _logger() -> Any:
    try:
        return get_run_logger()
    except MissingContextError:
        import logging

        return logging.getLogger(__name__)


@flow(name="pipeline", description="fetch -> convert -> split -> train -> evaluate -> export -> infer-video, each through `dvc repro`")
def pipeline(
    project_dir: str = ".",
    stages: list[str] | None = None,
    force: bool = False,
    data: str | None = None,
    model: str | None = None,
    epochs: int | None = None,
    device: str | None = None,
    pull: bool = False,
    push: bool = False,
) -> dict[str, Any]:
    """Run ``stages`` (default: all) in pipeline order, each as its own task run through DVC, then
    ``dvc status``. ``force`` re-runs stages that DVC finds up to date. ``data`` (a dataset config),
    ``model``, ``epochs`` and ``device`` are written into the checkout's params.yaml first (DVC then
    re-runs what they change). ``pull``: ``dvc pull`` before (the team remote's outputs), ``push``:
    ``dvc push`` after, then a ``detection-run`` artifact (metrics, where the model lives). Returns each
    stage's result (``skipped`` = DVC found it up to date) and the final ``dvc status`` ({} = clean)."""
    from tasks.remote import dvc_pull, dvc_push, overrides, publish_run_summary, set_params

    selected = plan(stages)
    root = project_root(project_dir)
    log = _logger()
    log.info("project %s: stages %s%s", root, " -> ".join(selected), " (forced)" if force else "")
    values = overrides(data=data, model=model, epochs=epochs, device=device)
    if values:
        set_params(str(root), values)
    if pull:
        dvc_pull(str(root))
    results = [STAGE_TASKS[name](project_dir=str(root), force=force) for name in selected]
    # A subset is checked on its own stages (the stages after it may well be out of date).
    status = dvc_status(project_dir=str(root), stages=None if selected == list(STAGE_NAMES) else selected)
    if push:
        dvc_push(str(root))
    if pull or push:
        publish_run_summary(str(root), pushed=push)
    return {"project_dir": str(root), "stages": results, "status": status}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flows.pipeline",
        description="Run the pipeline as a Prefect flow (on Prefect's ephemeral API unless PREFECT_API_URL is set).",
    )
    parser.add_argument("--stages", nargs="+", metavar="STAGE", help=f"stages to run (space- or comma-separated), kept in pipeline order; default all: {' '.join(STAGE_NAMES)}")
    parser.add_argument("--force", action="store_true", help="re-run the stages even if DVC finds them up to date")
    parser.add_argument("--project-dir", default=".", help="the project directory (holds dvc.yaml, params.yaml); default: .")
    parser.add_argument("--data", help="dataset config written into params.yaml first (data)")
    parser.add_argument("--model", help="model name written into params.yaml first (model.name)")
    parser.add_argument("--epochs", type=int, help="written into params.yaml first (train.epochs)")
    parser.add_argument("--device", help="written into params.yaml first (train.device, evaluate.device)")
    parser.add_argument("--pull", action="store_true", help="`dvc pull` from the team remote before the stages")
    parser.add_argument("--push", action="store_true", help="`dvc push` to the team remote after the stages")
    args = parser.parse_args(argv)
    try:  # check the arguments before Prefect starts its API (seconds)
        stages = plan(args.stages)
        root = project_root(args.project_dir)
    except ValueError as exc:
        parser.error(str(exc))
    started = time.perf_counter()
    try:
        result = pipeline(
            project_dir=str(root), stages=stages, force=args.force, data=args.data, model=args.model,
            epochs=args.epochs, device=args.device, pull=args.pull, push=args.push,
        )  # fmt: skip
    except Exception as exc:  # the flow run failed; Prefect has logged the traceback
        print(f"error: the pipeline failed after {time.perf_counter() - started:.1f} s: {exc}", file=sys.stderr)
        return 1
    ran = [r["stage"] for r in result["stages"] if not r["skipped"]]
    print(
        f"pipeline done in {time.perf_counter() - started:.1f} s: ran {', '.join(ran) or 'nothing'}"
        f"; dvc status: {'clean' if not result['status'] else result['status']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
