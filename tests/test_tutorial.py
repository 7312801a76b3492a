"""The tutorials: stored executed, public API only (fast); re-executed end to end with small settings (slow)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from .conftest import PBMC3K, REGULONS, ROOT, SHARED

TUTORIALS = ROOT / "tutorials"
#: Each tutorial, whether it reads pbmc3k from the shared data, and text its outputs must contain.
NOTEBOOKS = {
    "scanpy_workflow.ipynb": (
        True,
        ["held-out cells: accuracy", "reloaded model gives the same predictions: True", "This notebook ran in"],
    ),
    "annotate_a_new_dataset.ipynb": (
        True,
        ["CD34+ progenitors", "identical calls after reloading: 100%", "This notebook ran in"],
    ),
    "does_the_grn_help.ipynb": (False, ["logistic_regression", "shuffled", "This notebook ran in"]),
    "attention_as_tf_programs.ipynb": (True, ["top TFs by specificity", "overlap_pvalue", "This notebook ran in"]),
    "pretraining.ipynb": (True, ["Spearman correlation of the preference", "matched_genes", "This notebook ran in"]),
}
#: An import of a private module of the package (``sctransformer_tools.model._calibration`` and the like).
PRIVATE = re.compile(r"sctransformer_tools\.\w+\._")


def _read(path: Path) -> dict:
    notebook = json.loads(path.read_text())
    assert notebook["nbformat"] == 4
    return notebook


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _output_text(notebook: dict) -> str:
    """Every text the code cells printed or displayed."""
    parts = []
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            text = output.get("text") or output.get("data", {}).get("text/plain", "")
            parts.append("".join(text) if isinstance(text, list) else text)
    return "\n".join(parts)


def _n_images(notebook: dict) -> int:
    return sum("image/png" in o.get("data", {}) for c in notebook["cells"] for o in c.get("outputs", []))


def test_every_tutorial_is_listed():
    assert sorted(p.name for p in TUTORIALS.glob("*.ipynb")) == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_tutorial_is_stored_executed_and_public(name):
    notebook = _read(TUTORIALS / name)
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert code and all(cell.get("execution_count") for cell in code), "store the notebook executed"
    counts = [cell["execution_count"] for cell in code]
    assert counts == list(range(1, len(counts) + 1)), "execute the notebook top to bottom in one kernel"
    errors = [o for c in code for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors, errors
    assert _n_images(notebook) >= 1
    assert "This notebook ran in" in _output_text(notebook)
    # stored on the current version (issue 25.7): re-run tutorials/execute.py after a version bump
    import sctransformer_tools as sct

    printed = set(re.findall(r"sctransformer-tools (\d+\.\d+\.\d+\S*)", _output_text(notebook)))
    assert printed == {sct.__version__}, f"{name} was stored by version {printed}, not {sct.__version__}"
    for cell in notebook["cells"]:
        assert not PRIVATE.search(_source(cell)), f"private import in {name}: {_source(cell)[:200]}"
    assert any(cell["cell_type"] == "markdown" for cell in notebook["cells"])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_tutorial_runs_small(name, tmp_path, monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    needs_pbmc3k, expected = NOTEBOOKS[name]
    if needs_pbmc3k and not PBMC3K.exists():
        pytest.skip(f"real data not found under {SHARED} (expected ../shared/data beside the project)")
    # the kernel inherits this environment: small settings, the data, one thread on shared cores
    monkeypatch.setenv("SCT_TUTORIAL_SMALL", "1")
    if SHARED.exists():
        monkeypatch.setenv("SCTRANSFORMER_SHARED_DATA", str(SHARED.resolve()))
    # the real regulons, or the pbmc68k_reduced fixture that the root conftest.py points to without ../shared
    monkeypatch.setenv("SCTRANSFORMER_TOOLS_DATA", os.environ.get("SCTRANSFORMER_TOOLS_DATA", str(REGULONS.resolve())))
    for variable in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS"):
        monkeypatch.setenv(variable, "1")
    notebook = nbformat.read(TUTORIALS / name, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell

    executed = json.loads(nbformat.writes(notebook))
    text = _output_text(executed)
    for needle in expected:
        assert needle in text, needle
    assert _n_images(executed) >= 1
    assert not list(TUTORIALS.glob("*_model")), "the notebooks write into their working folder, never tutorials/"
