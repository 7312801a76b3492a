"""sct.bm.peers: the logistic regression and CellTypist on pbmc68k_reduced."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from sctransformer_tools import bm

LABELS = "bulk_labels"


def test_logistic_regression_reads_missing_genes_as_their_mean(pbmc68k_full):
    train, test = bm.split(pbmc68k_full, LABELS, test_size=0.3, seed=0)
    fitted = bm.peers.logistic_regression(train, LABELS, n_top_genes=100, library_size_key="n_counts")
    assert fitted.info == {"n_features": 100} and len(fitted.genes) == 100
    full = fitted.predict(test)
    # dropping a feature gene from the query is the same as measuring it at its training mean (standardised 0)
    gene = fitted.genes[0]
    dropped = fitted.predict(test[:, test.var_names != gene].copy())
    x = fitted.scaler.transform(bm.peers._log_normalised(test, fitted.genes, None, "n_counts").toarray())
    x[:, 0] = 0.0
    assert (dropped == fitted.classifier.predict(x)).all()
    assert np.mean(dropped == full) > 0.9


def test_celltypist_peer(pbmc68k_full):
    pytest.importorskip(
        "celltypist", reason="CellTypist is an optional peer (pip install 'sctransformer-tools[bench]')"
    )
    from sklearn.linear_model import LogisticRegression

    train, test = bm.split(pbmc68k_full, LABELS, test_size=0.3, seed=0)
    if "multi_class" not in inspect.signature(LogisticRegression).parameters:
        # CellTypist 1.7 cannot train with scikit-learn >= 1.8: a clear error, no runtime patching
        with pytest.raises(RuntimeError, match=r"multi_class.*scikit-learn 1\.8 removed"):
            bm.peers.celltypist(train, LABELS, max_iter=50)
        return
    fitted = bm.peers.celltypist(train, LABELS, max_iter=200)
    pred = fitted.predict(test)
    assert fitted.info["n_features"] == train.n_vars
    assert np.mean(pred == test.obs[LABELS].astype(str).to_numpy()) > 0.6


def test_scanvi_surgery_moves_the_query_and_leaves_the_reference(pbmc68k_full):
    """scArches surgery on a surgery-ready reference (the batch enters the encoder) changes the query's latent
    coordinates; with scVI's default encoder it would change nothing, and the peer would equal plain scANVI."""
    import dataclasses

    from sctransformer_tools.bm import peers

    train, query = pbmc68k_full[:500].copy(), pbmc68k_full[500:].copy()
    fitted = peers.scanvi_surgery(
        train, "bulk_labels", n_top_genes=300, scvi_epochs=3, scanvi_epochs=1, surgery_epochs=5
    )
    assert fitted.model.module.encode_covariates and fitted.info["scvi_kwargs"] == peers.SCARCHES_SCVI
    before = {k: v.detach().clone() for k, v in fitted.model.module.state_dict().items()}
    reference_only = dataclasses.replace(fitted, surgery_epochs=None)
    mapped, unmapped = fitted.embed(query), reference_only.embed(query)
    assert mapped.shape == unmapped.shape == (query.n_obs, 10)
    assert np.abs(mapped - unmapped).max() > 1e-3  # the query's own batch parameters moved it
    after = fitted.model.module.state_dict()
    assert all(np.array_equal(before[k].numpy(), after[k].numpy()) for k in before)  # the reference is untouched


def test_celltypist_majority_voting_graph_is_celltypists_and_works_on_large_queries(pbmc68k_full):
    """The over-clustering graph is the one CellTypist builds (exact neighbours), and above 4,096 cells it exists.

    CellTypist leaves the neighbours to scanpy, whose approximate path (above 4,096 cells) fails on scipy >= 1.15.
    """
    celltypist = pytest.importorskip("celltypist", reason="CellTypist is an optional peer")
    import anndata as ad
    import scipy.sparse as sp

    query = ad.AnnData(bm.peers._log_normalised(pbmc68k_full, None, None, "n_counts"))
    query.var_names = pbmc68k_full.var_names
    ours = query.copy()
    bm.peers._celltypist_neighbour_graph(ours)
    _, connectivities, distances, _ = celltypist.classifier.Classifier._construct_neighbor_graph(query.copy())
    np.testing.assert_allclose(ours.obsp["connectivities"].toarray(), connectivities.toarray(), atol=1e-5)
    np.testing.assert_allclose(ours.obsp["distances"].toarray(), distances.toarray(), atol=1e-4)

    rng = np.random.default_rng(0)
    tiled = ad.concat([query] * 6)  # 4,200 cells: scanpy's approximate-neighbour path
    tiled.X = sp.csr_matrix(tiled.X.toarray() + rng.normal(0, 0.01, tiled.shape).clip(0))
    tiled.obs_names_make_unique()
    bm.peers._celltypist_neighbour_graph(tiled)
    graph = tiled.obsp["connectivities"]
    assert graph.shape == (4200, 4200) and graph.nnz > 0
