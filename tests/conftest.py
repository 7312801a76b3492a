"""Shared fixtures: real data from ../shared/data (skipped with a reason when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import anndata as ad
import numpy as np
import pytest

# the data paths and SCTRANSFORMER_TOOLS_DATA are set by the project's root conftest.py (for doctests too)
ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SCTRANSFORMER_SHARED_DATA", ROOT.parent / "shared" / "data"))
SCRNA = SHARED / "scrna"
PBMC3K = SCRNA / "pbmc3k_seurat_labels.h5ad"
REGULONS = SHARED / "regulons"
COLLECTRI = REGULONS / "collectri_human.csv.gz"


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not found at {path} (expected ../shared/data beside the project)")
    return path


@pytest.fixture(scope="session")
def collectri():
    import pandas as pd

    return pd.read_csv(_require(COLLECTRI))


@pytest.fixture(scope="session")
def pbmc3k_path() -> Path:
    return _require(PBMC3K)


@pytest.fixture(scope="session")
def pbmc3k_full() -> ad.AnnData:
    return ad.read_h5ad(_require(PBMC3K))


@pytest.fixture
def pbmc3k(pbmc3k_full) -> ad.AnnData:
    """A fresh copy for tests that modify it."""
    return pbmc3k_full.copy()


@pytest.fixture
def pbmc_small(pbmc3k_full) -> ad.AnnData:
    """300 cells of pbmc3k, every cell type represented, for fast input checks."""
    rng = np.random.default_rng(0)
    idx = np.concatenate(
        [
            rng.permutation(np.flatnonzero(pbmc3k_full.obs["cell_type"] == ct))[:40]
            for ct in pbmc3k_full.obs["cell_type"].cat.categories
        ]
    )
    return pbmc3k_full[np.sort(idx)].copy()


@pytest.fixture(scope="session")
def pbmc3k_split(pbmc3k_full):
    """The stratified 80/20 split of the issue (random_state=0 on obs['cell_type'])."""
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(
        np.arange(pbmc3k_full.n_obs), test_size=0.2, stratify=pbmc3k_full.obs["cell_type"], random_state=0
    )
    return train, test


@pytest.fixture
def tiny() -> dict:
    """Keyword arguments of a small, fast SCTransformer for input checks."""
    return {"d_model": 16, "n_layers": 1, "n_heads": 2, "n_top_genes": 0}


@pytest.fixture(scope="session")
def pbmc68k_full() -> ad.AnnData:
    """scanpy's bundled pbmc68k_reduced with its counts rebuilt (ships with scanpy: runs anywhere)."""
    import sctransformer_tools as sct

    return sct.ds.pbmc68k_reduced()


@pytest.fixture
def pbmc68k(pbmc68k_full) -> ad.AnnData:
    """A fresh copy for tests that modify it."""
    return pbmc68k_full.copy()


@pytest.fixture(scope="session")
def reference_and_query(pbmc68k_full):
    """The README's situation: the reference keeps its counts in a layer, the query (other cells) in X."""
    from sctransformer_tools._data import stratified_split

    train, test = stratified_split(pbmc68k_full.obs["bulk_labels"].astype(str).to_numpy(), 0.8, seed=0)
    reference = pbmc68k_full[train].copy()
    reference.layers["counts"] = reference.X.copy()
    reference.X = reference.X.multiply(1.0 / reference.obs["n_counts"].to_numpy()[:, None] * 1e4).tocsr()  # normalised
    query = pbmc68k_full[test].copy()
    truth = query.obs.pop("bulk_labels").astype(str)
    return reference, query, truth


@pytest.fixture(scope="session")
def reference_model(reference_and_query):
    """A small model trained 8 epochs on the reference of :func:`reference_and_query` (counts in a layer)."""
    import sctransformer_tools as sct

    reference, _, _ = reference_and_query
    reference = reference.copy()
    sct.SCTransformer.setup_anndata(reference, layer="counts", labels_key="bulk_labels", regulons="collectri")
    model = sct.SCTransformer(reference, n_layers=1, d_model=32, n_heads=2, seed=0)
    model.train(max_epochs=8, lr=5e-3, enable_progress_bar=False)
    return model


@pytest.fixture(scope="session")
def fitted(pbmc3k_full):
    """A 1-layer, d_model=16 model trained 2 epochs on ~600 pbmc3k cells (CollecTRI), with attention and predictions.

    Returns ``(model, adata)``; ``adata`` holds the attention, the predictions and a stand-in ``X_umap``.
    """
    import torch

    import sctransformer_tools as sct

    rng = np.random.default_rng(0)
    labels = pbmc3k_full.obs["cell_type"]
    idx = np.concatenate([rng.permutation(np.flatnonzero(labels == ct))[:80] for ct in labels.cat.categories])
    adata = pbmc3k_full[np.sort(idx)].copy()
    sct.SCTransformer.setup_anndata(adata, labels_key="cell_type", regulons="collectri")
    # a d_model=16 model gains nothing from intra-op threads, and they stall badly when the cores are shared
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = sct.SCTransformer(adata, d_model=16, n_layers=1, n_heads=2, n_top_genes=0)
        model.train(max_epochs=2, enable_progress_bar=False)
        model.get_attention(adata, groupby="cell_type", batch_size=256)
        model.predict(adata, unknown_threshold=0.15)
        latent = model.get_latent_representation(adata)
    finally:
        torch.set_num_threads(threads)
    adata.obsm["X_umap"] = latent[:, :2]  # stands in for a UMAP: the wrapper is tested, not umap-learn
    return model, adata


@pytest.fixture
def package_log(caplog):
    """``caplog`` with the records of the package's logger, at INFO (that logger does not propagate to the root
    logger caplog listens to)."""
    import logging

    logger = logging.getLogger("sctransformer_tools")
    logger.addHandler(caplog.handler)
    with caplog.at_level(logging.INFO, logger="sctransformer_tools"):
        yield caplog
    logger.removeHandler(caplog.handler)
