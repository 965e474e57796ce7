"""`detection models`: every name in full at 80 columns, --json, --family, --cpu, --help on adding one."""

from __future__ import annotations

import json
import os
import re
import subprocess
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO
from types import SimpleNamespace

from detection.cli import main
from tests.conftest import bin_path
from tests.models.test_build import ANCHORS


def _cli(*args: str) -> SimpleNamespace:
    """In-process `detection models ARGS` (the console entry point: errors exit 2 with one line)."""
    stdout, stderr, code = StringIO(), StringIO(), 0
    with redirect_stdout(stdout), redirect_stderr(stderr):
        try:
            main(["models", *args])
        except SystemExit as exc:
            code = int(exc.code or 0)
    return SimpleNamespace(returncode=code, stdout=stdout.getvalue(), stderr=stderr.getvalue())


def test_json_lists_60_names_and_every_anchor() -> None:
    proc = _cli("--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    names = [r["name"] for r in rows]
    assert len(names) >= 60 and len(set(names)) == len(names)
    shown = set(names) | {a["name"] for r in rows for a in r["aliases"]}
    assert set(ANCHORS) <= shown
    assert {"none", "backbone", "default"} <= set(next(r for r in rows if r["name"] == "fasterrcnn_resnet50_fpn")["weights"])


def test_table_shows_every_name_uncut_at_80_columns() -> None:
    env = {**os.environ, "COLUMNS": "80"}
    proc = subprocess.run([bin_path("detection"), "models"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    tokens = set(re.findall(r"\w+", proc.stdout))
    rows = json.loads(_cli("--json").stdout)
    for r in rows:
        assert r["name"] in tokens, r["name"]
        for a in r["aliases"]:
            assert a["name"] in tokens
    assert "…" not in proc.stdout
    assert max(len(line) for line in proc.stdout.splitlines()) <= 80  # two lines a model, no wrapped table rows
    wide = subprocess.run([bin_path("detection"), "models"], capture_output=True, text=True, env={**env, "COLUMNS": "160"}, timeout=300)
    assert "GFLOPs" in wide.stdout.splitlines()[2] and max(len(line) for line in wide.stdout.splitlines()) <= 160  # a table
    piped = subprocess.run([bin_path("detection"), "models"], capture_output=True, text=True, env={k: v for k, v in env.items() if k != "COLUMNS"}, timeout=300)
    assert any("fasterrcnn_tiny" in line and "faster_rcnn" in line for line in piped.stdout.splitlines())  # one line a model: grep finds it


def test_filters() -> None:
    retina = json.loads(_cli("--json", "--family", "retinanet").stdout)
    assert retina and {r["family"] for r in retina} == {"retinanet"}
    cpu = json.loads(_cli("--json", "--cpu").stdout)
    assert cpu and all(r["cpu_friendly"] for r in cpu)
    bad = _cli("--family", "yolo")
    assert bad.returncode == 2 and bad.stderr.startswith("error: unknown family 'yolo'")


def test_help_says_how_to_add_a_model() -> None:
    proc = _cli("--help")
    assert proc.returncode == 0
    assert "@register" in proc.stdout and "register_network" in proc.stdout
