"""`dvc plots show` renders offline: the page it writes inlines the vendored vega libraries (no CDN),
and those libraries, run from the page itself in node with no network, render the plot to SVG."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tasks.plots import LIBRARIES, PLOTS, TEMPLATE, build
from tests.conftest import bin_path, make_project

HERE = Path(__file__).resolve().parent


def test_the_template_is_built_from_the_vendored_files_as_published() -> None:
    assert TEMPLATE.read_text(encoding="utf-8") == build(), "run `python -m tasks.plots --write`"
    for package, name in LIBRARIES:
        code = (PLOTS / "vendor" / package / name).read_text(encoding="utf-8")
        assert code in TEMPLATE.read_text(encoding="utf-8")
        licence = (PLOTS / "vendor" / package / "LICENSE").read_text(encoding="utf-8")
        assert "Redistribution and use in source and binary forms" in licence  # BSD-3-Clause
        version = package.rsplit("-", 1)[1]
        assert version in code[:20000] or package.startswith("vega-embed"), package


def test_dvc_plots_show_writes_a_page_that_renders_offline(tmp_path: Path, cli_env: dict[str, str]) -> None:
    project = make_project(tmp_path / "project")
    history = project / "reports/train/history.csv"
    history.parent.mkdir(parents=True)
    history.write_text("epoch,val_map50\n1,0.12\n2,0.41\n3,0.58\n")
    proc = subprocess.run([bin_path("dvc"), "plots", "show", str(history.relative_to(project)), "-x", "epoch", "-y", "val_map50", "-o", "out"],
                          cwd=project, env=cli_env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    page = (project / "out/index.html").read_text(encoding="utf-8")
    assert not re.findall(r"<script[^>]*\bsrc=", page), "the page loads a script from elsewhere"
    assert "cdn.jsdelivr.net" not in page and "vegaEmbed(" in page
    node = shutil.which("node")
    if node is None:
        pytest.skip("node not found: the page's scripts were not executed")
    svg = subprocess.run([node, str(HERE / "render_plot.js"), str(project / "out/index.html")], capture_output=True, text=True, timeout=120)
    assert svg.returncode == 0, svg.stderr[-3000:]
    assert svg.stdout.startswith("<svg") and "val_map50" in svg.stdout and svg.stdout.count("<path") > 3
