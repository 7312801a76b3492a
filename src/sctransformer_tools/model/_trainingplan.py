"""Lightning training of several objectives at once: scvi-tools' training plan, the objectives' weighted sum."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping

import lightning.pytorch as pl
import torch
from scvi.module.base import BaseModuleClass
from scvi.train import TrainingPlan
from torch import nn

from sctransformer_tools.module import CellBatch


class SCTransformerTrainingPlan(TrainingPlan):
    """scvi-tools' :class:`~scvi.train.TrainingPlan` for an :class:`~sctransformer_tools.module.SCTransformerModule`.

    A step asks the module for the losses of ``objectives`` (:class:`~sctransformer_tools.module.Objective` instances,
    sharing the encoder's readings of the minibatch) and trains their weighted sum (``train_loss``). The first
    objective is the primary one: ``validation_loss`` is its loss on the validation cells (what early stopping
    watches), and its metrics are logged by their own names (for classification
    ``{train,validation}_accuracy`` and ``_f1_macro``, into ``model.history``); the others' metrics and losses
    are logged with the objective's name in front (``train_pseudo_labels_loss``, ...). The optimizer plumbing is
    scvi-tools'; the learning rate follows a per-step schedule: a linear warm-up
    (:class:`torch.optim.lr_scheduler.LinearLR`) then a cosine decay
    (:class:`~torch.optim.lr_scheduler.CosineAnnealingLR`), chained by
    :class:`~torch.optim.lr_scheduler.SequentialLR`. Gradient clipping is the Trainer's ``gradient_clip_val``.

    A minibatch may be a list of minibatches read together (e.g. every training cell and the labelled ones,
    :class:`~scvi.dataloaders.ConcatDataLoader`): they are joined cell-wise.

    Parameters
    ----------
    module
        The network.
    objectives
        ``{objective name: weight}`` of the objectives to train (keys of ``module.objectives``); default:
        classification alone.
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
        objectives: Mapping[str, float] | None = None,
        lr: float = 2e-3,
        weight_decay: float = 0.05,
        warmup_fraction: float = 0.05,
        min_lr_ratio: float = 0.05,
        **kwargs,
    ):
        self.warmup_fraction, self.min_lr_ratio = warmup_fraction, min_lr_ratio
        self.objective_weights = dict(objectives or {"classification": 1.0})
        unknown = set(self.objective_weights) - set(module.objectives)
        if unknown:
            raise ValueError(f"The module has no objective(s) {sorted(unknown)}; it has {list(module.objectives)}.")
        super().__init__(
            module, optimizer="Custom", optimizer_creator=self._adamw, lr=lr, weight_decay=weight_decay, **kwargs
        )

    # ---------------------------------------------------------------- steps
    @property
    def primary(self) -> str:
        """The objective whose loss validates the run."""
        return next(iter(self.objective_weights))

    def _prefix(self, objective: str) -> str:
        return "" if objective == self.primary else f"{objective}_"

    def _step(self, batch, mode: str) -> torch.Tensor:
        cells = CellBatch.from_tensors(batch).n_cells
        losses = self.module(batch, objectives=list(self.objective_weights))
        total = sum(self.objective_weights[name] * out.loss for name, out in losses.items())
        kwargs = {"on_step": False, "on_epoch": True, "batch_size": cells, "sync_dist": self.use_sync_dist}
        self.log(f"{mode}_loss", total if mode == "train" else losses[self.primary].loss, prog_bar=True, **kwargs)
        metrics = self.train_metrics if mode == "train" else self.val_metrics
        for name, out in losses.items():
            if name != self.primary and not out.n_obs_minibatch:
                continue  # nothing for this objective here (e.g. no unlabelled cell among validation cells)
            if len(losses) > 1:
                self.log(f"{mode}_{name}_loss", out.loss, **kwargs)
            objective = self.module.objectives[name]
            own = metrics[name]
            with torch.inference_mode():
                objective.update_metrics(own, out)
            for metric_name, metric in own.items():
                shown = name == self.primary and metric_name == objective.progress_metric
                self.log(f"{mode}_{self._prefix(name)}{metric_name}", metric, prog_bar=shown, **kwargs)
        return total

    def training_step(self, batch, batch_idx):
        """The weighted sum of the objectives' losses on a training minibatch."""
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        """The objectives' losses and metrics on a validation minibatch."""
        self._step(batch, "validation")

    # ---------------------------------------------------------------- metrics
    def _metrics(self) -> nn.ModuleDict:
        return nn.ModuleDict(
            {name: nn.ModuleDict(self.module.objectives[name].metrics()) for name in self.objective_weights}
        )

    def initialize_train_metrics(self):
        """The objectives' metrics for the training split."""
        self.train_metrics = self._metrics()

    def initialize_val_metrics(self):
        """The objectives' metrics for the validation split."""
        self.val_metrics = self._metrics()

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
