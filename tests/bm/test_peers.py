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
