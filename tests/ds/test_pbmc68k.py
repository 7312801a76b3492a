"""The bundled dataset (ds/_pbmc68k.py)."""

from __future__ import annotations

import numpy as np

import sctransformer_tools as sct


def test_pbmc68k_counts_are_whole_numbers_matching_library_sizes():
    adata = sct.ds.pbmc68k_reduced()
    values = adata.X.data
    assert np.array_equal(values, np.round(values)) and values.min() >= 1
    assert adata.uns["counts_reconstruction"]["within_0.05"] > 0.999
    # only 765 genes are kept: their counts are a part of each cell's library
    assert (np.asarray(adata.X.sum(1)).ravel() <= adata.obs["n_counts"].to_numpy() + 1e-3).all()
    assert set(sct.ds.PBMC68K_TO_PBMC3K) == set(adata.obs["bulk_labels"].cat.categories)
