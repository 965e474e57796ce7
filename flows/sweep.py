"""The backbone sweep: train and evaluate several models on the same data, as DVC experiments, in parallel.

    python -m flows.sweep --models fasterrcnn_tiny ssdlite320_mobilenet_v3_large fasterrcnn_mobilenet_v3_large_320_fpn --epochs 2
    python -m flows.sweep --models a b c --cluster tcp://scheduler:8786   # task runs on a Dask cluster
    python -m flows.sweep --models a b c --max-parallel 1                  # one after the other

First the data stages (fetch, convert, split) run once in the project, through DVC, so every model sees
the same split. Then each model is one task run (``experiment-<model>``), fanned out: a thread pool by
default (``--max-parallel``, default one per model), or ``prefect-dask``'s ``DaskTaskRunner`` on
``--cluster``. Each experiment has a workspace of its own (a ``git clone --shared`` of the project
under ``.dvc/tmp/sweep/``, the project's uncommitted changes copied in, the project's DVC cache
shared), so DVC's locks never collide; there it runs ``dvc exp run -S model.name=<model> [-S
train.epochs=N] [-S key=value ...]``, whose data stages are restored from the shared run cache, and
pushes the experiment (its git ref) back to the project: ``dvc exp show`` in the project lists them all.

Then ``reports/sweep/table.{md,csv}`` (model, mAP, mAP@0.5, parameters, GFLOPs, train images/s, CPU
FPS) and ``reports/sweep/pareto.png`` (mAP against FPS, the Pareto front marked) are written, and the
table is published as the Markdown artifact ``detection-sweep``. On a multi-host Dask cluster the
project directory must be on a filesystem that every worker sees at the same path.
"""

from __future__ import annotations

# first: flows.pipeline sets the environment defaults (telemetry off, a longer ephemeral-API start)
# before Prefect is imported
from flows.pipeline import _logger, project_root  # isort: skip

import argparse  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from prefect import flow, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

from detection.config import load_dataset_config, load_params  # noqa: E402
from detection.data.table import images, read_table  # noqa: E402
from detection.models import get_spec  # noqa: E402
from detection.stages import metrics_files  # noqa: E402
from flows.sweep_report import experiment_row, model_stats, pareto_front, plot_pareto, write_table  # noqa: E402
from tasks.stages import STAGE_TASKS, run_dvc, subprocess_env  # noqa: E402

DATA_STAGES = ("fetch", "convert", "split")
WORKSPACES = Path(".dvc/tmp/sweep")  # inside the project, ignored by git (.dvc/.gitignore) and DVC


class ExperimentFailed(RuntimeError):
    """A step of one experiment exited non-zero; the message ends with its last lines of output."""


