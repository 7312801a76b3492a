"""The package's structure at a revision and now: which subpackages each one imports, and the size of ``model/``.

    python benchmarks/structure_report.py [--before bff19f3]

Prints two tables for an issue's closing note, generated rather than typed: the subpackages each subpackage imports
(any import statement, at module level or inside a function, ``TYPE_CHECKING`` ones included) at ``--before``
(default: bff19f3, the 0.2.0 release) and in the working tree; and the line count of each file of
``src/sctransformer_tools/model/`` then and now. ``tests/test_layers.py`` checks the same imports against the
layers of docs/developers.md.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "sctransformer_tools"
SRC = f"src/{PACKAGE}"
#: The name the package root (``__init__.py``) goes by in the tables; its ``__version__`` goes by ``__version__``.
ROOT_NAME = "(root)"


def sources(revision: str | None = None) -> dict[str, str]:
    """The text of each module, by path below ``src/sctransformer_tools`` (``None``: the working tree)."""
    if revision is None:
        return {p.relative_to(ROOT / SRC).as_posix(): p.read_text() for p in sorted((ROOT / SRC).rglob("*.py"))}

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout

    paths = [p for p in git("ls-tree", "-r", "--name-only", revision, SRC).split() if p.endswith(".py")]
    return {p[len(SRC) + 1 :]: git("show", f"{revision}:{p}") for p in paths}


def subpackage(path: str) -> str:
    """``"model/_save.py"`` -> ``"model"``, ``"cli.py"`` -> ``"cli"``, ``"__init__.py"`` -> the root."""
    first = path.split("/")[0]
    return ROOT_NAME if first == "__init__.py" else first.removesuffix(".py")


def imports(path: str, text: str) -> Iterator[tuple[int, str, bool]]:
    """``(line, subpackage, at_import_time)`` of each import of the package in a module (``path`` as in
    :func:`sources`). ``at_import_time``: at module level and not under ``if TYPE_CHECKING``.
    """
    package = [PACKAGE, *path.split("/")[:-1]]
    tree = ast.parse(text)
    eager, pending = set(), list(tree.body)
    while pending:  # statements run on import: not in a function, not under `if TYPE_CHECKING:`
        node = pending.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        eager.add(id(node))
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            pending.extend(node.orelse)
        else:
            pending.extend(n for n in ast.iter_child_nodes(node) if isinstance(n, ast.stmt | ast.excepthandler))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name.split(".") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = [*base, *(node.module.split(".") if node.module else [])]
            # `from sctransformer_tools import grn` imports the subpackage grn
            targets = [[*module, alias.name] if len(module) == 1 else module for alias in node.names]
        else:
            continue
        for target in targets:
            if target[0] == PACKAGE:
                yield node.lineno, target[1] if len(target) > 1 else ROOT_NAME, id(node) in eager


def subpackage_imports(files: dict[str, str]) -> dict[str, set[str]]:
    """The subpackages (and the root) each subpackage imports, itself left out."""
    graph: dict[str, set[str]] = {}
    for path, text in files.items():
        source = subpackage(path)
        graph.setdefault(source, set()).update(t for _, t, _ in imports(path, text) if t != source)
    return graph


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |"  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def report(before: str) -> str:
    """Both tables, as Markdown."""
    old, new = sources(before), sources()
    graphs = subpackage_imports(old), subpackage_imports(new)
    names = sorted(set(graphs[0]) | set(graphs[1]))
    imports_table = _table(
        ["subpackage", f"imports at {before}", "imports now"],
        [[n, *(", ".join(sorted(g[n])) if n in g else "(absent)" for g in graphs)] for n in names],
    )
    model = sorted(p for p in set(old) | set(new) if p.startswith("model/"))
    count = lambda files, p: len(files[p].splitlines()) if p in files else "-"  # noqa: E731
    sizes = [[p, count(old, p), count(new, p)] for p in model]
    sizes.append(
        [
            "total",
            sum(len(old[p].splitlines()) for p in model if p in old),
            sum(len(new[p].splitlines()) for p in model if p in new),
        ]
    )
    sizes_table = _table(["file", f"lines at {before}", "lines now"], sizes)
    return f"Imports between subpackages\n\n{imports_table}\n\nmodel/ by file\n\n{sizes_table}\n"


def main(argv: list[str] | None = None) -> None:
    """Print the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="bff19f3", help="the revision to compare with (default: 0.2.0)")
    print(report(parser.parse_args(argv).before))


if __name__ == "__main__":
    main()
