"""Self-supervised pretraining (masked expression, uniform and MAM masking), on data that ships with scanpy.

The measurement of what pretraining is worth lives in benchmarks/; these tests check the mechanics: what is
masked, that reconstruction is learned, that the classifier stays untrained until ``train``, that unmeasured
genes never become tokens, that the MAM policy does not collapse and that a pretrained model saves and loads.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sctransformer_tools as sct
from sctransformer_tools.module import CellBatch, MaskedExpression

TINY = {"d_model": 16, "n_layers": 1, "n_heads": 2, "n_top_genes": 0}


def _history(model, key):
    return np.asarray(model.pretraining_history_[key], dtype=float).ravel()


@pytest.mark.parametrize("masking", ["uniform", "mam"])
def test_choose_masks_a_share_of_every_cell(masking):
    torch.manual_seed(0)
    objective = MaskedExpression(8, masking=masking, mask_ratio=0.2, max_logit=2.0)
    per_cell = torch.tensor([1, 5, 10, 40])
    cell = torch.repeat_interleave(torch.arange(4), per_cell)
    chosen, log_prob, entropy = objective.choose(torch.randn(len(cell), 8), cell, n_cells=4)
    counts = torch.bincount(cell[chosen], minlength=4).tolist()
    assert counts == [1, 1, 2, 8]  # round(0.2 x tokens), at least one
    assert torch.all(log_prob <= 0) and torch.all(entropy <= 1 + 1e-5)
    if masking == "uniform":
        np.testing.assert_allclose(entropy[1:].numpy(), 1.0, atol=1e-5)  # a uniform choice has maximal entropy
    logits = objective.logits(torch.randn(1000, 8) * 100).detach()
    assert float(logits.max() - logits.min()) <= 2 * 2.0 + 1e-5  # bounded: no token dominates its cell


def test_uniform_masking_is_uniform():
    torch.manual_seed(0)
    objective = MaskedExpression(4, masking="uniform", mask_ratio=0.25)
    cell = torch.zeros(8, dtype=torch.long)
    hits = torch.zeros(8)
    for _ in range(2000):
        hits += objective.choose(torch.randn(8, 4), cell, 1)[0].float()
    np.testing.assert_allclose(hits.numpy() / 2000, 0.25, atol=0.04)


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
    # which genes the policy prefers: a per-gene average of each cell's ratio to a uniform choice, so the
    # token-weighted mean over genes is exactly 1
    genes = model.get_masking_preference(pbmc68k)
    assert "sctransformer_masking" in pbmc68k.uns and len(genes) == len(model.panel_)
    seen = genes["n_cells"] > 0
    np.testing.assert_allclose(np.average(genes["preference"][seen], weights=genes["n_cells"][seen]), 1.0, rtol=1e-4)
    assert genes.loc[~seen, "preference"].isna().all()
    assert {"is_tf", "is_target", "is_highly_variable", "mean_expression", "detection"} <= set(genes.columns)
    assert genes["is_highly_variable"].sum() == min(2000, int(seen.sum()))
    # the most dispersed genes are flagged: the least dispersed of them is above every gene left out
    flagged, left_out = genes["is_highly_variable"], seen & ~genes["is_highly_variable"]
    if left_out.any():
        assert genes.loc[flagged, "dispersion"].min() >= genes.loc[left_out, "dispersion"].max()
    summary = sct.tl.masking_preference_summary(pbmc68k, min_detection=0.0, n_top=20)
    classes = summary["classes"]
    for name in ("TF", "regulon target", "highly variable"):
        assert classes.loc[name, "n_genes"] + classes.loc[f"not {name}", "n_genes"] == classes.loc["all", "n_genes"]
    assert classes.loc["all", "n_genes"] == int(seen.sum()) and classes.loc["all", "n_in_top"] == 20
    assert set(summary["correlation"].index) == {"mean_expression", "detection", "dispersion"}
    assert summary["top"]["preference"].is_monotonic_decreasing
    with pytest.raises(KeyError, match="get_masking_preference"):
        sct.tl.masking_preference_summary(sct.ds.pbmc68k_reduced())
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
    with pytest.raises(ValueError, match="has no preference"):
        model.get_masking_preference(other)
    model.train(max_epochs=1, enable_progress_bar=False)
    assert model.is_trained_


def test_bins_are_the_cells_own_quantiles():
    """Bins of ``target="bins"``: per cell, edges at its quantiles; equal values share a bin; centres are bin means."""
    from sctransformer_tools.module._tokenizer import GeneTokens

    objective = MaskedExpression(4, target="bins", n_bins=4)
    values = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0, 1.0, 1.0, 2.0])
    cell = torch.tensor([0] * 8 + [1] * 4)
    tokens = GeneTokens(cell, torch.arange(12), values, 2, None)
    bins, centres = objective._bins(tokens)
    assert bins[:8].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]  # eight distinct values: two per bin
    assert bins[8:].tolist() == [0, 0, 0, 3]  # ties share a bin, whatever their order
    torch.testing.assert_close(centres[0], torch.tensor([0.15, 0.35, 0.55, 0.75]))
    torch.testing.assert_close(centres[1, [0, 3]], torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="target must be one of"):
        MaskedExpression(4, target="mse")


def test_default_target_is_the_count_likelihood_when_counts_are_read(pbmc68k):
    """Counts in, the count likelihood by default; a model of log-normalised data predicts log expression."""
    import scanpy as sc

    sct.SCTransformer.setup_anndata(pbmc68k, labels_key="bulk_labels")
    model = sct.SCTransformer(pbmc68k, **TINY)
    model.pretrain(max_epochs=1, enable_progress_bar=False)
    assert model.module.objectives["masked_expression"].target == "counts"
    assert model.pretraining_["objective_kwargs"] == {"target": "counts"}

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


def test_counts_target_recovers_the_counts(pbmc68k):
    """The raw counts the likelihood scores are the data's counts, rebuilt from the tokens' values."""
    sct.SCTransformer.setup_anndata(pbmc68k, labels_key="bulk_labels")
    model = sct.SCTransformer(pbmc68k, **TINY)
    x = torch.as_tensor(pbmc68k.X[:8].toarray(), dtype=torch.float32)
    library = torch.as_tensor(pbmc68k.obs["n_counts"].to_numpy()[:8], dtype=torch.float32)
    tokens = model.module.tokenizer(x, library)
    chosen = torch.ones(len(tokens.values), dtype=torch.bool)
    objective = MaskedExpression(16, target="counts")
    counts, _ = objective._counts(CellBatch(x, library), tokens, chosen, tokens.values)
    expected = x[tokens.cell, model.module.tokenizer.panel_index[tokens.gene_ids]]
    torch.testing.assert_close(counts, expected)


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
