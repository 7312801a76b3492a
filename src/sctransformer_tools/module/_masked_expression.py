"""Self-supervised masked expression: hide some of a cell's gene tokens' values and predict them back."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scvi.module.base import LossOutput
from torch import nn
from torchmetrics import MeanMetric, Metric

from ._batch import CellBatch
from ._objective import EncoderViews, Objective
from ._tokenizer import GeneTokens

#: Floor of a gene's running mean loss when the relative reward divides by it.
_LOSS_FLOOR = 1e-3


class MaskedExpression(Objective):
    """Self-supervised pretraining: hide the expression of some of a cell's gene tokens and predict it back.

    Tokens are a cell's *expressed* panel genes (a zero is never a token). A masked token keeps its gene
    identity; its value embedding is replaced by a learned "masked value" vector, and a head on its final
    state predicts what was hidden, read as ``target``:

    ``"log_expression"`` (this class's default)
        the log-normalised expression ``log1p(count / library * 1e4)``, by mean squared error. Zero
        inflation, which makes a count likelihood necessary for models that read every gene, does not arise:
        only expressed genes are tokens, so every target is a positive number.
    ``"counts"``
        the raw count, by a zero-truncated Poisson likelihood (a token's count is at least 1), with the
        cell's library size as offset, as scVI models counts; the head predicts the log rate per 10^4 counts.
        :meth:`~sctransformer_tools.SCTransformer.pretrain` uses it by default when the model reads counts.
    ``"bins"``
        the token's bin among the cell's own expression values (``n_bins`` bins at the quantiles of the
        cell's tokens, ties in one bin; scGPT's value binning), by cross-entropy.

    Whatever the target, the logged ``mse`` is the squared error of the log-normalised expression implied
    by the prediction (the rate for ``"counts"``, the expected bin mean for ``"bins"``), so that targets can
    be compared in one unit; ``benchmarks/pretraining.py`` compares them on annotation after fine-tuning.

    **Which tokens are masked** (``mask_ratio`` of each cell's tokens, at least one): ``k`` tokens drawn without
    replacement from a softmax over the cell's tokens by Gumbel top-k, i.e. sequentially, each pick from the
    tokens not yet picked (a Plackett-Luce draw).

    ``"uniform"``
        all logits equal: a uniformly random set, as in most transformer foundation models.
    ``"mam"``
        Multinomial Attention Masking: ``n_latents`` trainable latent vectors cross-attend to the cell's gene
        tokens; the best latent score of each token, bounded by ``max_logit * tanh(.)``, is its logit. What the
        policy reads of a token (:meth:`policy_inputs`) is its gene identity embedding plus the mean of the
        *other* tokens of its cell (identity + value): the gene and its context, never the token's own value, so
        that the policy cannot simply pick tokens by how high they are. The policy is trained to *raise* the
        reconstruction error of what it masks while the encoder learns to lower it: the masking seeks the
        positions the encoder finds hardest.
    ``"mam_shuffled"``
        the control arm of MAM: the same policy, draws, reward distribution and estimator, but each cell's
        per-token rewards are permuted at random among the tokens its ``n_draws`` draws masked before the policy
        update, which keeps every reward value and removes the link between a token and its reward. Whatever
        MAM learns beyond this arm is what its reward tells it. (Permuting within one draw would leave that
        draw's mean reward, hence the update, unchanged; the permutation therefore pools the cell's draws.)

    **The policy's estimator** (MAM arms). Sampling is not differentiable; the policy gradient is a score-function
    (REINFORCE) estimate with

    - the exact log-probability of the sampled draw: the Plackett-Luce probability of the ordered Gumbel top-k
      sample, ``sum_j [l(pick j) - logsumexp(l of the tokens not picked before j)]``
      (:meth:`plackett_luce_log_prob`). The sum of the picked tokens' softmax log-probabilities, used before, is
      not the log-probability of a sample without replacement: its expected score is not zero, so it moved the
      logits even when the reward carried no signal (300 tokens, 10 preferred, constant reward: mean gradient
      -0.091 on the preferred logits and +0.003 on the others over 4,000 draws).
    - a leave-one-out baseline: each cell is masked ``n_draws`` times independently (in one pass of the encoder,
      the cell repeated, its token dropout shared), and a draw's advantage is its reward minus the mean reward of
      the cell's other draws (Kool, van Hoof & Welling 2019, "Buy 4 REINFORCE samples, get a baseline for
      free!"). The baseline does not depend on the draw it is subtracted from (the draws are independent given
      the cell), so the estimate stays unbiased; and it removes, cell by cell, what does not depend on the choice
      of tokens (how hard the cell is overall, its depth, its token count), the bulk of the reward's variance,
      which one moving average over all cells cannot, and which, lagging a drifting reward, biased the update.
      The price is ``n_draws`` readings of each cell by the encoder in the masked view; every draw also trains
      the reconstruction. A constant reward gives an advantage of exactly zero.

    An entropy bonus (``entropy_weight``, on the softmax's entropy normalised by its maximum, ``log`` of the
    cell's token count) and the bounded logits (every token's probability within ``exp(2 * max_logit)`` of any
    other's) keep the policy from collapsing onto a few genes.

    **The reward** of a draw is the mean of its masked tokens' rewards. A token's raw reward, its loss, grows
    with expression by construction whatever the model learns (the zero-truncated Poisson loss at the *true*
    rate is 0.65 at rate 0.5 and 4.07 at rate 200), so a policy rewarded by it learns to mask highly expressed
    genes. With ``reward="relative"`` (the default) a token's reward is its loss relative to its gene's running
    mean loss, ``loss / running_loss[gene] - 1`` (an exponential moving average over the gene's masked tokens
    with momentum ``loss_momentum``, updated after the reward is computed; 0 until the gene was first masked):
    a gene earns a preference only where it is harder than it usually is, not by being expressed. The deviance
    (the loss minus that of the saturated model) was the other candidate; it exists only for the count target
    and, for overdispersed genes (most of scRNA-seq), still grows with expression. ``reward="raw"`` keeps the
    loss itself, for comparison.

    Parameters
    ----------
    d_model
        Width of the token states.
    masking
        ``"uniform"``, ``"mam"`` or ``"mam_shuffled"`` (see above).
    mask_ratio
        Share of each cell's gene tokens masked.
    n_latents
        MAM's latent vectors.
    max_logit
        Bound on MAM's logits.
    entropy_weight
        Weight of MAM's entropy bonus.
    n_draws
        Draws of the mask per cell and step (the cell is read that many times in the masked view); ``None``: 2
        for the MAM arms (at least 2: the leave-one-out baseline), 1 for uniform masking. Set it to 2 for
        uniform masking to compare arms at equal encoder cost and reconstruction signal.
    reward
        ``"relative"`` or ``"raw"`` (see above).
    loss_momentum
        Momentum of each gene's running mean loss (``reward="relative"``).
    n_genes
        Panel genes (the size of the running mean loss, ``gene_loss``, which the MAM arms keep whatever the reward);
        needed by the MAM arms with ``reward="relative"``.
    target
        What is predicted of a masked token: ``"log_expression"``, ``"counts"`` or ``"bins"`` (see above).
    n_bins
        Bins of ``target="bins"``.
    log_normalized
        The model reads log-normalised values (no counts to predict).
    target_sum
        The tokenizer's counts per cell after normalisation (to turn values back into counts).

    Examples
    --------
    >>> import torch
    >>> objective = MaskedExpression(16, masking="mam", mask_ratio=0.25, n_genes=100)
    >>> cell = torch.tensor([0, 0, 0, 0, 1, 1])
    >>> chosen, log_prob, entropy = objective.choose(torch.randn(6, 16), cell, n_cells=2)
    >>> chosen.tolist()[:4].count(True), chosen.tolist()[4:].count(True)  # a quarter of 4, at least one of 2
    (1, 1)
    >>> bool((log_prob <= 0).all()), objective.n_draws
    (True, 2)
    """

    name = "masked_expression"
    progress_metric = "mse"
    MASKINGS = ("uniform", "mam", "mam_shuffled")
    TARGETS = ("log_expression", "counts", "bins")
    REWARDS = ("relative", "raw")

    def __init__(
        self,
        d_model: int,
        *,
        masking: str = "uniform",
        mask_ratio: float = 0.15,
        n_latents: int = 8,
        max_logit: float = 3.0,
        entropy_weight: float = 0.1,
        n_draws: int | None = None,
        reward: str = "relative",
        loss_momentum: float = 0.9,
        n_genes: int | None = None,
        target: str = "log_expression",
        n_bins: int = 51,
        log_normalized: bool = False,
        target_sum: float = 1e4,
    ):
        super().__init__()
        if target == "counts" and log_normalized:
            raise ValueError("target='counts' needs raw counts; this model reads log-normalised data.")
        self.log_normalized, self.target_sum = bool(log_normalized), float(target_sum)
        if masking not in self.MASKINGS:
            raise ValueError(f"masking must be one of {self.MASKINGS}, got {masking!r}.")
        if target not in self.TARGETS:
            raise ValueError(f"target must be one of {self.TARGETS}, got {target!r}.")
        if reward not in self.REWARDS:
            raise ValueError(f"reward must be one of {self.REWARDS}, got {reward!r}.")
        if target == "bins" and n_bins < 2:
            raise ValueError(f"n_bins must be at least 2, got {n_bins}.")
        self.target, self.n_bins = target, int(n_bins)
        if not 0 < mask_ratio < 1:
            raise ValueError(f"mask_ratio must be between 0 and 1 (exclusive), got {mask_ratio}.")
        self.masking, self.mask_ratio = masking, float(mask_ratio)
        learned = masking != "uniform"
        n_draws = (2 if learned else 1) if n_draws is None else int(n_draws)
        if n_draws < (2 if learned else 1):
            raise ValueError(
                f"n_draws must be at least {2 if learned else 1} for {masking!r} masking (MAM's leave-one-out "
                f"baseline compares a cell's draws), got {n_draws}."
            )
        self.n_draws, self.reward, self.loss_momentum = n_draws, reward, float(loss_momentum)
        self.max_logit, self.entropy_weight = max_logit, entropy_weight
        self.masked_value = nn.Parameter(torch.zeros(d_model))
        self.head = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, self.n_bins if target == "bins" else 1))
        self.latents = self.query = self.key = None
        if learned:
            self.latents = nn.Parameter(torch.randn(n_latents, d_model) / d_model**0.5)
            self.query = nn.Linear(d_model, d_model, bias=False)
            self.key = nn.Linear(d_model, d_model, bias=False)
        if learned and reward == "relative" and n_genes is None:
            raise ValueError("reward='relative' keeps a running mean loss per gene: give n_genes (the panel size).")
        tracked = learned and n_genes is not None  # each gene's running mean loss (kept with the raw reward too)
        self.register_buffer("gene_loss", torch.zeros(int(n_genes)) if tracked else None)
        self.register_buffer("gene_seen", torch.zeros(int(n_genes), dtype=torch.bool) if tracked else None)
        self._chosen: dict[str, torch.Tensor] = {}

    @property
    def learned(self) -> bool:
        """Whether the masking is a trained policy (``"mam"``, ``"mam_shuffled"``)."""
        return self.latents is not None

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors):
        """Weights saved before the leave-one-out baseline: drop the moving-average baseline, start the per-gene
        running losses afresh.
        """
        for name in ("baseline", "baseline_set"):
            state_dict.pop(prefix + name, None)
        for name in ("gene_loss", "gene_seen"):
            buffer = getattr(self, name)
            if buffer is not None and prefix + name not in state_dict:
                state_dict[prefix + name] = buffer.detach().clone()
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors)

    # ---------------------------------------------------------------- policy
    @staticmethod
    def policy_inputs(identity: torch.Tensor, value: torch.Tensor, cell: torch.Tensor, n_cells: int) -> torch.Tensor:
        """What MAM's policy reads of each token: its gene identity embedding plus the mean of the other tokens of
        its cell (identity + value embeddings), detached from the encoder's graph. A token's own value is not read.

        Parameters
        ----------
        identity, value
            ``(n_tokens, d_model)`` identity and value embeddings of the gene tokens.
        cell
            ``(n_tokens,)`` cell of each token.
        n_cells
            Cells in the minibatch.

        Examples
        --------
        >>> import torch
        >>> identity, value, cell = torch.randn(3, 4), torch.randn(3, 4), torch.tensor([0, 0, 0])
        >>> before = MaskedExpression.policy_inputs(identity, value, cell, 1)
        >>> value[0] += 10.0  # token 0's value changes: what the policy reads of token 0 does not
        >>> after = MaskedExpression.policy_inputs(identity, value, cell, 1)
        >>> torch.allclose(after[0], before[0], atol=1e-5), torch.allclose(after[1], before[1], atol=1e-5)
        (True, False)
        """
        identity = identity.detach().float()
        token = identity + value.detach().float()
        total = torch.zeros(n_cells, token.shape[1], device=token.device).index_add_(0, cell, token)
        others = (torch.bincount(cell, minlength=n_cells)[cell] - 1).clamp_min(1).unsqueeze(1)
        return identity + (total[cell] - token) / others

    def logits(self, states: torch.Tensor) -> torch.Tensor:
        """MAM's bounded logit of each token ``(n_tokens,)`` from what the policy reads of it (zeros for uniform)."""
        if self.latents is None:
            return states.new_zeros(states.shape[0])
        scores = self.key(states) @ self.query(self.latents).T / states.shape[-1] ** 0.5  # (tokens, latents)
        return self.max_logit * torch.tanh(scores.amax(-1) / self.max_logit)

    def n_masked(self, per_cell: torch.Tensor) -> torch.Tensor:
        """Tokens masked per cell: ``round(mask_ratio x tokens)``, at least one (none for a cell without tokens)."""
        k = torch.clamp(torch.round(per_cell.float() * self.mask_ratio), min=1).long()
        return torch.minimum(k, per_cell)

    @staticmethod
    def log_probabilities(logits: torch.Tensor, cell: torch.Tensor, n_cells: int) -> torch.Tensor:
        """Log-probability of each token in its cell's multinomial (a softmax of ``logits`` within each cell)."""
        peak = torch.zeros(n_cells, device=logits.device).scatter_reduce(0, cell, logits, "amax", include_self=False)
        total = torch.zeros(n_cells, device=logits.device).index_add_(0, cell, torch.exp(logits - peak[cell]))
        return logits - peak[cell] - torch.log(total[cell])

    @staticmethod
    def gumbel_top_k(logits: torch.Tensor, cell: torch.Tensor, n_cells: int) -> torch.Tensor:
        """A Plackett-Luce ordering of each cell's tokens by the Gumbel-max trick: the rank of each token in its
        cell (0: drawn first). The ``k`` tokens of rank below ``k`` are a sample without replacement of ``k``
        tokens from the softmax of ``logits`` within the cell, drawn in rank order.
        """
        logits = logits.detach().float()
        gumbel = -torch.log(-torch.log(torch.rand_like(logits).clamp(1e-10, 1 - 1e-10)))
        order = torch.argsort(logits + gumbel, descending=True, stable=True)
        order = order[torch.argsort(cell[order], stable=True)]  # cell-major, first drawn first within a cell
        per_cell = torch.bincount(cell, minlength=n_cells)
        starts = torch.cumsum(per_cell, 0) - per_cell
        rank = torch.empty_like(order)
        rank[order] = torch.arange(len(order), device=order.device) - starts[cell[order]]
        return rank

    @staticmethod
    def plackett_luce_log_prob(
        logits: torch.Tensor, cell: torch.Tensor, n_cells: int, rank: torch.Tensor, k: torch.Tensor
    ) -> torch.Tensor:
        """Exact log-probability of each cell's ordered draw of its ``k`` first-ranked tokens (per cell).

        Drawing without replacement from a softmax, one token after the other, gives the ordered sample
        ``t_1 .. t_k`` the probability ``prod_j exp(l_{t_j}) / sum_{t not in t_1..t_{j-1}} exp(l_t)``
        (Plackett-Luce); Gumbel top-k samples exactly this. Computed for all cells at once on a padded
        ``(cells, most tokens)`` layout (suffix sums in float64); differentiable in ``logits``.

        Parameters
        ----------
        logits
            ``(n_tokens,)`` logits.
        cell
            ``(n_tokens,)`` cell of each token.
        n_cells
            Cells.
        rank
            ``(n_tokens,)`` rank of each token in its cell's draw (:meth:`gumbel_top_k`).
        k
            ``(n_cells,)`` tokens drawn per cell.

        Examples
        --------
        >>> import itertools, math, torch
        >>> logits, cell, k = torch.tensor([0.5, -1.0, 2.0]), torch.zeros(3, dtype=torch.long), torch.tensor([2])
        >>> total = 0.0  # every ordered draw of 2 of 3 tokens: the probabilities sum to 1
        >>> for first, second in itertools.permutations(range(3), 2):
        ...     rank = torch.full((3,), 2)
        ...     rank[first], rank[second] = 0, 1
        ...     total += math.exp(MaskedExpression.plackett_luce_log_prob(logits, cell, 1, rank, k).item())
        >>> round(total, 6)
        1.0
        """
        per_cell = torch.bincount(cell, minlength=n_cells)
        width = int(per_cell.max()) if len(cell) else 0
        logits = logits.float()
        peak = torch.zeros(n_cells, device=logits.device).scatter_reduce(
            0, cell, logits.detach(), "amax", include_self=False
        )
        shifted = logits - peak[cell]
        weight = torch.zeros(n_cells, max(width, 1), dtype=torch.float64, device=logits.device)
        weight = weight.index_put((cell, rank), torch.exp(shifted.double()))
        remaining = weight.flip(1).cumsum(1).flip(1)  # [c, j]: the weight of the tokens of rank >= j
        drawn = rank < k[cell]
        terms = shifted[drawn] - torch.log(remaining[cell[drawn], rank[drawn]]).float()
        return torch.zeros(n_cells, device=logits.device).index_add_(0, cell[drawn], terms)

    def choose(
        self, states: torch.Tensor, cell: torch.Tensor, n_cells: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tokens to mask, and per cell the exact log-probability of the draw and the normalised entropy.

        Parameters
        ----------
        states
            ``(n_tokens, d_model)`` what the policy reads of each token (:meth:`policy_inputs`; cell-major, as
            packed by the tokenizer).
        cell
            ``(n_tokens,)`` cell of each token.
        n_cells
            Cells in the minibatch.

        Returns
        -------
        ``chosen`` (bool per token), ``log_prob`` (per cell: the Plackett-Luce log-probability of the ordered draw,
        :meth:`plackett_luce_log_prob`) and ``entropy`` (per cell: of the softmax, over its maximum).
        """
        logits = self.logits(states.detach()).float()
        per_cell = torch.bincount(cell, minlength=n_cells)
        k = self.n_masked(per_cell)
        rank = self.gumbel_top_k(logits, cell, n_cells)
        chosen = rank < k[cell]
        log_prob = self.plackett_luce_log_prob(logits, cell, n_cells, rank, k)
        log_p = self.log_probabilities(logits, cell, n_cells)
        entropy = -torch.zeros(n_cells, device=logits.device).index_add_(0, cell, log_p.exp() * log_p)
        entropy = entropy / torch.log(per_cell.clamp(min=2).float())
        return chosen, log_prob, entropy

    @torch.no_grad()
    def inclusion_rates(
        self, identity: torch.Tensor, value: torch.Tensor, tokens: GeneTokens, n_draws: int = 32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """How often each token is masked: the share of ``n_draws`` draws of the masking sampler that mask it.

        Parameters
        ----------
        identity, value
            ``(n_tokens, d_model)`` identity and value embeddings of the gene tokens.
        tokens
            The gene tokens.
        n_draws
            Draws per cell.

        Returns
        -------
        ``rate`` (per token, in [0, 1]) and ``uniform`` (per token: its cell's ``k / n``, the rate of uniform
        masking).
        """
        cell, n_cells = tokens.cell, tokens.n_cells
        states = self.policy_inputs(identity, value, cell, n_cells) if self.learned else identity
        logits = self.logits(states).float()
        per_cell = torch.bincount(cell, minlength=n_cells)
        k = self.n_masked(per_cell)
        hits = torch.zeros(len(cell), device=logits.device)
        for _ in range(n_draws):
            hits += (self.gumbel_top_k(logits, cell, n_cells) < k[cell]).float()
        return hits / n_draws, (k.float() / per_cell.clamp_min(1).float())[cell]

    # ---------------------------------------------------------------- reward
    def token_rewards(self, error: torch.Tensor, gene_ids: torch.Tensor) -> torch.Tensor:
        """The policy's reward of each masked token from its loss ``error`` (see the class doc); while training,
        the genes' running mean losses are updated afterwards.
        """
        error = error.detach().float()
        if self.gene_loss is None:
            return error
        if self.reward == "raw":
            reward = error
        else:
            reference = self.gene_loss[gene_ids]
            reward = torch.where(
                self.gene_seen[gene_ids], error / reference.clamp_min(_LOSS_FLOOR) - 1, torch.zeros_like(error)
            )
        if self.training:
            n_genes = len(self.gene_loss)
            total = torch.zeros(n_genes, device=error.device).index_add_(0, gene_ids, error)
            count = torch.bincount(gene_ids, minlength=n_genes)
            mean = total / count.clamp_min(1)
            momentum = self.loss_momentum
            moved = torch.where(self.gene_seen, momentum * self.gene_loss + (1 - momentum) * mean, mean)
            self.gene_loss.copy_(torch.where(count > 0, moved, self.gene_loss))
            self.gene_seen.logical_or_(count > 0)
        return reward

    @staticmethod
    def permute_within(group: torch.Tensor) -> torch.Tensor:
        """A random permutation ``p`` of positions that stays within groups: ``x[p]`` permutes ``x`` group by group.

        Examples
        --------
        >>> import torch
        >>> group = torch.tensor([0, 1, 0, 1, 1])
        >>> p = MaskedExpression.permute_within(group)
        >>> torch.equal(group[p], group), sorted(p.tolist())
        (True, [0, 1, 2, 3, 4])
        """
        by_group = torch.argsort(group, stable=True)
        shuffled = torch.randperm(len(group), device=group.device)
        shuffled = shuffled[torch.argsort(group[shuffled], stable=True)]
        permutation = torch.empty_like(by_group)
        permutation[by_group] = shuffled
        return permutation

    def policy_loss(
        self,
        token_reward: torch.Tensor,
        chosen: torch.Tensor,
        log_prob: torch.Tensor,
        entropy: torch.Tensor,
        cell: torch.Tensor,
        n_cells: int,
    ) -> torch.Tensor:
        """MAM's policy loss: REINFORCE with the leave-one-out baseline, minus the entropy bonus.

        The cells are ``n_cells / n_draws`` cells, each drawn ``n_draws`` times as consecutive cells (as
        ``encode(..., repeat=n_draws)`` lays them out). A draw's reward is the mean of ``token_reward`` over its
        masked tokens (for ``"mam_shuffled"``, after permuting the rewards among each cell's masked tokens of all
        its draws); its advantage is its reward minus the mean reward of the cell's other draws.

        Parameters
        ----------
        token_reward
            ``(n_tokens,)`` reward of each token (read where ``chosen``).
        chosen
            ``(n_tokens,)`` masked tokens.
        log_prob
            ``(n_cells,)`` log-probability of each draw (:meth:`plackett_luce_log_prob`), with its graph.
        entropy
            ``(n_cells,)`` normalised entropy of each draw's softmax, with its graph.
        cell
            ``(n_tokens,)`` cell (draw) of each token.
        n_cells
            Draws in all: cells x ``n_draws``.

        Returns
        -------
        The scalar loss; its gradient is the policy's.
        """
        n_draws = self.n_draws
        if n_cells % n_draws:
            raise ValueError(f"{n_cells} draws are not whole groups of n_draws={n_draws}.")
        masked = chosen.nonzero().squeeze(1)
        reward = token_reward[masked].detach().float()
        if self.masking == "mam_shuffled":
            reward = reward[self.permute_within(cell[masked] // n_draws)]
        total = torch.zeros(n_cells, device=reward.device).index_add_(0, cell[masked], reward)
        count = torch.bincount(cell[masked], minlength=n_cells)
        has = count > 0
        draws = (total / count.clamp_min(1)).view(-1, n_draws)
        advantage = draws - (draws.sum(1, keepdim=True) - draws) / (n_draws - 1)
        advantage = (advantage * has.view(-1, n_draws).all(1, keepdim=True)).reshape(-1)
        policy = -(advantage * log_prob).sum() / has.sum().clamp_min(1)
        if has.any():
            policy = policy - self.entropy_weight * entropy[has].mean()
        return policy

    # ------------------------------------------------------------ objective
    def read(self, views: EncoderViews):
        """The masked view of the minibatch: each cell read ``n_draws`` times, the chosen tokens' values hidden,
        every gene token's final state.
        """

        def hide(identity: torch.Tensor, value: torch.Tensor, tokens: GeneTokens) -> torch.Tensor:
            states = identity + value
            reads = self.policy_inputs(identity, value, tokens.cell, tokens.n_cells) if self.learned else identity
            chosen, log_prob, entropy = self.choose(reads, tokens.cell, tokens.n_cells)
            self._chosen = {"chosen": chosen, "log_prob": log_prob, "entropy": entropy}
            return torch.where(chosen[:, None], (identity + self.masked_value).to(states.dtype), states)

        repeat = {"repeat": self.n_draws} if self.n_draws > 1 else {}
        return views.view(self.name, token_dropout=views.token_dropout, token_hook=hide, return_hidden=True, **repeat)

    def loss(self, views: EncoderViews, batch: CellBatch) -> LossOutput:
        """The target's loss on the masked tokens (every draw), plus MAM's policy loss while training."""
        outputs = self.read(views)
        tokens, hidden = outputs.tokens, outputs.hidden
        chosen = self._chosen["chosen"]
        if not chosen.any():  # no expressed gene in the minibatch: no signal, keep the graph
            zero = hidden.sum() * 0.0
            return LossOutput(
                loss=zero, n_obs_minibatch=0, extra_metrics={"mse": zero.detach(), "entropy": zero.detach()}
            )
        batch = batch.repeat_cells(self.n_draws)
        predicted = self.head(hidden[chosen]).float()
        values = tokens.values[chosen].float()
        if self.target == "log_expression":
            implied = predicted[:, 0]
            error = (implied - values) ** 2
        elif self.target == "counts":
            counts, scale = self._counts(batch, tokens, chosen, values)
            log_rate = predicted[:, 0] + torch.log(scale)
            rate = torch.exp(log_rate)
            # zero-truncated Poisson: -log[Poisson(k; rate) / (1 - exp(-rate))]
            error = rate - counts * log_rate + torch.lgamma(counts + 1) + torch.log(-torch.expm1(-rate.clamp_min(1e-6)))
            implied = F.softplus(predicted[:, 0])  # log1p(exp(.)): the log-normalised expression at the mean rate
        else:
            bins, centres = self._bins(tokens)
            error = F.cross_entropy(predicted, bins[chosen], reduction="none")
            implied = (predicted.softmax(-1) * centres[tokens.cell[chosen]]).sum(-1)
        mse = ((implied.detach() - values) ** 2).mean()
        loss = error.mean()
        has = torch.bincount(tokens.cell[chosen], minlength=tokens.n_cells) > 0
        if self.learned and self.training:
            reward = torch.zeros(len(chosen), device=error.device)
            reward[chosen] = self.token_rewards(error, tokens.gene_ids[chosen])
            log_prob, entropy = self._chosen["log_prob"], self._chosen["entropy"]
            loss = loss + self.policy_loss(reward, chosen, log_prob, entropy, tokens.cell, tokens.n_cells)
        return LossOutput(
            loss=loss,
            n_obs_minibatch=int(has.sum()) // self.n_draws,
            extra_metrics={"mse": mse.detach(), "entropy": self._chosen["entropy"][has].mean().detach()},
        )

    def _counts(self, batch: CellBatch, tokens: GeneTokens, chosen, values) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw counts of the chosen tokens (from their log-normalised values) and their cells' library / 10^4."""
        library = tokens.library
        if library is None:  # tokens made without their size factors
            library = batch.x.sum(1) if batch.library is None else batch.library
        scale = library.float().clamp_min(1.0)[tokens.cell[chosen]] / self.target_sum
        return torch.round(torch.expm1(values) * scale).clamp_min(1.0), scale

    def _bins(self, tokens) -> tuple[torch.Tensor, torch.Tensor]:
        """Each token's bin among its cell's values (edges at the cell's quantiles), and each bin's mean value."""
        values, cell, n_cells = tokens.values.float(), tokens.cell, tokens.n_cells
        order = torch.argsort(values, stable=True)
        order = order[torch.argsort(cell[order], stable=True)]  # cell-major, ascending within a cell
        ranked = values[order]
        per_cell = torch.bincount(cell, minlength=n_cells)
        starts = torch.cumsum(per_cell, 0) - per_cell
        q = torch.arange(1, self.n_bins, device=values.device, dtype=torch.float32) / self.n_bins
        position = starts[:, None] + torch.floor(q[None, :] * (per_cell[:, None] - 1).clamp_min(0)).long()
        edges = ranked[position.clamp(max=max(len(ranked) - 1, 0))]  # (cells, n_bins - 1)
        bins = (values[:, None] > edges[cell]).sum(-1)  # ties share a bin
        flat = cell * self.n_bins + bins
        total = torch.zeros(n_cells * self.n_bins, device=values.device).index_add_(0, flat, values)
        count = torch.zeros(n_cells * self.n_bins, device=values.device).index_add_(0, flat, torch.ones_like(values))
        centres = (total / count.clamp_min(1)).reshape(n_cells, self.n_bins)
        return bins, centres

    def metrics(self) -> dict[str, Metric]:
        """Reconstruction error of masked tokens, and the masking distribution's normalised entropy."""
        return {"mse": MeanMetric(), "masking_entropy": MeanMetric()}

    def update_metrics(self, metrics: nn.ModuleDict, loss_output: LossOutput) -> None:
        """Update with the minibatch's values."""
        metrics["mse"].update(loss_output.extra_metrics["mse"])
        metrics["masking_entropy"].update(loss_output.extra_metrics["entropy"])
