"""Cell-type classification: a linear classifier on the cell embedding, trained on labelled cells."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from scvi.module.base import LossOutput
from torch import nn
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from ._batch import CellBatch
from ._objective import EncoderViews, Objective


class CellTypeClassification(Objective):
    """Cross-entropy of a linear classifier on the cell embedding, over labelled cells.

    Label code ``n_labels`` marks unlabelled cells: they take no part in the loss or the metrics. The
    classifier reads the augmented view (token dropout), as every objective that trains it does.

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

    Examples
    --------
    >>> import torch
    >>> from sctransformer_tools.module import CellTypeClassification
    >>> head = CellTypeClassification(8, 3)
    >>> head.logits(torch.zeros(5, 8)).shape
    torch.Size([5, 3])
    """

    name = "classification"
    progress_metric = "f1_macro"
    needs_labels = True

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

    def logits(self, embedding: torch.Tensor) -> torch.Tensor:
        """Logits ``(cells, n_labels)`` of cell embeddings."""
        return self.linear(embedding)

    def loss(self, views: EncoderViews, batch: CellBatch) -> LossOutput:
        """Cross-entropy over labelled cells (a minibatch without labelled cells gives a zero loss)."""
        labels = batch.labels
        labelled = labels < self.n_labels
        if not labelled.any():  # nothing to learn here: skip the encoder pass (other objectives may need it)
            zero = self.linear.weight.sum() * 0.0
            return LossOutput(
                loss=zero, n_obs_minibatch=0, logits=torch.zeros(0, self.n_labels), true_labels=labels[:0]
            )
        views.augmented()
        logits = views.logits("augmented")
        loss = F.cross_entropy(
            logits[labelled],
            labels[labelled],
            weight=self.class_weights.to(logits.dtype),
            label_smoothing=self.label_smoothing,
        )
        return LossOutput(
            loss=loss,
            n_obs_minibatch=int(labelled.sum()),
            classification_loss=loss,
            logits=logits[labelled].detach(),
            true_labels=labels[labelled],
        )

    def metrics(self) -> dict[str, Metric]:
        """Accuracy and macro-F1 over labelled cells."""
        n = self.n_labels
        return {
            "accuracy": MulticlassAccuracy(n, average="micro"),
            "f1_macro": MulticlassF1Score(n, average="macro"),
        }

    def update_metrics(self, metrics: nn.ModuleDict, loss_output: LossOutput) -> None:
        """Update with the minibatch's predictions."""
        if len(loss_output.true_labels) == 0:
            return
        preds = loss_output.logits.argmax(-1)
        for metric in metrics.values():
            metric.update(preds, loss_output.true_labels)
