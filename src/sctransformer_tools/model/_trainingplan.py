"""Lightning training for the classifier: loss, accuracy and macro-F1 per split, warm-up + cosine schedule."""

from __future__ import annotations

import copy
import math

import lightning.pytorch as pl
import torch
from scvi import REGISTRY_KEYS
from scvi.module.base import BaseModuleClass
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score


class SCTransformerTrainingPlan(pl.LightningModule):
    """Train an :class:`~sctransformer_tools.module.SCTransformerModule` as a cell-type classifier.

    Logs ``{train,validation}_loss``, ``_accuracy`` and ``_f1_macro`` per epoch (into ``model.history``).
    Unlabelled cells (label code ``n_labels``) are ignored by the loss and the metrics.

    Parameters
    ----------
    module
        The network.
    lr
        Peak learning rate of AdamW.
    weight_decay
        AdamW weight decay, applied to matrices only (not to norms, biases or the CLS vector).
    warmup_fraction
        Fraction of the training steps with a linear learning-rate warm-up; a cosine decay to
        ``min_lr_ratio * lr`` follows.
    min_lr_ratio
        Final learning rate as a fraction of ``lr``.
    gradient_clip
        Clip the gradient norm to this value (``None``: no clipping).
    """

    def __init__(
        self,
        module: BaseModuleClass,
        *,
        lr: float = 2e-3,
        weight_decay: float = 0.05,
        warmup_fraction: float = 0.05,
        min_lr_ratio: float = 0.05,
        gradient_clip: float | None = 1.0,
    ):
        super().__init__()
        self.module = module
        self.lr, self.weight_decay = lr, weight_decay
        self.warmup_fraction, self.min_lr_ratio = warmup_fraction, min_lr_ratio
        self.gradient_clip = gradient_clip
        n = module.n_labels
        self.metrics = torch.nn.ModuleDict(
            {
                f"{split}_{name}": metric
                for split in ("train", "validation")
                for name, metric in (
                    ("accuracy", MulticlassAccuracy(n, average="micro", ignore_index=n)),
                    ("f1_macro", MulticlassF1Score(n, average="macro", ignore_index=n)),
                )
            }
        )

    def forward(self, *args, **kwargs):
        """Pass through to the module."""
        return self.module(*args, **kwargs)

    def _step(self, batch: dict[str, torch.Tensor], split: str) -> torch.Tensor:
        _, _, out = self.module(batch)
        labels = batch[REGISTRY_KEYS.LABELS_KEY].reshape(-1).long()
        preds = out.logits.argmax(-1)
        n_labelled = max(out.n_obs_minibatch, 1)
        self.log(f"{split}_loss", out.loss, on_step=False, on_epoch=True, batch_size=n_labelled, prog_bar=True)
        for name in ("accuracy", "f1_macro"):
            metric = self.metrics[f"{split}_{name}"]
            metric.update(preds, labels)
            self.log(f"{split}_{name}", metric, on_step=False, on_epoch=True, prog_bar=name == "f1_macro")
        return out.loss

    def training_step(self, batch, batch_idx):
        """One optimisation step."""
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        """Validation metrics."""
        self._step(batch, "validation")

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        """Clip the global gradient norm."""
        if self.gradient_clip:
            self.clip_gradients(optimizer, gradient_clip_val=self.gradient_clip, gradient_clip_algorithm="norm")

    def configure_optimizers(self):
        """AdamW with linear warm-up and cosine decay, stepped per minibatch."""
        decay, no_decay = [], []
        for name, param in self.module.named_parameters():
            if not param.requires_grad:
                continue
            (decay if param.ndim >= 2 and "embedding" not in name else no_decay).append(param)
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.lr,
        )
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup = max(int(self.warmup_fraction * total), 1)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min((step - warmup) / max(total - warmup, 1), 1.0)
            return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class RestoreBestWeights(pl.Callback):
    """Keep the module weights of the best validation epoch in memory; restore them if training stopped early.

    A run that early stopping ended restores the best epoch; a run that reached its last epoch keeps
    its final weights (the learning rate has annealed by then). ``only_if_stopped=False`` always restores.

    Parameters
    ----------
    monitor
        Logged metric to watch.
    mode
        ``"min"`` or ``"max"``.
    """

    def __init__(self, monitor: str = "validation_loss", mode: str = "min", only_if_stopped: bool = True):
        super().__init__()
        self.monitor, self.mode, self.only_if_stopped = monitor, mode, only_if_stopped
        self.restored = False
        self.best: float | None = None
        self.best_epoch: int | None = None
        self._state: dict | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Remember the weights if the monitored value improved."""
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.monitor])
        better = self.best is None or (value < self.best if self.mode == "min" else value > self.best)
        if better and math.isfinite(value):
            self.best, self.best_epoch = value, trainer.current_epoch
            self._state = copy.deepcopy({k: v.detach().cpu() for k, v in pl_module.module.state_dict().items()})

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Load the best weights back (if early stopping ended the run, unless ``only_if_stopped=False``)."""
        from lightning.pytorch.callbacks import EarlyStopping

        stopped = any(isinstance(c, EarlyStopping) and c.stopped_epoch > 0 for c in trainer.callbacks)
        if self._state is not None and (stopped or not self.only_if_stopped):
            pl_module.module.load_state_dict(self._state)
            self.restored = True
