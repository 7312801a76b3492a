"""Self-supervised pretraining through the model (model/_pretraining.py), on data that ships with scanpy.

The measurement of what pretraining is worth lives in benchmarks/; these tests check the mechanics: that
reconstruction is learned, that the classifier stays untrained until ``train``, that unmeasured genes never become
tokens, that the MAM policy does not collapse and that a pretrained model saves and loads.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import sctransformer_tools as sct
from sctransformer_tools.module import MaskedExpression

TINY = {"d_model": 16, "n_layers": 1, "n_heads": 2, "n_top_genes": 0}


def _history(model, key):
    return np.asarray(model.pretraining_history_[key], dtype=float).ravel()


def test_pretrain_learns_and_leaves_the_classifier_untrained(pbmc68k, tmp_path):
    sct.SCTransformer.setup_anndata(pbmc68k, labels_key="bulk_labels")
    model = sct.SCTransformer(pbmc68k, **TINY)
    model.pretrain(masking="mam", max_epochs=4, enable_progress_bar=False)
    mse = _history(model, "validation_mse")
    assert mse[-1] < 0.8 * mse[0]  # the reconstruction error falls
    assert _history(model, "train_masking_entropy")[-1] > 0.5  # the MAM policy has not collapsed
    assert not model.is_trained_ and model.module.has_classifier
    with pytest.raises(RuntimeError, match="not been trained"):
        model.predict(pbmc68k)
    assert model.pretraining_["n_cells"] == pbmc68k.n_obs and model.pretraining_["masking"] == "mam"
    # how often the policy masks each gene: Monte-Carlo inclusion rates of its own sampler. Every draw masks
    # exactly k of a cell's n tokens, so the token-weighted mean rate is sum(k) / sum(n) and the token-weighted
    # mean ratio to uniform is exactly 1
    genes = model.get_masking_preference(pbmc68k, n_draws=16)
    assert "sctransformer_masking" in pbmc68k.uns and len(genes) == len(model.panel_)
    seen = genes["n_cells"] > 0
    weights = genes["n_cells"][seen]
    assert genes.loc[seen, "inclusion_rate"].between(0, 1).all()
    np.testing.assert_allclose(np.average(genes["ratio_to_uniform"][seen], weights=weights), 1.0, rtol=1e-4)
    np.testing.assert_allclose(
        np.average(genes["inclusion_rate"][seen], weights=weights),
        np.average(genes["uniform_rate"][seen], weights=weights),
        rtol=1e-4,
    )
    assert (genes.loc[seen, "ratio_to_uniform"] <= 1 / genes.loc[seen, "uniform_rate"] + 1e-6).all()  # <= n / k
    assert genes.loc[~seen, "ratio_to_uniform"].isna().all()
    assert {"is_tf", "is_target", "is_highly_variable", "mean_expression", "detection"} <= set(genes.columns)
    assert genes["is_highly_variable"].sum() == min(2000, int(seen.sum()))
    # the most dispersed genes are flagged: the least dispersed of them is above every gene left out
    flagged, left_out = genes["is_highly_variable"], seen & ~genes["is_highly_variable"]
    if left_out.any():
        assert genes.loc[flagged, "dispersion"].min() >= genes.loc[left_out, "dispersion"].max()
    again = model.get_masking_preference(pbmc68k, n_draws=16, inplace=False)
    pd.testing.assert_frame_equal(again, genes)  # seeded draws
    summary = sct.tl.masking_preference_summary(pbmc68k, min_detection=0.0, n_top=20)
    classes = summary["classes"]
    for name in ("TF", "regulon target", "highly variable"):
        assert classes.loc[name, "n_genes"] + classes.loc[f"not {name}", "n_genes"] == classes.loc["all", "n_genes"]
    assert classes.loc["all", "n_genes"] == int(seen.sum()) and classes.loc["all", "n_in_top"] == 20
    assert classes["median_inclusion_rate"].dropna().between(0, 1).all()
    assert set(summary["correlation"].index) == {"mean_expression", "detection", "dispersion"}
    assert summary["top"]["ratio_to_uniform"].is_monotonic_decreasing
    with pytest.raises(KeyError, match="get_masking_preference"):
        sct.tl.masking_preference_summary(sct.ds.pbmc68k_reduced())
    former = genes.rename(columns={"ratio_to_uniform": "preference"})
    with pytest.raises(ValueError, match="not a masking rate"):
        sct.tl.masking_preference_summary(former)
    import matplotlib

    matplotlib.use("Agg")
    assert sct.pl.masking_preference(pbmc68k, show=False, save=tmp_path / "masking.png") is not None
    assert (tmp_path / "masking.png").exists()
    assert sct.pl.training_history(model, stage="pretrain", show=False) is not None
    model.train(max_epochs=1, enable_progress_bar=False)
    assert model.is_trained_ and "train_f1_macro" in model.history
    # a pretrained model saves and loads with its masking policy
    model.save(tmp_path / "model")
    loaded = sct.SCTransformer.load(tmp_path / "model", pbmc68k)
    assert loaded.pretraining_["masking"] == "mam" and "masked_expression" in loaded.module.objectives
    state, reloaded = model.module.state_dict(), loaded.module.state_dict()
    for key in state:
        torch.testing.assert_close(reloaded[key], state[key])


def test_pretraining_corpus_aligns_extra_data(pbmc68k):
    """Extra cells are aligned by gene name; genes they do not measure are zeros, so never tokens."""
    sct.SCTransformer.setup_anndata(pbmc68k, labels_key="bulk_labels")
    model = sct.SCTransformer(pbmc68k, **TINY)
    panel = model.panel_.index
    lacking = list(panel[:10])
    extra = pbmc68k[:200, ~pbmc68k.var_names.isin(lacking)].copy()
    extra = extra[:, ::-1].copy()  # other gene order
    del extra.obs["bulk_labels"]  # no labels
    with pytest.warns(UserWarning, match="lacks 10"):
        matrix, obs, sources = model._pretraining_corpus([extra], include_reference=True, layer="auto")
    assert matrix.shape == (pbmc68k.n_obs + 200, pbmc68k.n_vars)
    columns = model.get_var_names()
    absent = np.isin(columns, lacking)
    assert matrix[pbmc68k.n_obs :][:, absent].nnz == 0
    np.testing.assert_array_equal(
        matrix[pbmc68k.n_obs :][:, ~absent].toarray(),
        pbmc68k[:200, columns[~absent]].X.toarray(),
    )
    assert [s["n_cells"] for s in sources] == [pbmc68k.n_obs, 200]
    assert obs.index.is_unique


def test_pretrain_errors(pbmc68k):
    sct.SCTransformer.setup_anndata(pbmc68k, labels_key="bulk_labels")
    model = sct.SCTransformer(pbmc68k, **TINY)
    with pytest.raises(ValueError, match="masking must be one of"):
        model.pretrain(masking="random")
    with pytest.raises(ValueError, match="Nothing to pretrain on"):
        model.pretrain(include_reference=False)
    with pytest.raises(TypeError, match="not an AnnData"):
        model.pretrain([np.zeros((3, 3))], max_epochs=1)
    with pytest.raises(ValueError, match="mask_ratio"):
        MaskedExpression(8, mask_ratio=1.5)


def test_from_pretrained_matches_genes_by_symbol(pbmc68k, tmp_path):
    sct.SCTransformer.setup_anndata(pbmc68k, labels_key="bulk_labels")
    backbone = sct.SCTransformer(pbmc68k, **TINY)
    backbone.pretrain(masking="uniform", max_epochs=1, enable_progress_bar=False)
    backbone.save(tmp_path / "backbone")
    # another dataset: a third of the genes gone, the others lower-case (symbols matched ignoring case)
    other = pbmc68k[:, pbmc68k.n_vars // 3 :].copy()
    other.var_names = other.var_names.str.lower()
    sct.SCTransformer.setup_anndata(other, labels_key="louvain")
    with pytest.raises(ValueError, match="d_model=32 differs"):
        sct.SCTransformer.from_pretrained(tmp_path / "backbone", other, d_model=32, n_top_genes=0)
    model = sct.SCTransformer.from_pretrained(tmp_path / "backbone", other, n_top_genes=0)
    report = model.pretrained_from_
    old = backbone.panel_["symbol"].str.upper()
    new = model.panel_["symbol"].str.upper()
    assert report["matched_genes"] == int(new.isin(old).sum()) > 0
    assert report["new_genes"] == int((~new.isin(old)).sum())
    b, m = backbone.module.state_dict(), model.module.state_dict()
    torch.testing.assert_close(m["blocks.0.attn.qkv.weight"], b["blocks.0.attn.qkv.weight"])
    gene = new[new.isin(old)].iloc[0]
    torch.testing.assert_close(
        m["gene_embedding.weight"][np.flatnonzero(new.to_numpy() == gene)[0]],
        b["gene_embedding.weight"][np.flatnonzero(old.to_numpy() == gene)[0]],
    )
    assert m["objectives.classification.linear.weight"].shape[0] == other.obs["louvain"].nunique()
    assert model.pretraining_["masking"] == "uniform" and not model.is_trained_
    # uniform masking, read by the same sampler: every token at its cell's k / n, within Monte-Carlo error
    genes = model.get_masking_preference(other, n_draws=64, inplace=False).dropna(subset=["inclusion_rate"])
    assert genes["inclusion_rate"].between(0, 1).all()
    common = genes[genes["n_cells"] >= 50]
    sd = np.sqrt(common["uniform_rate"] * (1 - common["uniform_rate"]) / (64 * common["n_cells"]))
    assert (np.abs(common["inclusion_rate"] - common["uniform_rate"]) < 5 * sd).all()
    np.testing.assert_allclose(common["ratio_to_uniform"].mean(), 1.0, atol=0.01)
    model.train(max_epochs=1, enable_progress_bar=False)
    assert model.is_trained_


def test_default_target_is_log_expression_and_counts_are_asked_for(pbmc68k):
    """Counts in or log-normalised data in, log expression by default; the count likelihood only on counts."""
    import scanpy as sc

    sct.SCTransformer.setup_anndata(pbmc68k, labels_key="bulk_labels")
    model = sct.SCTransformer(pbmc68k, **TINY)
    model.pretrain(max_epochs=1, enable_progress_bar=False)
    assert model.module.objectives["masked_expression"].target == "log_expression"
    assert model.pretraining_["objective_kwargs"] == {"target": "log_expression"}
    model.pretrain(max_epochs=1, enable_progress_bar=False, objective_kwargs={"target": "counts"})
    assert model.module.objectives["masked_expression"].target == "counts"

    logged = pbmc68k.copy()
    sc.pp.normalize_total(logged, target_sum=1e4)
    sc.pp.log1p(logged)
    sct.SCTransformer.setup_anndata(logged, labels_key="bulk_labels", log_normalized=True)
    model = sct.SCTransformer(logged, **TINY)
    model.pretrain(max_epochs=1, enable_progress_bar=False)
    assert model.module.objectives["masked_expression"].target == "log_expression"
    with pytest.raises(ValueError, match="needs raw counts"):
        model.pretrain(max_epochs=1, enable_progress_bar=False, objective_kwargs={"target": "counts"})


@pytest.mark.parametrize("target", ["log_expression", "bins"])
def test_every_reconstruction_target_learns(pbmc68k, target):
    """Log-normalised expression and the bins are learned: their loss falls, and the implied expression is finite."""
    sct.SCTransformer.setup_anndata(pbmc68k, labels_key="bulk_labels")
    model = sct.SCTransformer(pbmc68k, **TINY)
    model.pretrain(max_epochs=4, enable_progress_bar=False, objective_kwargs={"target": target})
    loss = _history(model, "train_loss")
    assert loss[-1] < 0.95 * loss[0], loss
    assert np.isfinite(_history(model, "validation_mse")).all()
    assert model.module.objectives["masked_expression"].target == target
    assert model.pretraining_["objective_kwargs"] == {"target": target}


def test_pretrain_reads_backed_data(pbmc68k, tmp_path):
    """A backed reference and backed extra cells pretrain as their in-memory copies do, and stay backed."""
    import anndata as ad

    path = tmp_path / "pbmc68k.h5ad"
    pbmc68k.write_h5ad(path)
    histories = {}
    for name in ("memory", "backed"):
        adata = pbmc68k.copy() if name == "memory" else ad.read_h5ad(path, backed="r")
        extra = pbmc68k[:100].copy() if name == "memory" else ad.read_h5ad(path, backed="r")[:100]
        sct.SCTransformer.setup_anndata(adata, labels_key="bulk_labels")
        model = sct.SCTransformer(adata, **TINY)
        model.pretrain([extra], max_epochs=2, seed=0, enable_progress_bar=False)
        histories[name] = _history(model, "validation_mse")
        assert model.pretraining_["n_cells"] == pbmc68k.n_obs + 100
    assert adata.isbacked
    np.testing.assert_allclose(histories["backed"], histories["memory"], rtol=1e-4)
