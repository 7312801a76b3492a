"""Issue 25.6: predictions are coloured as scanpy colours the truth, so two panels agree type by type."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex

import sctransformer_tools as sct
from sctransformer_tools._colors import UNKNOWN_COLOR, scanpy_default_colors

matplotlib.use("Agg")


def _types(adata, n: int) -> pd.Categorical:
    """``n`` cell types from the Louvain clusters (11): merged down to 8, or one split to reach 12."""
    louvain = adata.obs["louvain"].astype(int).to_numpy()
    if n < 11:
        louvain = np.minimum(louvain, n - 1)
    elif n > 11:
        louvain = np.where((louvain == 0) & (np.arange(len(louvain)) % 2 == 0), 11, louvain)
    return pd.Categorical([f"type {c:02d}" for c in louvain])


@pytest.mark.parametrize("n_types", [8, 12])
def test_truth_and_prediction_panels_colour_a_type_alike(pbmc68k, n_types):
    import matplotlib.pyplot as plt
    import scanpy as sc

    pbmc68k.obs["truth"] = _types(pbmc68k, n_types)
    sct.SCTransformer.setup_anndata(pbmc68k, labels_key="truth")
    model = sct.SCTransformer(pbmc68k, d_model=16, n_layers=1, n_heads=2, n_top_genes=0)
    model.train(max_epochs=1, enable_progress_bar=False)
    model.predict(pbmc68k, unknown_threshold=0.3)
    pbmc68k.obsm["X_umap"] = np.random.default_rng(0).normal(size=(pbmc68k.n_obs, 2))  # where cells sit: no matter
    sc.pl.umap(pbmc68k, color=["truth", "sctransformer_prediction"], show=False)
    plt.close("all")
    hexed = [to_hex(c) for c in pbmc68k.uns["truth_colors"]]
    truth = dict(zip(pbmc68k.obs["truth"].cat.categories, hexed, strict=True))
    predicted = pbmc68k.obs["sctransformer_prediction"].cat.categories
    drawn = dict(zip(predicted, (to_hex(c) for c in pbmc68k.uns["sctransformer_prediction_colors"]), strict=True))
    assert truth == scanpy_default_colors(truth)  # what scanpy chose on its own for the truth panel
    assert len(set(truth.values())) == n_types
    for cell_type, color in drawn.items():
        assert color == (UNKNOWN_COLOR if cell_type == "Unknown" else truth[cell_type]), cell_type


def test_the_references_own_colours_are_kept(pbmc68k):
    pbmc68k.obs["truth"] = _types(pbmc68k, 8)
    own = [f"#{i:02x}{i:02x}{i:02x}" for i in range(10, 90, 10)]
    pbmc68k.uns["truth_colors"] = own
    sct.SCTransformer.setup_anndata(pbmc68k, labels_key="truth")
    model = sct.SCTransformer(pbmc68k, d_model=16, n_layers=1, n_heads=2, n_top_genes=0)
    assert list(model.cell_type_colors.values()) == own
