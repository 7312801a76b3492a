"""Learning the classifier from unlabelled cells: confident pseudo-labels, and consistency under token dropout.

Both objectives compare the classifier's reading of a cell *whole* (every expressed gene, no gradient: the
teacher) with its reading of the same cell with a share of its genes dropped (the augmented view the
classifier trains on), on unlabelled cells only (labelled cells have their own loss). They follow FixMatch
(Sohn et al. 2020: hard pseudo-labels above a confidence threshold) and UDA (Xie et al. 2020: the teacher's
sharpened distribution), with dropped gene tokens as the augmentation.

With few labels the classifier's calls drift to some types and away from others, and self-training amplifies
the drift (on pbmc3k with 1% of the labels, plain pseudo-labels ended calling no cell naive CD4 T). Both
therefore align the teacher's distribution (ReMixMatch's distribution alignment, Berthelot et al. 2020): its
probabilities are multiplied by the class frequencies of the labelled cells over the running mean of its
own predictions on unlabelled cells, and renormalised, so that the calls on unlabelled cells keep the labelled
cells' proportions on average.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scvi.module.base import LossOutput
from torch import nn
from torchmetrics import MeanMetric, Metric

from ._batch import CellBatch
from ._objective import EncoderViews, Objective


class _FromUnlabelled(Objective):
    """Shared by the two: the unlabelled cells of a minibatch and the teacher's probabilities for them."""

    def __init__(self, n_labels: int, *, threshold: float, align: bool = True, momentum: float = 0.99):
        super().__init__()
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"threshold is a probability in [0, 1), got {threshold}.")
        self.n_labels, self.threshold = n_labels, float(threshold)
        self.align, self.momentum = bool(align), float(momentum)
        # running class frequencies of the labelled cells, and running mean of the teacher on unlabelled cells
        self.register_buffer("labelled_prior", torch.full((n_labels,), 1.0 / n_labels))
        self.register_buffer("predicted", torch.full((n_labels,), 1.0 / n_labels))

    def _teacher(self, views: EncoderViews, batch: CellBatch):
        unlabelled = batch.labels >= self.n_labels
        views.teacher()
        probs = torch.softmax(views.logits("teacher").float()[unlabelled], -1)
        if self.align and self.training:
            labels = batch.labels[~unlabelled]
            if len(labels):
                counts = torch.bincount(labels, minlength=self.n_labels).float()
                self.labelled_prior.mul_(self.momentum).add_((1 - self.momentum) * counts / counts.sum())
            if len(probs):
                self.predicted.mul_(self.momentum).add_((1 - self.momentum) * probs.mean(0).detach())
        if self.align and len(probs):
            probs = probs * (self.labelled_prior / self.predicted.clamp_min(1e-6))
            probs = probs / probs.sum(-1, keepdim=True)
        return unlabelled, probs

    @staticmethod
    def _empty(views: EncoderViews) -> LossOutput:
        zero = views.batch.x.new_zeros(()).requires_grad_()
        return LossOutput(loss=zero, n_obs_minibatch=0, extra_metrics={"confident_share": zero.detach()})

    def metrics(self) -> dict[str, Metric]:
        """Share of the unlabelled cells the teacher is confident about."""
        return {"confident_share": MeanMetric()}

    def update_metrics(self, metrics: nn.ModuleDict, loss_output: LossOutput) -> None:
        """Update with the minibatch's share (minibatches without unlabelled cells are skipped)."""
        if loss_output.n_obs_minibatch:
            metrics["confident_share"].update(loss_output.extra_metrics["confident_share"])


#: Largest weight ``PseudoLabels(balance=True)`` gives a pseudo-label of a rarely called type (the mean weight is 1).
MAX_BALANCE_WEIGHT = 10.0


