"""Self-supervised pretraining (masked expression, uniform and MAM masking), on data that ships with scanpy.

The measurement of what pretraining is worth lives in benchmarks/; these tests check the mechanics: what is
masked, that reconstruction is learned, that the classifier stays untrained until ``train``, that unmeasured
genes never become tokens, that the MAM policy does not collapse and that a pretrained model saves and loads;
and MAM's estimator on a standalone policy with planted rewards (no encoder): the exact Plackett-Luce
log-probability, the leave-one-out baseline, the shuffled-reward control, the per-gene relative reward.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
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
    objective = MaskedExpression(8, masking=masking, mask_ratio=0.2, max_logit=2.0, n_genes=10)
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


# ------------------------------------------------------------------ MAM's estimator on a standalone policy
@pytest.fixture
def one_thread():
    """Small tensors: intra-op threads only stall when the cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _policy_step(objective, logits, n_cells, token_reward):
    """Draw each of ``n_cells`` cells' masks from ``logits`` (shared by all cells) and return the policy loss."""
    n = len(logits)
    cell = torch.arange(n_cells).repeat_interleave(n)
    flat = logits.repeat(n_cells)
    k = objective.n_masked(torch.bincount(cell, minlength=n_cells))
    rank = objective.gumbel_top_k(flat, cell, n_cells)
    chosen = rank < k[cell]
    log_prob = objective.plackett_luce_log_prob(flat, cell, n_cells, rank, k)
    return objective.policy_loss(token_reward.repeat(n_cells), chosen, log_prob, torch.zeros(n_cells), cell, n_cells)


def _inclusion(objective, logits, n_draws=400):
    with torch.no_grad():
        n = len(logits)
        cell = torch.arange(n_draws).repeat_interleave(n)
        k = objective.n_masked(torch.bincount(cell))
        chosen = objective.gumbel_top_k(logits.repeat(n_draws), cell, n_draws) < k[cell]
        return chosen.float().view(n_draws, n).mean(0)


def test_plackett_luce_log_prob_is_exact(one_thread):
    """The draw's log-probability sums to 1 over all ordered draws, and its score has mean zero (4,000 draws of 45
    of 300 tokens, 10 preferred); the sum of the picked tokens' softmax log-probabilities, used before, has not."""
    import itertools

    torch.manual_seed(0)
    logits, cell = torch.tensor([0.3, -1.2, 2.0, 0.0]), torch.zeros(4, dtype=torch.long)
    total = 0.0
    for picks in itertools.permutations(range(4), 2):
        rest = [t for t in range(4) if t not in picks]
        rank = torch.empty(4, dtype=torch.long)
        rank[[*picks, *rest]] = torch.arange(4)
        total += MaskedExpression.plackett_luce_log_prob(logits, cell, 1, rank, torch.tensor([2])).exp().item()
    assert total == pytest.approx(1.0, abs=1e-6)
    # two cells of different sizes at once: each cell's term is its own
    logits2 = torch.tensor([0.3, -1.2, 2.0, 0.0, 1.0, -1.0, 0.5])
    cell2 = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    rank2 = torch.tensor([1, 3, 0, 2, 2, 0, 1])
    both = MaskedExpression.plackett_luce_log_prob(logits2, cell2, 2, rank2, torch.tensor([2, 1]))
    alone = MaskedExpression.plackett_luce_log_prob(
        logits2[4:], torch.zeros(3, dtype=torch.long), 1, rank2[4:], torch.tensor([1])
    )
    torch.testing.assert_close(both[1:], alone)
    torch.testing.assert_close(both[0], torch.log_softmax(logits, 0)[2] + torch.log_softmax(logits[[0, 1, 3]], 0)[0])

    objective = MaskedExpression(8, masking="mam", mask_ratio=0.15, n_genes=1)
    n, draws = 300, 4000
    base = torch.zeros(n)
    base[:10] = 2.0
    cell = torch.arange(draws).repeat_interleave(n)
    exact, former = base.clone().requires_grad_(True), base.clone().requires_grad_(True)
    k = objective.n_masked(torch.bincount(cell))
    rank = objective.gumbel_top_k(base.repeat(draws), cell, draws)
    chosen = rank < k[cell]
    objective.plackett_luce_log_prob(exact.repeat(draws), cell, draws, rank, k).mean().backward()
    softmax = MaskedExpression.log_probabilities(former.repeat(draws), cell, draws)
    torch.zeros(draws).index_add_(0, cell, softmax * chosen).mean().backward()
    assert abs(float(exact.grad[:10].mean())) < 0.02 and abs(float(exact.grad[10:].mean())) < 0.005
    assert float(former.grad[:10].mean()) < -0.2  # biased: the preferred logits fall with no reward at all


def test_constant_reward_leaves_the_policy_alone(one_thread):
    """With a constant reward, the leave-one-out advantage is exactly zero: no gradient, whatever the logits."""
    torch.manual_seed(0)
    objective = MaskedExpression(8, masking="mam", mask_ratio=0.15, n_genes=1, entropy_weight=0.0, n_draws=3)
    logits = torch.zeros(300)
    logits[:10] = 2.0
    logits.requires_grad_(True)
    _policy_step(objective, logits, 30, torch.full((300,), 0.7)).backward()
    assert float(logits.grad.abs().max()) == 0.0
    with pytest.raises(ValueError, match="n_draws must be at least 2"):
        MaskedExpression(8, masking="mam", n_draws=1, n_genes=1)


