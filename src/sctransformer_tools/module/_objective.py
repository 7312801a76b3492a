"""The objective contract: what an objective gets from the encoder, and what it gives the training plan.

An :class:`Objective` owns its head(s), reads the encoder through :class:`EncoderViews` and returns a
:class:`~scvi.module.base.LossOutput`; the training plan adds the losses of the objectives it trains, each with
its weight. The encoder itself computes nothing task-specific: a cell embedding, the gene tokens and, on
request, the gene tokens' final states. Objectives never call the module's private methods and the module
never special-cases an objective.

A training step reads each *view* of the minibatch once: ``views.augmented()`` (token dropout, gradients: what
the classifier trains on), ``views.teacher()`` (every token, no gradients: the targets of self-training) and
named views an objective defines with its own token hook (the masked tokens of masked expression). Objectives
that read the same view share one pass of the encoder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from scvi.module.base import LossOutput
from torch import nn
from torchmetrics import Metric

from ._batch import CellBatch
from ._tokenizer import GeneTokens

#: ``hook(identity, value, tokens) -> gene token inputs``: what an objective changes in what the encoder reads.
TokenHook = Callable[[torch.Tensor, torch.Tensor, GeneTokens], torch.Tensor]


@dataclass
class EncoderOutput:
    """One reading of a minibatch by the encoder.

    Attributes
    ----------
    embedding
        ``(cells, d_model)`` the cell embeddings (the normalised final CLS states).
    tokens
        The gene tokens the encoder read (:class:`~sctransformer_tools.module.GeneTokens`).
    hidden
        ``(gene tokens, d_model)`` final state of every gene token, when asked for.
    attention
        Per layer, the attention weights, when asked for (see
        :meth:`~sctransformer_tools.module.SCTransformerModule.encode`).
    layers
        Per layer, the ``(cells + gene tokens, d_model)`` states after the block, when asked for.
    """

    embedding: torch.Tensor
    tokens: GeneTokens
    hidden: torch.Tensor | None = None
    attention: list | None = None
    layers: list[torch.Tensor] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class EncoderViews:
    """The encoder's readings of one minibatch, shared by the objectives of a training step.

    Parameters
    ----------
    encode
        ``encode(batch, token_dropout=..., token_hook=..., return_hidden=...) -> EncoderOutput``.
    batch
        The minibatch.
    token_dropout
        Share of each cell's expressed genes the augmented view drops (0 outside training).
    classify
        ``classify(embedding) -> logits`` of the cell-type classifier, when the model has one.
    """

    def __init__(
        self,
        encode: Callable[..., EncoderOutput],
        batch: CellBatch,
        token_dropout: float,
        classify: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        self._encode, self.batch, self.token_dropout, self._classify = encode, batch, token_dropout, classify
        self._views: dict[str, EncoderOutput] = {}
        self._logits: dict[str, torch.Tensor] = {}

    def view(self, name: str, *, token_dropout: float = 0.0, grad: bool = True, **encode_kwargs) -> EncoderOutput:
        """The reading ``name`` of the minibatch (computed on first use with ``encode_kwargs``, then shared)."""
        if name not in self._views:
            with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
                self._views[name] = self._encode(self.batch, token_dropout=token_dropout, **encode_kwargs)
        return self._views[name]

    def augmented(self) -> EncoderOutput:
        """Every cell read with token dropout (while training), with gradients."""
        return self.view("augmented", token_dropout=self.token_dropout)

    def teacher(self) -> EncoderOutput:
        """Every cell read whole (no token dropout), without gradients: targets for self-training."""
        return self.view("teacher", grad=False)

    def logits(self, name: str = "augmented") -> torch.Tensor:
        """The cell-type classifier's logits on the view ``name`` (which must have been read)."""
        if self._classify is None:
            raise ValueError("This model has no cell-type classifier.")
        if name not in self._logits:
            view = self._views[name]
            with torch.set_grad_enabled(torch.is_grad_enabled() and view.embedding.requires_grad):
                self._logits[name] = self._classify(view.embedding)
        return self._logits[name]


class Objective(nn.Module):
    """A training objective of the encoder: its head(s), its loss, the metrics it logs.

    Subclasses set :attr:`name` and implement :meth:`loss`; they may log metrics per split (:meth:`metrics`,
    :meth:`update_metrics`). :attr:`needs_labels` objectives learn only from labelled cells; the others read
    every cell, so training composes them with the classifier to learn from unlabelled cells too.
    """

    #: Key of the objective in ``module.objectives``.
    name: ClassVar[str] = ""
    #: Logged metric shown on the progress bar (without the ``train_`` / ``validation_`` prefix).
    progress_metric: ClassVar[str | None] = None
    #: Whether the objective reads labels (and so learns nothing from unlabelled cells).
    needs_labels: ClassVar[bool] = False

    def loss(self, views: EncoderViews, batch: CellBatch) -> LossOutput:
        """The objective's loss on a minibatch."""
        raise NotImplementedError

    def metrics(self) -> dict[str, Metric]:
        """Fresh metrics for one split (logged as ``{split}_{name}``)."""
        return {}

    def update_metrics(self, metrics: nn.ModuleDict, loss_output: LossOutput) -> None:
        """Update ``metrics`` (made by :meth:`metrics`) with a minibatch."""
