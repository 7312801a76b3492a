"""Lightning training of the module's current objective: scvi-tools' training plan with the objective's metrics."""

from __future__ import annotations

import copy
import math

import lightning.pytorch as pl
import torch
from scvi.module.base import BaseModuleClass, LossOutput
from scvi.train import TrainingPlan
from torch import nn


class SCTransformerTrainingPlan(TrainingPlan):
    """scvi-tools' :class:`~scvi.train.TrainingPlan` for an :class:`~sctransformer_tools.module.SCTransformerModule`.

    The steps, loss logging (``train_loss``, ``validation_loss``) and optimizer plumbing are scvi-tools';
    this plan logs the metrics of the objective being trained (``module.objective``; for classification
    ``{train,validation}_accuracy`` and ``_f1_macro``, into ``model.history``) instead of the ELBO terms of
    a VAE, and schedules the learning rate per step: a linear warm-up (:class:`torch.optim.lr_scheduler.LinearLR`)
    then a cosine decay (:class:`~torch.optim.lr_scheduler.CosineAnnealingLR`), chained by
    :class:`~torch.optim.lr_scheduler.SequentialLR`. Gradient clipping is the Trainer's ``gradient_clip_val``.

    Parameters
    ----------
    module
        The network.
    lr
        Peak learning rate of AdamW.
    weight_decay
        AdamW weight decay, applied to matrices only (not to norms, biases, embeddings or the CLS vector).
    warmup_fraction
        Share of the run's steps spent warming the learning rate up.
    min_lr_ratio
        Final learning rate as a fraction of ``lr``.
    **kwargs
        Passed to :class:`scvi.train.TrainingPlan`.
    """

    def __init__(
        self,
        module: BaseModuleClass,
        *,
        lr: float = 2e-3,
        weight_decay: float = 0.05,
        warmup_fraction: float = 0.05,
        min_lr_ratio: float = 0.05,
        **kwargs,
    ):
        self.warmup_fraction, self.min_lr_ratio = warmup_fraction, min_lr_ratio
        super().__init__(
            module, optimizer="Custom", optimizer_creator=self._adamw, lr=lr, weight_decay=weight_decay, **kwargs
        )

    # ---------------------------------------------------------------- metrics
    @property
    def _objective(self):
        return self.module.objectives[self.module.objective]

    def initialize_train_metrics(self):
        """The objective's metrics for the training split."""
        self.train_metrics = nn.ModuleDict(self._objective.metrics())

    def initialize_val_metrics(self):
        """The objective's metrics for the validation split."""
        self.val_metrics = nn.ModuleDict(self._objective.metrics())

    @torch.inference_mode()
    def compute_and_log_metrics(self, loss_output: LossOutput, metrics: nn.ModuleDict, mode: str):
        """Update and log the objective's metrics (``{mode}_{name}``, per epoch)."""
        self._objective.update_metrics(metrics, loss_output)
        for name, metric in metrics.items():
            self.log(
                f"{mode}_{name}",
                metric,
                on_step=False,
                on_epoch=True,
                prog_bar=name == self._objective.progress_metric,
                sync_dist=self.use_sync_dist,
            )

    # ------------------------------------------------------------- optimiser
    def _adamw(self, params) -> torch.optim.Optimizer:
        """AdamW with weight decay on weight matrices only (scvi-tools hands every trainable parameter)."""
        decay, no_decay = [], []
        named = {id(p): n for n, p in self.module.named_parameters()}
        for param in params:
            name = named.get(id(param), "")
            (decay if param.ndim >= 2 and "embedding" not in name else no_decay).append(param)
        return torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.lr,
        )

    def configure_optimizers(self):
        """scvi-tools' optimiser (AdamW here) with a per-step warm-up then cosine decay."""
        optimizer = self.get_optimizer_creator()(p for p in self.module.parameters() if p.requires_grad)
        total = max(int(self.trainer.estimated_stepping_batches), 2)
        warmup = min(max(int(self.warmup_fraction * total), 1), total - 1)
        scheduler = torch.optim.lr_scheduler.SequentialLR(
            optimizer,
            [
                torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1.0 / (warmup + 1), total_iters=warmup),
                torch.optim.lr_scheduler.CosineAnnealingLR(
                    optimizer, T_max=total - warmup, eta_min=self.lr * self.min_lr_ratio
                ),
            ],
            milestones=[warmup],
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class RestoreBestWeights(pl.Callback):
    """Keep the module weights of the best validation epoch in memory; restore them if training stopped early.

    scvi-tools' ``SaveCheckpoint(load_best_on_end=True)`` would write model folders into ``scvi_log/`` and read
    them back with its pickle loader; this callback keeps the best weights in memory instead. A run that early
    stopping ended restores the best epoch; a run that reached its last epoch keeps its final weights (the
    learning rate has annealed by then). ``only_if_stopped=False`` always restores.

    Parameters
    ----------
    monitor
        Logged metric to watch.
    mode
        ``"min"`` or ``"max"``.
    only_if_stopped
        Restore only when early stopping ended the run.
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
