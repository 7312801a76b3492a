"""TF programs per group (tl/_tf_programs.py) from a tiny pbmc3k model's attention."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

import sctransformer_tools as sct


def test_tf_programs_ranks_and_specificity(fitted):
    _, adata = fitted
    groups = list(sct.tl.attention_tables(adata)["tf_scores"].columns)
    n_tfs = len(sct.tl.attention_tables(adata)["tf_scores"])
    top = sct.tl.tf_programs(adata, n_top=5)
    assert list(top["group"].cat.categories) == groups and len(top) == 5 * len(groups)
    for _, frame in top.groupby("group", observed=True):
        assert frame["rank"].tolist() == [1, 2, 3, 4, 5]
        assert frame["specificity"].is_monotonic_decreasing
    full = sct.tl.tf_programs(adata, n_top=None)
    assert len(full) == n_tfs * len(groups)
    for _, frame in full.groupby("group", observed=True):
        assert sorted(frame["rank"]) == list(range(1, n_tfs + 1))
    # score minus the mean over the other groups: sums to 0 over groups for every TF; z-scores centre on 0
    wide = full.pivot(index="tf", columns="group", values="specificity")
    np.testing.assert_allclose(wide.sum(1), 0, atol=1e-6)
    np.testing.assert_allclose(full.pivot(index="tf", columns="group", values="zscore").mean(1), 0, atol=1e-9)
    # the score column is the attention mass get_attention wrote
    tf_scores = sct.tl.attention_tables(adata)["tf_scores"]
    row = full.iloc[0]
    assert row["score"] == pytest.approx(tf_scores.loc[row["tf"], row["group"]])
    assert ((full["coverage"] >= 0) & (full["coverage"] <= 1)).all() and (full["n_targets"] >= 1).all()
    by_mass = sct.tl.tf_programs(adata, n_top=3, by="mass")
    for group, frame in by_mass.groupby("group", observed=True):
        assert frame["tf"].tolist() == tf_scores[group].sort_values(ascending=False, kind="stable").index[:3].tolist()


def test_tf_programs_errors(fitted, pbmc_small):
    _, adata = fitted
    with pytest.raises(KeyError, match=r"model.get_attention\(adata, groupby=...\)"):
        sct.tl.tf_programs(pbmc_small)
    with pytest.raises(ValueError, match="by must be one of"):
        sct.tl.tf_programs(adata, by="hubness")
    with pytest.raises(KeyError, match="not groups of"):
        sct.tl.tf_programs(adata, groups=["Neuron"])
