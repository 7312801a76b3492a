"""The tutorial notebook runs end to end (small settings), without Jupyter: its code cells are executed in order."""

from __future__ import annotations

import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import torch

from .conftest import PBMC3K, REGULONS, ROOT, SHARED

NOTEBOOK = ROOT / "tutorials" / "annotate_a_new_dataset.ipynb"
#: Cells with one of these tags are not run by the test.
SKIP_TAGS = {"skip-test", "skip-execution"}
#: The notebook's figures (small mode writes them under its work folder).
FIGURES = [
    "training_history.png",
    "query_confidence.png",
    "query_umap_confidence.png",
    "query_umap_bulk_labels.png",
    "attention_heatmap.png",
    "top_regulators.png",
    "tf_network_B.png",
]


def code_cells(path: Path) -> list[str]:
    """Source of the code cells to run: not tagged to skip, not shell (``!``) or magic (``%``) cells."""
    notebook = json.loads(path.read_text())
    assert notebook["nbformat"] == 4
    sources = []
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code" or SKIP_TAGS & set(cell.get("metadata", {}).get("tags", [])):
            continue
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if source.lstrip().startswith(("%", "!")):
            continue
        sources.append(source)
    return sources


def test_notebook_is_valid_and_explained():
    notebook = json.loads(NOTEBOOK.read_text())
    kinds = [cell["cell_type"] for cell in notebook["cells"]]
    assert kinds.count("markdown") >= 10 and kinds.count("code") >= 10
    text = "\n".join("".join(cell["source"]) for cell in notebook["cells"])
    for needle in (
        'SMALL = os.environ.get("SCT_TUTORIAL_SMALL", "0") == "1"',
        'regulons="collectri"',
        "prepare_query_anndata",
        "novelty_threshold",
        'get_attention(ref, groupby="cell_type")',
        "compare_tf_activity",
        "sctransformer-tools annotate",
        "--novelty-threshold 0.95",
    ):
        assert needle in text, needle


def test_notebook_runs_small(tmp_path, monkeypatch):
    if not PBMC3K.exists() or not REGULONS.exists():
        pytest.skip(f"real data not found under {SHARED} (expected ../shared/data beside the project)")
    monkeypatch.setenv("SCT_TUTORIAL_SMALL", "1")
    monkeypatch.setenv("SCT_TUTORIAL_THREADS", "1")  # a tiny model gains nothing from threads on shared cores
    for name in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS"):  # the notebook sets them; monkeypatch restores them
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv("SCTRANSFORMER_SHARED_DATA", str(SHARED.resolve()))
    monkeypatch.setenv("SCTRANSFORMER_TOOLS_DATA", str(REGULONS.resolve()))
    monkeypatch.chdir(tmp_path)  # the notebook writes its model, query file and (small mode) figures here
    source = "\n\n".join(code_cells(NOTEBOOK))
    namespace = {"__name__": "__main__"}
    threads = torch.get_num_threads()
    start = time.perf_counter()
    try:
        exec(compile(source, str(NOTEBOOK), "exec"), namespace)
    finally:
        torch.set_num_threads(threads)
        plt.close("all")
    seconds = time.perf_counter() - start
    print(f"tutorial (small) ran in {seconds:.0f} s")

    assert namespace["SMALL"] is True
    # step 1: a trained, calibrated reference model
    assert namespace["model"].calibration_["temperature"] > 0
    # step 2: the query is annotated, with Unknown calls and scores for both models
    for name in ("query", "query_q"):  # the full-panel model's query, the shared-genes model's
        annotated = namespace[name]
        assert annotated.obs["sctransformer_prediction"].notna().all()
        assert "Unknown" in annotated.obs["sctransformer_prediction"].cat.categories
        assert annotated.obs["sctransformer_confidence"].between(0, 1).all()
        assert annotated.obs["sctransformer_novelty"].between(0, 1).all()
    query = namespace["query"]  # the rest of the tutorial continues with the full-panel model
    assert query.obsm["X_sctransformer"].shape[0] == query.n_obs and "X_umap" in query.obsm
    assert 0.05 < query.uns["sctransformer_query"]["panel_match_ratio"] < 0.2
    results = namespace["results"]
    assert isinstance(results, pd.DataFrame) and results.shape[1] == 2
    for row in (
        "Unknown, all cells",
        "Unknown, CD34+ cells",
        "query ECE, raw softmax",
        "query ECE, temperature-scaled",
    ):
        assert results.loc[row].between(0, 1).all(), row
    # NaN only when no cell was called confidently (a two-epoch model may call every cell Unknown)
    accuracy = results.loc["accuracy among confident calls"]
    assert (accuracy.between(0, 1) | (accuracy.isna() & results.loc["Unknown, all cells"].eq(1))).all()
    assert len(namespace["sweep"](query)) == 12
    # step 3: attention vs ULM, one row per cell type
    top_tfs = namespace["top_tfs"]
    assert set(top_tfs.index) == set(namespace["ref"].obs["cell_type"].astype(str))
    assert top_tfs["top 3 TFs, attention"].str.count(",").eq(2).all()
    # step 4: the reloaded model gives the same calls
    assert (
        namespace["new"].obs["sctransformer_prediction"].astype(str).to_numpy()
        == query.obs["sctransformer_prediction"].astype(str).to_numpy()
    ).all()
    # figures of small mode land in the work folder, never in the repository
    figdir = tmp_path / "sctransformer_tutorial" / "figures"
    assert namespace["FIGDIR"].resolve() == figdir.resolve()
    for name in FIGURES:
        assert (figdir / name).stat().st_size > 0, name