@pytest.mark.parametrize("masking", ["mam", "mam_shuffled"])
def test_policy_finds_a_planted_reward(masking, one_thread):
    """Reward 1 for masking any of 10 planted tokens of 300 (0 otherwise): MAM's policy learns to mask them (their
    inclusion rate rises far above k / n = 0.15); the shuffled-reward control, given the same rewards without the
    token-reward link, does not."""
    torch.manual_seed(1)
    objective = MaskedExpression(8, masking=masking, mask_ratio=0.15, n_genes=1, entropy_weight=0.0)
    n = 300
    planted = torch.zeros(n, dtype=torch.bool)
    planted[torch.randperm(n)[:10]] = True
    logits = torch.zeros(n, requires_grad=True)
    optimiser = torch.optim.Adam([logits], lr=0.05)
    for _ in range(150):
        optimiser.zero_grad()
        _policy_step(objective, logits, 16 * objective.n_draws, planted.float()).backward()
        optimiser.step()
    rate = _inclusion(objective, logits.detach())
    if masking == "mam":
        assert float(rate[planted].mean()) > 0.6, rate[planted]
    else:
        assert float(rate[planted].mean()) < 0.25 and abs(float(rate[~planted].mean()) - 0.15) < 0.02


def test_relative_reward_takes_expression_out():
    """Per-gene relative reward: a gene always hard (loss 4.07, a high rate) and one always easy (0.65) both earn 0
    once their running losses are known; a token harder than its gene usually is earns a positive reward."""
    objective = MaskedExpression(8, masking="mam", n_genes=3, loss_momentum=0.5)
    objective.train()
    genes = torch.tensor([0, 1, 0, 1])
    loss = torch.tensor([4.07, 0.65, 4.07, 0.65])
    torch.testing.assert_close(objective.token_rewards(loss, genes), torch.zeros(4))  # first seen: no reference
    for _ in range(3):
        reward = objective.token_rewards(loss, genes)
    torch.testing.assert_close(reward, torch.zeros(4))
    torch.testing.assert_close(objective.token_rewards(torch.tensor([1.3]), torch.tensor([1])), torch.tensor([1.0]))
    assert not bool(objective.gene_seen[2])
    raw = MaskedExpression(8, masking="mam", reward="raw", n_genes=3).train()
    torch.testing.assert_close(raw.token_rewards(loss, genes), loss)  # the raw loss grows with expression
    torch.testing.assert_close(raw.gene_loss[:2], torch.tensor([4.07, 0.65]))  # tracked all the same
    with pytest.raises(ValueError, match="give n_genes"):
        MaskedExpression(8, masking="mam")


def test_policy_reads_context_not_the_tokens_own_value():
    """What the policy scores a token from changes with the other tokens' values, never with its own."""
    torch.manual_seed(0)
    objective = MaskedExpression(8, masking="mam", n_genes=1)
    identity, value = torch.randn(5, 8), torch.randn(5, 8)
    cell = torch.tensor([0, 0, 0, 1, 1])
    before = objective.logits(objective.policy_inputs(identity, value, cell, 2))
    value[0] = value[0] * 10 + 5
    after = objective.logits(objective.policy_inputs(identity, value, cell, 2))
    torch.testing.assert_close(after[[0, 3, 4]], before[[0, 3, 4]])
    assert not torch.allclose(after[1:3], before[1:3])


def test_a_repeated_read_is_the_same_read(pbmc68k):
    """encode(repeat=n): each cell read n times as consecutive cells, with the same tokens and the same result."""
    sct.SCTransformer.setup_anndata(pbmc68k, labels_key="bulk_labels")
    model = sct.SCTransformer(pbmc68k, **TINY)
    module = model.module.eval()
    x = torch.as_tensor(pbmc68k.X[:6].toarray(), dtype=torch.float32)
    batch = CellBatch(x, torch.as_tensor(pbmc68k.obs["n_counts"].to_numpy()[:6], dtype=torch.float32))
    with torch.no_grad():
        once = module.encode(batch, return_hidden=True)
        thrice = module.encode(batch, return_hidden=True, repeat=3)
    assert thrice.tokens.n_cells == 18 and len(thrice.tokens.cell) == 3 * len(once.tokens.cell)
    for r in range(3):
        torch.testing.assert_close(thrice.embedding[r::3], once.embedding, atol=1e-5, rtol=1e-5)
    tokens = thrice.tokens
    first = tokens.cell % 3 == 0
    torch.testing.assert_close(tokens.gene_ids[first], once.tokens.gene_ids)
    torch.testing.assert_close(thrice.hidden[first], once.hidden, atol=1e-5, rtol=1e-5)
    dropped = module.tokenizer(x, batch.library, drop_prob=0.5).repeat(2)  # replicas share their token dropout
    torch.testing.assert_close(dropped.gene_ids[dropped.cell == 0], dropped.gene_ids[dropped.cell == 1])


def test_weights_saved_before_the_baseline_change_load():
    """A MAM objective saved with the former moving-average baseline loads: the baseline is dropped, the per-gene
    running losses start unseen."""
    objective = MaskedExpression(8, masking="mam", n_genes=4)
    state = {k: v.clone() for k, v in objective.state_dict().items() if not k.startswith("gene_")}
    state |= {"baseline": torch.tensor(0.3), "baseline_set": torch.tensor(True)}
    fresh = MaskedExpression(8, masking="mam", n_genes=4)
    fresh.load_state_dict(state, strict=True)
    torch.testing.assert_close(fresh.latents, objective.latents)
    assert not bool(fresh.gene_seen.any())
