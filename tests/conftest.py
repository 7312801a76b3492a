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
