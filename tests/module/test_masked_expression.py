"""The masked-expression objective (module/_masked_expression.py): what is masked, the reconstruction targets,
and MAM's estimator on a standalone policy with planted rewards (no encoder): the exact Plackett-Luce
log-probability, the leave-one-out baseline, the shuffled-reward control, the per-gene relative reward.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sctransformer_tools as sct
from sctransformer_tools.module import CellBatch, MaskedExpression

TINY = {"d_model": 16, "n_layers": 1, "n_heads": 2, "n_top_genes": 0}


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