class PseudoLabels(_FromUnlabelled):
    """Self-training: an unlabelled cell the teacher calls with probability >= ``threshold`` trains the
    classifier's augmented view towards that call (cross-entropy, averaged over all unlabelled cells).

    Parameters
    ----------
    n_labels
        Number of cell types.
    threshold
        Confidence above which the teacher's (aligned) call is a pseudo-label.
    align
        Align the teacher's distribution to the labelled cells' class frequencies (module docstring).
    momentum
        Momentum of the running class frequencies and mean prediction.
    balance
        Weigh each confident call by the inverse of its type's running share of the confident calls, so that
        every called type pulls equally on what is trained (at most :data:`MAX_BALANCE_WEIGHT` times the mean),
        instead of the most frequent types dominating and drawing borderline cells of rare types into themselves
        (class-balanced self-training; Zou et al. 2018 balance by per-type thresholds to the same end). It pulls
        the calls towards equal numbers per type, which harms a query dominated by one type: query models do not
        use it by default.

    Examples
    --------
    >>> from sctransformer_tools.module import PseudoLabels
    >>> PseudoLabels(5, threshold=0.8).name
    'pseudo_labels'
    """

    name = "pseudo_labels"

    def __init__(
        self,
        n_labels: int,
        *,
        threshold: float = 0.8,
        align: bool = True,
        momentum: float = 0.99,
        balance: bool = False,
    ):
        super().__init__(n_labels, threshold=threshold, align=align, momentum=momentum)
        self.balance = bool(balance)
        # running share of each type among the confident calls (bias-corrected: divided by 1 - momentum**steps);
        # state of one training run, not saved with the model
        self.register_buffer("called_share", torch.zeros(n_labels), persistent=False)
        self.register_buffer("called_steps", torch.zeros(()), persistent=False)

    def _balance_weights(self, target: torch.Tensor, confident: torch.Tensor) -> torch.Tensor:
        """Per cell: ``1 / (types called * share of its type)`` from the running shares, at most the cap."""
        if self.training and confident.any():
            counts = torch.bincount(target[confident], minlength=self.n_labels).float()
            self.called_share.mul_(self.momentum).add_((1 - self.momentum) * counts / counts.sum())
            self.called_steps.add_(1)
        if self.called_steps.item() == 0:
            return torch.ones_like(target, dtype=torch.float32)
        share = self.called_share / (1 - self.momentum**self.called_steps)
        called = share > 0
        weights = torch.where(called, 1.0 / (called.sum() * share.clamp_min(1e-12)), torch.zeros_like(share))
        return weights.clamp(max=MAX_BALANCE_WEIGHT)[target]

    def loss(self, views: EncoderViews, batch: CellBatch) -> LossOutput:
        """Cross-entropy towards confident teacher calls (weighted by type with ``balance``)."""
        unlabelled, probs = self._teacher(views, batch)
        if not unlabelled.any():
            return self._empty(views)
        confidence, target = probs.max(-1)
        confident = confidence >= self.threshold
        weights = confident.float()
        if self.balance:
            weights = weights * self._balance_weights(target, confident)
        views.augmented()
        logits = views.logits("augmented")[unlabelled].float()
        loss = (F.cross_entropy(logits, target, reduction="none") * weights).mean()
        share = confident.float().mean()
        return LossOutput(loss=loss, n_obs_minibatch=int(unlabelled.sum()), extra_metrics={"confident_share": share})


class Consistency(_FromUnlabelled):
    """Consistency under token dropout: the augmented view's distribution is pulled towards the teacher's,
    sharpened by ``temperature``, on unlabelled cells the teacher is at least ``threshold`` sure of (UDA).

    Parameters
    ----------
    n_labels
        Number of cell types.
    threshold
        Confidence below which a cell is left out.
    temperature
        Sharpening of the teacher's distribution (below 1: sharper).
    align, momentum
        As in :class:`PseudoLabels`.

    Examples
    --------
    >>> from sctransformer_tools.module import Consistency
    >>> Consistency(5).name
    'consistency'
    """

    name = "consistency"

    def __init__(
        self,
        n_labels: int,
        *,
        threshold: float = 0.5,
        temperature: float = 0.5,
        align: bool = True,
        momentum: float = 0.99,
    ):
        super().__init__(n_labels, threshold=threshold, align=align, momentum=momentum)
        self.temperature = float(temperature)

    def loss(self, views: EncoderViews, batch: CellBatch) -> LossOutput:
        """KL divergence from the teacher's sharpened distribution to the augmented view's."""
        unlabelled, probs = self._teacher(views, batch)
        if not unlabelled.any():
            return self._empty(views)
        confident = probs.max(-1).values >= self.threshold
        sharp = torch.softmax(torch.log(probs.clamp_min(1e-12)) / self.temperature, -1)
        views.augmented()
        log_q = F.log_softmax(views.logits("augmented")[unlabelled].float(), -1)
        kl = (sharp * (torch.log(sharp.clamp_min(1e-12)) - log_q)).sum(-1)
        loss = (kl * confident).mean()
        share = confident.float().mean()
        return LossOutput(loss=loss, n_obs_minibatch=int(unlabelled.sum()), extra_metrics={"confident_share": share})
