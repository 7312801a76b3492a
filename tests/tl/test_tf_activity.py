"""Attention against ULM TF activity (tl/_tf_activity.py) on a tiny pbmc3k model."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import anndata as ad
import numpy as np
import pytest

import sctransformer_tools as sct

N_PERM = 50


@pytest.fixture(scope="module")
def activity(fitted):
    _, adata = fitted
    table = sct.tl.compare_tf_activity(adata, "cell_type", n_top=10, n_permutations=N_PERM)
    return table, adata.uns["sctransformer_tf_activity"]


def test_compare_tf_activity_table(fitted, activity, tmp_path):
    _, adata = fitted
    table, stored = activity
    groups = list(sct.tl.attention_tables(adata)["tf_scores"].columns)
    assert table["group"].tolist() == groups
    assert np.isfinite(table["spearman"]).all() and table["spearman"].between(-1, 1).all()
    assert table["overlap"].between(0, 10).all() and (table["n_tfs"] > 50).all()
    assert table["overlap_pvalue"].between(1 / (N_PERM + 1), 1).all()
    # the null of the overlap of two top-10 lists among n TFs has the hypergeometric mean 100 / n
    np.testing.assert_allclose(table["overlap_null_mean"], table["overlap_expected"], atol=0.15)
    assert stored["table"] is table and stored["params"]["groupby"] == "cell_type"
    assert stored["params"]["n_permutations"] == N_PERM
    # what it stores can be written to h5ad
    ad.AnnData(uns={"sctransformer_tf_activity": stored}).write_h5ad(tmp_path / "stored.h5ad")
    # ULM on the real counts finds the textbook regulators: PAX5 in B cells, CEBPB in monocytes
    act = stored["activity"].pivot(index="tf", columns="group", values="activity")
    assert act.loc["PAX5"].idxmax() == "B"
    assert act.loc["CEBPB"].idxmax() in ("CD14+ Mono", "FCGR3A+ Mono")
    # the user's counts are untouched
    assert float(adata.X.max()) > 100 and np.allclose(adata.X.data, np.round(adata.X.data))


def test_compare_tf_activity_planted_agreement(fitted, activity):
    """Attention scores replaced by the ULM activities themselves: perfect agreement, significant overlap."""
    _, adata = fitted
    _, stored = activity
    planted = dict(adata.uns["sctransformer_attention"])
    act = stored["activity"].pivot(index="tf", columns="group", values="activity")[list(planted["groups"])]
    planted["tfs"] = act.index.to_numpy(dtype=object)
    planted["tf_scores"] = (act - act.to_numpy().min() + 1.0).to_numpy()  # a positive shift: same specificity
    adata.uns["planted_attention"] = planted
    try:
        table = sct.tl.compare_tf_activity(
            adata, "cell_type", key="planted_attention", n_top=10, n_permutations=N_PERM, key_added="planted_cmp"
        )
    finally:
        del adata.uns["planted_attention"]
    np.testing.assert_allclose(table["spearman"], 1.0)
    assert (table["overlap"] == 10).all()
    np.testing.assert_allclose(table["overlap_pvalue"], 1 / (N_PERM + 1))
    assert (table["top_attention"] == table["top_activity"]).all()


def test_compare_tf_activity_errors(fitted):
    _, adata = fitted
    with pytest.raises(KeyError, match="groupby column 'tissue'"):
        sct.tl.compare_tf_activity(adata, "tissue", n_permutations=0)
    with pytest.raises(KeyError, match="get_attention"):
        sct.tl.compare_tf_activity(adata, "cell_type", key="nothing_here")
