"""What the encoder is trained to do: a head on its outputs, a loss and the metrics to log.

:class:`~sctransformer_tools.module.SCTransformerModule` holds its objectives in ``module.objectives`` and trains
the one named by ``module.objective``; the training plan logs that objective's metrics. Cell-type
classification is one objective; a self-supervised one (masked expression) is another subclass of
:class:`Objective` added to ``module.objectives``, with no change to the classification code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from scvi import REGISTRY_KEYS
from scvi.module.base import LossOutput
from torch import nn
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

if TYPE_CHECKING:
    from ._sctransformer import SCTransformerModule


class Objective(nn.Module):
    """A training objective of the encoder.

    Subclasses set :attr:`name` and implement :meth:`loss`; they may ask the encoder for more than the
    cell embedding (:meth:`inference_kwargs`, e.g. to hide some tokens' values and return the gene-token
    states) and name metrics to log per split (:meth:`metrics`, :meth:`update_metrics`).
    """

    #: Key of the objective in ``module.objectives``.
    name: ClassVar[str] = ""
    #: Logged metric shown on the progress bar (without the ``train_`` / ``validation_`` prefix).
    progress_metric: ClassVar[str | None] = None

    def inference_kwargs(self, module: SCTransformerModule, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Extra keyword arguments of :meth:`SCTransformerModule.inference` while this objective trains."""
        return {}

    def loss(
        self, module: SCTransformerModule, tensors: dict[str, torch.Tensor], outputs: dict[str, Any]
    ) -> LossOutput:
        """The loss of a minibatch from the encoder's ``outputs``."""
        raise NotImplementedError

    def metrics(self) -> dict[str, Metric]:
        """Fresh metrics for one split (logged as ``{split}_{name}``)."""
        return {}

    def update_metrics(self, metrics: nn.ModuleDict, loss_output: LossOutput) -> None:
        """Update ``metrics`` (made by :meth:`metrics`) with a minibatch."""


class CellTypeClassification(Objective):
    """Cross-entropy of a linear classifier on the cell embedding, over labelled cells.

    Label code ``n_labels`` marks unlabelled cells: they take no part in the loss or the metrics.

    Parameters
    ----------
    d_model
        Width of the cell embedding.
    n_labels
        Number of cell types.
    label_smoothing
        Label smoothing of the cross-entropy.
    class_weights
        Optional per-class loss weights.
    """

    name = "classification"
    progress_metric = "f1_macro"

    def __init__(
        self,
        d_model: int,
        n_labels: int,
        *,
        label_smoothing: float = 0.1,
        class_weights: Sequence[float] | None = None,
    ):
        super().__init__()
        self.n_labels = n_labels
        self.label_smoothing = label_smoothing
        self.linear = nn.Linear(d_model, n_labels)
        weights = torch.ones(n_labels) if class_weights is None else torch.as_tensor(class_weights)
        self.register_buffer("class_weights", weights.to(torch.float32))  # ones: the plain cross-entropy

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        """Logits ``(cells, n_labels)`` of cell embeddings."""
        return self.linear(embedding)

    def loss(self, module, tensors, outputs) -> LossOutput:
        """Cross-entropy over labelled cells (a minibatch of unlabelled cells only gives a zero loss)."""
        logits = outputs["logits"]
        labels = tensors[REGISTRY_KEYS.LABELS_KEY].reshape(-1).long()
        labelled = labels < self.n_labels
        if labelled.any():
            loss = F.cross_entropy(
                logits,
                labels.clamp(max=self.n_labels - 1).masked_fill(~labelled, -100),
                weight=self.class_weights,
                ignore_index=-100,
                label_smoothing=self.label_smoothing,
            )
        else:  # no signal, but keep the graph
            loss = logits.sum() * 0.0
        return LossOutput(
            loss=loss,
            n_obs_minibatch=int(labelled.sum()),
            classification_loss=loss,
            logits=logits,
            true_labels=labels,
        )

    def metrics(self) -> dict[str, Metric]:
        """Accuracy and macro-F1 over labelled cells."""
        n = self.n_labels
        return {
            "accuracy": MulticlassAccuracy(n, average="micro", ignore_index=n),
            "f1_macro": MulticlassF1Score(n, average="macro", ignore_index=n),
        }

    def update_metrics(self, metrics: nn.ModuleDict, loss_output: LossOutput) -> None:
        """Update with the minibatch's predictions."""
        preds = loss_output.logits.argmax(-1)
        for metric in metrics.values():
            metric.update(preds, loss_output.true_labels)
