"""Per-epoch metrics: ``history.csv`` and dvclive (``dvc exp show`` columns, ``dvc plots`` curves).

Both are rewritten from the full list of rows at each epoch, so a resumed run (which may re-run part
of an epoch) never logs a step twice.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from detection.io import atomic_path

log = logging.getLogger(__name__)


def write_history(rows: list[dict[str, Any]], reports: Path, dvclive_dir: Path | None = None) -> pd.DataFrame:
    history = pd.DataFrame(rows)
    reports.mkdir(parents=True, exist_ok=True)
    with atomic_path(reports / "history.csv") as tmp:
        history.to_csv(tmp, index=False, float_format="%.6g")
    if dvclive_dir is not None:
        _dvclive(rows, dvclive_dir)
    return history


def _dvclive(rows: list[dict[str, Any]], directory: Path) -> None:
    try:
        from dvclive import Live
    except ImportError:  # dvclive is optional for the library
        log.warning("dvclive is not installed: only history.csv is written")
        return
    logging.getLogger("dvclive").setLevel(logging.ERROR)
    directory = Path(directory).resolve()
    try:
        live = Live(dir=str(directory), resume=False, save_dvc_exp=False, dvcyaml=None)
    except Exception as exc:  # dvclive 3.49 fails in a git repo without commits ("Empty git repo")
        log.debug("dvclive in this repo failed (%s): logging outside it", exc)
        with tempfile.TemporaryDirectory() as elsewhere, contextlib.chdir(elsewhere):
            live = Live(dir=str(directory), resume=False, save_dvc_exp=False, dvcyaml=None)
    with live:
        for row in rows:
            live.step = int(row["epoch"])
            for key, value in row.items():
                if key != "epoch" and isinstance(value, (int, float)) and value == value:
                    live.log_metric(_metric_name(key), float(value))
            live.make_summary()


def _metric_name(column: str) -> str:
    """``val_map`` -> ``val/map``, ``train_loss`` -> ``train/loss``, ``lr`` -> ``train/lr``."""
    for split in ("train", "val"):
        if column.startswith(split + "_"):
            return f"{split}/{column[len(split) + 1 :]}"
    return f"train/{column}"
