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

    Which tokens are masked (``mask_ratio`` of each cell's tokens, at least one):

    ``"uniform"``
        uniformly at random, as in most transformer foundation models.
    ``"mam"``
        Multinomial Attention Masking: ``n_latents`` trainable latent vectors cross-attend to the cell's gene
        tokens (their embeddings, gene identity and value, detached from the encoder's graph); the best
        latent score of each token, bounded by ``max_logit * tanh(.)``, is its logit in a multinomial over the
        cell's tokens, from which positions are drawn without replacement (Gumbel top-k). Sampling is not
        differentiable; the policy is trained by a score-function (REINFORCE) estimator to *raise* the
        reconstruction error of what it masks (reward: a cell's mean squared error on its masked tokens,
        minus a moving-average baseline; the target's loss for other targets), while the encoder learns to lower it: the masking seeks the
        positions the encoder finds hardest. Collapse onto a few genes is prevented twice: the bounded logits
        keep every token's probability within ``exp(2 * max_logit)`` of any other's, and an entropy bonus
        (``entropy_weight``, on the entropy normalised by its maximum, ``log`` of the cell's token count)
        rewards spread.

    Parameters
    ----------
    d_model
        Width of the token states.
    masking
        ``"uniform"`` or ``"mam"``.
    mask_ratio
        Share of each cell's gene tokens masked.
    n_latents
        MAM's latent vectors.
    max_logit
        Bound on MAM's logits.
    entropy_weight
        Weight of MAM's entropy bonus.
    baseline_momentum
        Momentum of the reward's moving-average baseline.
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
    >>> objective = MaskedExpression(16, masking="mam", mask_ratio=0.25)
    >>> cell = torch.tensor([0, 0, 0, 0, 1, 1])
    >>> chosen, logp, entropy = objective.choose(torch.randn(6, 16), cell, n_cells=2)
    >>> chosen.tolist()[:4].count(True), chosen.tolist()[4:].count(True)  # a quarter of 4, at least one of 2
    (1, 1)
    """

    name = "masked_expression"
    progress_metric = "mse"
    MASKINGS = ("uniform", "mam")
    TARGETS = ("log_expression", "counts", "bins")

    def __init__(
        self,
        d_model: int,
        *,
        masking: str = "uniform",
        mask_ratio: float = 0.15,
        n_latents: int = 8,
        max_logit: float = 3.0,
        entropy_weight: float = 0.1,
        baseline_momentum: float = 0.9,
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
        if target == "bins" and n_bins < 2:
            raise ValueError(f"n_bins must be at least 2, got {n_bins}.")
        self.target, self.n_bins = target, int(n_bins)
        if not 0 < mask_ratio < 1:
            raise ValueError(f"mask_ratio must be between 0 and 1 (exclusive), got {mask_ratio}.")
        self.masking, self.mask_ratio = masking, float(mask_ratio)
        self.max_logit, self.entropy_weight, self.baseline_momentum = max_logit, entropy_weight, baseline_momentum
        self.masked_value = nn.Parameter(torch.zeros(d_model))
        self.head = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, self.n_bins if target == "bins" else 1))
        self.latents = self.query = self.key = None
        if masking == "mam":
            self.latents = nn.Parameter(torch.randn(n_latents, d_model) / d_model**0.5)
            self.query = nn.Linear(d_model, d_model, bias=False)
            self.key = nn.Linear(d_model, d_model, bias=False)
        self.register_buffer("baseline", torch.zeros(()))
        self.register_buffer("baseline_set", torch.zeros((), dtype=torch.bool))
        self._chosen: dict[str, torch.Tensor] = {}

    # ---------------------------------------------------------------- policy
    def logits(self, states: torch.Tensor) -> torch.Tensor:
        """MAM's bounded logit of each token ``(n_tokens,)`` from its embedding (zeros for uniform masking)."""
        if self.latents is None:
            return states.new_zeros(states.shape[0])
        scores = self.key(states) @ self.query(self.latents).T / states.shape[-1] ** 0.5  # (tokens, latents)
        return self.max_logit * torch.tanh(scores.amax(-1) / self.max_logit)

    @staticmethod
    def log_probabilities(logits: torch.Tensor, cell: torch.Tensor, n_cells: int) -> torch.Tensor:
        """Log-probability of each token in its cell's multinomial (a softmax of ``logits`` within each cell)."""
        peak = torch.zeros(n_cells, device=logits.device).scatter_reduce(0, cell, logits, "amax", include_self=False)
        total = torch.zeros(n_cells, device=logits.device).index_add_(0, cell, torch.exp(logits - peak[cell]))
        return logits - peak[cell] - torch.log(total[cell])

    def choose(
        self, states: torch.Tensor, cell: torch.Tensor, n_cells: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tokens to mask, and per cell the log-probability of the choice and the normalised entropy.

        Parameters
        ----------
        states
            ``(n_tokens, d_model)`` token embeddings (cell-major, as packed by the tokenizer).
        cell
            ``(n_tokens,)`` cell of each token.
        n_cells
            Cells in the minibatch.

        Returns
        -------
        ``chosen`` (bool per token), ``log_prob`` and ``entropy`` (per cell; zeros for uniform masking).
        """
        logits = self.logits(states.detach()).float()
        per_cell = torch.bincount(cell, minlength=n_cells)
        k = torch.clamp(torch.round(per_cell.float() * self.mask_ratio), min=1).long()
        k = torch.minimum(k, per_cell)
        # Gumbel top-k within each cell: a sample without replacement from softmax(logits) over its tokens
        gumbel = -torch.log(-torch.log(torch.rand_like(logits).clamp(1e-10, 1 - 1e-10)))
        order = torch.argsort(logits + gumbel, descending=True, stable=True)
        order = order[torch.argsort(cell[order], stable=True)]  # cell-major, best first within a cell
        starts = torch.cumsum(per_cell, 0) - per_cell
        rank = torch.empty_like(order)
        rank[order] = torch.arange(len(order), device=order.device) - starts[cell[order]]
        chosen = rank < k[cell]
        log_p = self.log_probabilities(logits, cell, n_cells)
        log_prob = torch.zeros(n_cells, device=logits.device).index_add_(0, cell, log_p * chosen)
        entropy = -torch.zeros(n_cells, device=logits.device).index_add_(0, cell, log_p.exp() * log_p)
        entropy = entropy / torch.log(per_cell.clamp(min=2).float())
        return chosen, log_prob, entropy

    # ------------------------------------------------------------ objective
    def read(self, views: EncoderViews):
        """The masked view of the minibatch: the chosen tokens' values hidden, every gene token's final state."""

        def hide(identity: torch.Tensor, value: torch.Tensor, tokens: GeneTokens) -> torch.Tensor:
            states = identity + value
            chosen, log_prob, entropy = self.choose(states, tokens.cell, tokens.n_cells)
            self._chosen = {"chosen": chosen, "log_prob": log_prob, "entropy": entropy}
            return torch.where(chosen[:, None], (identity + self.masked_value).to(states.dtype), states)

        return views.view(self.name, token_dropout=views.token_dropout, token_hook=hide, return_hidden=True)

    def loss(self, views: EncoderViews, batch: CellBatch) -> LossOutput:
        """The target's loss on the masked tokens, plus MAM's policy loss (REINFORCE with an entropy bonus)."""
        outputs = self.read(views)
        tokens, hidden = outputs.tokens, outputs.hidden
        chosen = self._chosen["chosen"]
        if not chosen.any():  # no expressed gene in the minibatch: no signal, keep the graph
            zero = hidden.sum() * 0.0
            return LossOutput(
                loss=zero, n_obs_minibatch=0, extra_metrics={"mse": zero.detach(), "entropy": zero.detach()}
            )
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
        cells = tokens.cell[chosen]
        n_cells = tokens.n_cells
        per_cell = torch.zeros(n_cells, device=error.device).index_add_(0, cells, error.detach().float())
        count = torch.bincount(cells, minlength=n_cells).float()
        has = count > 0
        reward = per_cell[has] / count[has]
        if self.latents is not None and self.training:
            if not bool(self.baseline_set):
                self.baseline.copy_(reward.mean())
                self.baseline_set.fill_(True)
            advantage = reward - self.baseline
            policy = -(advantage * self._chosen["log_prob"][has]).mean()
            policy = policy - self.entropy_weight * self._chosen["entropy"][has].mean()
            loss = loss + policy
            self.baseline.mul_(self.baseline_momentum).add_((1 - self.baseline_momentum) * reward.mean())
        return LossOutput(
            loss=loss,
            n_obs_minibatch=int(has.sum()),
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
