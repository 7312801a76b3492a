"""Imports run down the layers of docs/developers.md ("Layers"): no subpackage imports one above it, and no two
import each other, whether the import runs when the module is imported or inside a function."""

from __future__ import annotations

import graphlib
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("structure_report", ROOT / "benchmarks" / "structure_report.py")
structure = importlib.util.module_from_spec(spec)
spec.loader.exec_module(structure)

HELPERS = {"_constants", "_colors", "_deprecated", "_docs"}
#: What every layer above the helpers may import: the helpers and the package's version (from the root).
BASE = HELPERS | {"__version__"}
DATA = {"grn", "_data", "pp"}
TORCH = {"nn", "module"}
BELOW_ANALYSES = BASE | DATA | TORCH | {"model"}
#: The table of docs/developers.md: what each subpackage may import.
MAY_IMPORT = {
    **{helper: set() for helper in HELPERS},
    "grn": BASE,
    "_data": BASE | {"grn"},
    "pp": BASE | {"_data"},
    "nn": BASE,
    "module": BASE | {"nn"},
    "model": BASE | DATA | TORCH,
    "tl": BELOW_ANALYSES,
    "pl": BELOW_ANALYSES | {"tl"},
    "bm": BELOW_ANALYSES,
    "ds": BELOW_ANALYSES,
    "cli": BELOW_ANALYSES | {structure.ROOT_NAME},  # the command line reaches the API through the package
}


def test_every_subpackage_has_a_layer():
    found = {structure.subpackage(path) for path in structure.sources()} - {structure.ROOT_NAME}
    assert found - set(MAY_IMPORT) == set(), "place the new subpackage in a layer (docs/developers.md, this test)"


def test_no_import_runs_up_the_layers():
    upward = [
        f"{path}:{line} imports {target}"
        for path, text in structure.sources().items()
        if structure.subpackage(path) != structure.ROOT_NAME  # the root exports every subpackage (lazily)
        for line, target, _ in structure.imports(path, text)
        if target != structure.subpackage(path) and target not in MAY_IMPORT.get(structure.subpackage(path), set())
    ]
    assert upward == []


def test_no_cycle_between_subpackages():
    graph = structure.subpackage_imports(structure.sources())
    graph.pop(structure.ROOT_NAME)
    list(graphlib.TopologicalSorter(graph).static_order())  # raises CycleError naming the cycle


def test_the_check_sees_an_upward_import_and_a_cycle():
    files = {
        "grn/_a.py": "def f():\n    from sctransformer_tools.model import SCTransformer\n",
        "model/_b.py": "from .. import grn\n",
    }
    assert list(structure.imports("grn/_a.py", files["grn/_a.py"])) == [(2, "model", False)]
    assert list(structure.imports("model/_b.py", files["model/_b.py"])) == [(1, "grn", True)]
    graph = structure.subpackage_imports(files)
    assert "model" not in MAY_IMPORT["grn"] and graph == {"grn": {"model"}, "model": {"grn"}}
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError:
        return
    raise AssertionError("the cycle grn <-> model was not seen")