def _git(args: list[str], cwd: Path) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=subprocess_env())
    if proc.returncode != 0:
        raise ExperimentFailed(f"`git {' '.join(args)}` in {cwd} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def make_workspace(project: Path, dest: Path) -> Path:
    """A clone of ``project`` at ``dest`` with its uncommitted changes and the project's DVC cache."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _git(["clone", "--quiet", "--shared", "--no-checkout", str(project), str(dest)], project)
    _git(["checkout", "--quiet", _git(["rev-parse", "HEAD"], project).strip()], dest)
    changed = _git(["ls-files", "--modified", "--others", "--exclude-standard", "-z"], project).split("\0")
    for rel in filter(None, changed):
        src, dst = project / rel, dest / rel
        if src.is_file() and not rel.startswith(str(WORKSPACES)):
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    deleted = _git(["ls-files", "--deleted", "-z"], project).split("\0")
    for rel in filter(None, deleted):
        (dest / rel).unlink(missing_ok=True)
    cache = _cache_dir(project)
    code, _, err = run_dvc(["cache", "dir", "--local", str(cache)], dest, echo=False)
    if code != 0:
        raise ExperimentFailed(f"`dvc cache dir` in {dest} failed: {' | '.join(err[-5:])}")
    return dest


def _cache_dir(project: Path) -> Path:
    code, out, err = run_dvc(["cache", "dir"], project, echo=False)
    if code != 0 or not out:
        raise ExperimentFailed(f"`dvc cache dir` in {project} failed: {' | '.join(err[-5:])}")
    return Path(out[-1].strip()).resolve()


def _threads(parallel: int) -> dict[str, str]:
    """Torch's threads per experiment so that parallel trainings share the cores instead of fighting."""
    n = str(max(1, (os.cpu_count() or 1) // max(1, parallel)))
    return {k: os.environ.get(k, n) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}


@task(name="experiment", task_run_name="experiment-{model}", cache_policy=NO_CACHE, persist_result=False)
def run_experiment(project_dir: str, model: str, name: str, overrides: list[str], parallel: int = 1, keep: bool = False) -> dict[str, Any]:
    """One model of the sweep: ``dvc exp run`` in its own workspace, pushed back to the project as
    experiment ``name``; returns its table row (measured columns; params/GFLOPs are added by the flow)."""
    log = _logger()
    project = Path(project_dir)
    workspace = make_workspace(project, project / WORKSPACES / name)
    sets = [f"model.name={model}", *overrides]
    started = time.perf_counter()
    os.environ.update(_threads(parallel))  # read by subprocess_env(); same value for every thread of this run
    code, _, err = run_dvc(["exp", "run", "--name", name, *[a for s in sets for a in ("-S", s)]], workspace, log)
    if code != 0:
        raise ExperimentFailed(f"experiment {name} ({model}) failed; workspace kept at {workspace}; last lines:\n  " + "\n  ".join(err[-20:]))
    seconds = round(time.perf_counter() - started, 1)
    params = load_params(workspace / "params.yaml")
    data = load_dataset_config(workspace / params.data)
    train_images = len(images(read_table(workspace / data.train)))
    row = {"model": model, "experiment": name, "seconds": seconds, **experiment_row(workspace, metrics_files(params), train_images)}
    code, _, err = run_dvc(["exp", "push", "--no-cache", "origin", name], workspace, log, echo=False)
    if code != 0:
        raise ExperimentFailed(f"`dvc exp push origin {name}` failed; workspace kept at {workspace}: {' | '.join(err[-5:])}")
    if not keep:
        shutil.rmtree(workspace, ignore_errors=True)
    log.info("experiment %s: %s in %.1f s: mAP %s, CPU FPS %s", name, model, seconds, row["map"], row["cpu_fps"])
    return row


def check_models(models: list[str]) -> list[str]:
    """The model names, each once, in order; raises ``DetectionError`` naming an unknown one."""
    if not models:
        raise ValueError("no model given: --models NAME [NAME ...] (`detection models` lists them)")
    for m in models:
        get_spec(m)
    return list(dict.fromkeys(models))


@flow(name="sweep", description="train and evaluate several models on the same data, as parallel DVC experiments")
def sweep(
    models: list[str],
    epochs: int | None = None,
    project_dir: str = ".",
    out: str = "reports/sweep",
    params: list[str] | None = None,
    max_parallel: int | None = None,
    keep_workspaces: bool = False,
) -> dict[str, Any]:
    """Run the data stages once, then one experiment per model (in parallel), then the table and plot.
    ``params``: extra ``key=value`` overrides for every experiment (``dvc exp run -S``)."""
    models = check_models(models)
    root = project_root(project_dir)
    log = _logger()
    for stage in DATA_STAGES:  # the same data for every model, and their run cache for the workspaces
        STAGE_TASKS[stage](project_dir=str(root))
    overrides = ([f"train.epochs={epochs}"] if epochs else []) + list(params or [])
    stamp = time.strftime("%Y%m%d-%H%M%S")
    parallel = max_parallel or len(models)
    started = time.perf_counter()
    futures = [run_experiment.submit(str(root), m, f"sweep-{stamp}-{m}".replace("_", "-"), overrides, parallel, keep_workspaces) for m in models]
    rows = [f.result() for f in futures]
    wall = round(time.perf_counter() - started, 1)
    p = load_params(root / "params.yaml")
    num_classes = len(load_dataset_config(root / p.data).names) + 1
    for row in rows:
        row.update(model_stats(row["model"], num_classes, p.train.imgsz))
    for row, on in zip(rows, pareto_front(rows), strict=True):
        row["pareto"] = on
    out_dir = root / out
    md, csv_path = write_table(rows, out_dir)
    png = plot_pareto(rows, out_dir / "pareto.png")
    markdown = f"# sweep: {len(rows)} models\n\n{md.read_text(encoding='utf-8')}\nExperiments: `dvc exp show` in {root}; plot: {png}\n"
    create_markdown_artifact(markdown=markdown, key="detection-sweep", description="backbone sweep: table")
    log.info("sweep of %d models in %.1f s (experiments only): %s", len(rows), wall, md)
    return {"rows": rows, "table": str(md), "csv": str(csv_path), "plot": str(png), "experiments_seconds": wall}


def sweep_runner(cluster: str | None, max_parallel: int | None, models: int) -> Any:
    """The task runner: prefect-dask's DaskTaskRunner on ``cluster``, else a thread pool."""
    if cluster:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=cluster)
    return ThreadPoolTaskRunner(max_workers=max_parallel or models)


def main(argv: list[str] | None = None) -> int:
    from detection.errors import DetectionError

    parser = argparse.ArgumentParser(prog="python -m flows.sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", required=True, metavar="MODEL", help="registered model names (`detection models`)")
    parser.add_argument("--epochs", type=int, help="train.epochs for every model (default: params.yaml's)")
    parser.add_argument("--cluster", metavar="tcp://HOST:8786", help="a Dask scheduler: run the experiments there (prefect-dask)")
    parser.add_argument("--max-parallel", type=int, help="experiments at once on the local runner (default: one per model)")
    parser.add_argument("--set", "-S", dest="params", action="append", metavar="KEY=VALUE", help="a params override for every experiment")
    parser.add_argument("--project-dir", default=".", help="the project (holds dvc.yaml); default: .")
    parser.add_argument("--out", default="reports/sweep", help="folder of table.md, table.csv, pareto.png (in the project)")
    parser.add_argument("--keep-workspaces", action="store_true", help="keep each experiment's workspace under .dvc/tmp/sweep")
    args = parser.parse_args(argv)
    try:
        models = check_models(args.models)
        root = project_root(args.project_dir)
    except (ValueError, DetectionError) as exc:
        parser.error(str(exc))
    if args.epochs is not None and args.epochs < 1:
        parser.error("--epochs must be at least 1")
    runner = sweep_runner(args.cluster, args.max_parallel, len(models))
    where = f"DaskTaskRunner at {args.cluster}" if args.cluster else f"ThreadPoolTaskRunner, {args.max_parallel or len(models)} at once"
    print(f"sweep of {len(models)} models: task runner {where}", flush=True)
    started = time.perf_counter()
    try:
        result = sweep.with_options(task_runner=runner)(
            models=models, epochs=args.epochs, project_dir=str(root), out=args.out, params=args.params,
            max_parallel=args.max_parallel, keep_workspaces=args.keep_workspaces,
        )  # fmt: skip
    except Exception as exc:
        print(f"error: the sweep failed after {time.perf_counter() - started:.1f} s: {exc}", file=sys.stderr)
        return 1
    print(Path(result["table"]).read_text(encoding="utf-8"))
    print(f"sweep done in {time.perf_counter() - started:.1f} s (experiments {result['experiments_seconds']} s): {result['table']}, {result['csv']}, {result['plot']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
