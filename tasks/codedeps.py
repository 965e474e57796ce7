"""Each stage's code dependencies in ``dvc.yaml``, derived from the imports of its entry point.

A stage's entry point is its runner in ``detection/stages.py`` (``detection.stages.RUNNERS``). Its code
dependencies are the source files of every ``detection`` module that running it can import: the
runner's own imports (the lazy ones inside the function), ``detection/stages.py`` itself and what it
imports at module level, followed transitively through every import statement of those modules
(module level and function level, ``TYPE_CHECKING`` blocks included), plus the ``__init__.py`` of each
package on the way (importing ``detection.a.b`` runs ``detection/__init__.py`` and ``detection/a/__init__.py``).
``detection/cli.py`` is left out on purpose: dvc.yaml calls the verbs without options, so the CLI only
parses and hands ``params.yaml`` on; changing its help texts must not re-run training.

Files, not folders: a folder dependency re-runs a stage on any file of it (and on ``__pycache__``).

    python -m tasks.codedeps --check   # exit 1 and show the difference if dvc.yaml is out of step
    python -m tasks.codedeps --write   # rewrite the code-dependency entries of dvc.yaml in place

``--write`` keeps everything else in ``dvc.yaml`` as it is (comments, the data deps, params, outs):
it only replaces the ``detection/...`` entries of each stage's ``deps`` list.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import sys
import textwrap
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "detection"
ENTRY = "detection.stages"
EXCLUDED = {"detection.cli", "detection.__main__"}


def module_file(module: str, root: Path = ROOT) -> Path | None:
    """The source file of ``module`` under ``root`` (a package's ``__init__.py``), or None."""
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported(node: ast.AST, current: str, is_package: bool, root: Path) -> set[str]:
    """The ``detection`` modules that the import statements under ``node`` load."""
    found: set[str] = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Import):
            found.update(a.name for a in n.names)
        elif isinstance(n, ast.ImportFrom):
            if n.level:  # relative: from the current package
                parts = current.split(".")[: len(current.split(".")) - n.level + (1 if is_package else 0)]
                base = ".".join(parts + ([n.module] if n.module else []))
            else:
                base = n.module or ""
            found.add(base)
            # `from detection.data import table` imports the submodule detection.data.table
            found.update(f"{base}.{a.name}" for a in n.names if module_file(f"{base}.{a.name}", root))
    return {m for m in found if m.split(".")[0] == PACKAGE and module_file(m, root)}


def _with_parents(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def closure(start: set[str], root: Path = ROOT, opaque: set[str] = frozenset()) -> set[str]:  # type: ignore[assignment]
    """Every ``detection`` module that importing ``start`` can load (packages' ``__init__`` included);
    the modules in ``opaque`` are included but their imports are not followed."""
    seen: set[str] = set(opaque)
    todo = [p for m in start for p in _with_parents(m)]
    while todo:
        module = todo.pop()
        if module in seen or module in EXCLUDED:
            continue
        seen.add(module)
        path = module_file(module, root)
        if path is None:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for m in _imported(tree, module, path.name == "__init__.py", root):
            todo.extend(_with_parents(m))
    return seen


def _runner_functions(root: Path) -> dict[str, ast.FunctionDef]:
    """Stage name -> the runner function's AST node, from the ``RUNNERS`` mapping of detection/stages.py."""
    tree = ast.parse(module_file(ENTRY, root).read_text(encoding="utf-8"))  # type: ignore[union-attr]
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    for node in tree.body:
        target = node.target if isinstance(node, ast.AnnAssign) else node.targets[0] if isinstance(node, ast.Assign) else None
        if isinstance(target, ast.Name) and target.id == "RUNNERS" and isinstance(node.value, ast.Dict):
            return {ast.literal_eval(k): functions[v.id] for k, v in zip(node.value.keys, node.value.values)}  # type: ignore[arg-type,union-attr]
    raise RuntimeError(f"no RUNNERS mapping found in {module_file(ENTRY, root)}")


def stage_code_deps(root: Path = ROOT) -> dict[str, list[str]]:
    """Stage name -> its code dependencies (paths relative to ``root``, sorted)."""
    tree = ast.parse(module_file(ENTRY, root).read_text(encoding="utf-8"))  # type: ignore[union-attr]
    module_level = ast.Module(body=[n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))], type_ignores=[])
    # detection/stages.py itself, but only its module-level imports and the runner's: not the other runners'
    common = _imported(module_level, ENTRY, False, root) | _with_parents(ENTRY) - {ENTRY}
    deps: dict[str, list[str]] = {}
    for stage, func in _runner_functions(root).items():
        modules = closure(common | _imported(func, ENTRY, False, root), root, opaque={ENTRY})
        deps[stage] = sorted(module_file(m, root).relative_to(root).as_posix() for m in modules)  # type: ignore[union-attr]
    return deps


def is_code_dep(entry: str) -> bool:
    return entry.split("/")[0] == PACKAGE


def declared_code_deps(dvc_yaml: Path) -> dict[str, list[str]]:
    """Stage name -> the ``detection/...`` entries of its deps in ``dvc_yaml``."""
    stages = yaml.safe_load(dvc_yaml.read_text(encoding="utf-8"))["stages"]
    return {name: [d for d in (s.get("deps") or []) if is_code_dep(str(d))] for name, s in stages.items()}


def rewrite(text: str, deps: dict[str, list[str]]) -> str:
    """``dvc.yaml``'s text with each stage's ``detection/...`` deps replaced by ``deps[stage]``
    (placed after the stage's other deps; a stage without a ``deps:`` key gets one after ``cmd:``)."""
    lines = text.splitlines()
    out: list[str] = []
    stage: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("  ") and not line.startswith("   ") and line.rstrip().endswith(":") and not line.lstrip().startswith("#"):
            stage = line.strip()[:-1]
        if stage in deps and line.strip() == "deps:":
            indent = line[: len(line) - len(line.lstrip())] + "  "
            out.append(line)
            i += 1
            while i < len(lines) and lines[i].startswith(indent + "- "):
                entry = lines[i].strip()[2:].split(" #")[0].strip()
                if not is_code_dep(entry):
                    out.append(lines[i])
                i += 1
            out.extend(f"{indent}- {d}" for d in deps[stage])
            stage = None
            continue
        out.append(line)
        i += 1
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasks.codedeps", description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="exit 1 if dvc.yaml's code deps differ from the imports")
    mode.add_argument("--write", action="store_true", help="rewrite dvc.yaml's code deps from the imports")
    parser.add_argument("--dvc-yaml", type=Path, default=ROOT / "dvc.yaml")
    args = parser.parse_args(argv)
    root = args.dvc_yaml.resolve().parent
    text = args.dvc_yaml.read_text(encoding="utf-8")
    new = rewrite(text, stage_code_deps(root))
    if args.write:
        if new != text:
            args.dvc_yaml.write_text(new, encoding="utf-8")
        print(f"{args.dvc_yaml}: code deps {'rewritten' if new != text else 'already up to date'}")
        return 0
    if new == text:
        print(f"{args.dvc_yaml}: code deps match the imports")
        return 0
    diff = difflib.unified_diff(text.splitlines(), new.splitlines(), "dvc.yaml", "dvc.yaml (from imports)", lineterm="")
    print("\n".join(diff))
    print(textwrap.fill(f"{args.dvc_yaml}: code deps differ from the imports; run `python -m tasks.codedeps --write`"), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
