"""Data larger than memory: an h5ad opened backed trains and predicts without loading X."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest

import sctransformer_tools as sct


@pytest.fixture
def backed_pair(pbmc_small, tmp_path):
    path = tmp_path / "pbmc_small.h5ad"
    pbmc_small.write_h5ad(path)
    return pbmc_small, ad.read_h5ad(path, backed="r")


def test_backed_setup_train_and_predict_match_in_memory(backed_pair, tiny):
    memory, backed = backed_pair
    assert backed.isbacked
    for adata in (memory, backed):
        sct.SCTransformer.setup_anndata(adata, labels_key="cell_type", regulons="collectri")
    # the same setup: library sizes computed chunk-wise from disk equal the in-memory ones
    np.testing.assert_allclose(backed.obs["_sct_library_size"], memory.obs["_sct_library_size"])
    model = sct.SCTransformer(backed, **(tiny | {"n_top_genes": 200}))
    reference = sct.SCTransformer(memory, **(tiny | {"n_top_genes": 200}))
    assert model.panel_.index.equals(reference.panel_.index)  # HVGs read from disk agree
    model.train(max_epochs=2, enable_progress_bar=False)
    assert backed.isbacked  # training never loaded the matrix
    probs_backed = model.predict(backed, soft=True, inplace=False)
    probs_memory = model.predict(memory, soft=True, inplace=False)
    np.testing.assert_allclose(probs_backed.to_numpy(), probs_memory.to_numpy(), atol=1e-5)
    latent = model.get_latent_representation(backed)
    assert latent.shape == (backed.n_obs, 16) and np.isfinite(latent).all()
    model.predict(backed)  # results go to obs / obsm as for in-memory data
    assert backed.obs["sctransformer_prediction"].notna().all()
    assert backed.obsm["X_sctransformer"].shape == (backed.n_obs, 16)
