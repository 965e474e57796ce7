"""An offline HTML template for ``dvc plots show``: the vega libraries inlined, no CDN.

DVC's default page loads vega, vega-lite and vega-embed from cdn.jsdelivr.net, so ``dvc plots show``
renders nothing without internet access. ``configs/plots/vendor/`` holds the three libraries as
published on the npm registry (vega@5.20.2, vega-lite@5.2.0, vega-embed@6.18.2, the versions DVC's
renderer asks for; BSD-3-Clause, their LICENSE files beside them), and ``configs/plots/offline.html``
is DVC's page with them inlined. ``.dvc/config`` names it (``plots.html_template``), so a plain
``dvc plots show`` (or ``dvc plots diff``) writes a self-contained ``dvc_plots/index.html``.

    python -m tasks.plots --check   # exit 1 if offline.html is not what the vendored files give
    python -m tasks.plots --write   # rebuild offline.html from the vendored files
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLOTS = ROOT / "configs" / "plots"
TEMPLATE = PLOTS / "offline.html"
# (npm package@version, built file), in load order: vega-lite and vega-embed need vega
LIBRARIES: tuple[tuple[str, str], ...] = (
    ("vega-5.20.2", "vega.min.js"),
    ("vega-lite-5.2.0", "vega-lite.min.js"),
    ("vega-embed-6.18.2", "vega-embed.min.js"),
)

_PAGE = """<!DOCTYPE html>
<html>
<head>
    {{refresh_tag}}
    <title>DVC Plot</title>
    <!-- vega@5.20.2, vega-lite@5.2.0, vega-embed@6.18.2 (BSD-3-Clause, see configs/plots/vendor/*/LICENSE),
         inlined by `python -m tasks.plots --write` so that this page renders with no internet access -->
{scripts}
    <style>
        table {{
            border-spacing: 15px;
        }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""


def build(vendor: Path = PLOTS / "vendor") -> str:
    """DVC's page (placeholders ``{plot_divs}`` and ``{refresh_tag}``) with the libraries inlined."""
    scripts = []
    for package, name in LIBRARIES:
        code = (vendor / package / name).read_text(encoding="utf-8")
        if "</script" in code.lower():
            raise ValueError(f"{package}/{name} contains '</script': it cannot be inlined")
        scripts.append(f"    <script>/* {package}/build/{name} */\n{code}\n    </script>")
    return _PAGE.format(scripts="\n".join(scripts))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasks.plots", description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true")
    mode.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    page = build()
    if args.write:
        TEMPLATE.write_text(page, encoding="utf-8")
        print(f"wrote {TEMPLATE} ({len(page)} characters)")
        return 0
    if TEMPLATE.is_file() and TEMPLATE.read_text(encoding="utf-8") == page:
        print(f"{TEMPLATE}: up to date")
        return 0
    print(f"{TEMPLATE} is out of date: run `python -m tasks.plots --write`", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
