"""One progress bar over a whole training run: every step, an ETA, the epoch and the latest figures."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import TQDMProgressBar

#: Logged values shown next to the bar (when logged).
SHOWN = ("train_loss", "validation_loss", "validation_f1_macro", "validation_accuracy")


class RunProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar counting every training step of the run instead of restarting each epoch.

    Lightning's bar (and scvi-tools' per-epoch bar) gives an ETA for the current epoch only, or moves once per
    epoch; this one shows ``Epoch 3/12`` with the steps done over all epochs, the time left for the whole run,
    and the latest training and validation figures. Validation passes get no bar of their own.
    """

    def __init__(self, refresh_rate: int = 1):
        super().__init__(refresh_rate=refresh_rate, leave=False)

    def init_train_tqdm(self, total: int | None = None):
        """The training bar of the whole run (``total`` steps)."""
        import sys

        from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm

        return Tqdm(
            desc="Training",
            total=total,
            position=2 * self.process_position,
            disable=self.is_disabled,
            leave=True,
            dynamic_ncols=True,
            file=sys.stdout,
            smoothing=0,
            bar_format=self.BAR_FORMAT,
        )

    def on_train_start(self, trainer, pl_module) -> None:
        """One bar for the run, sized to every step of every epoch."""
        total = trainer.estimated_stepping_batches
        self.train_progress_bar = self.init_train_tqdm(int(total) if total != float("inf") else None)

    def on_train_epoch_start(self, trainer, *_: Any) -> None:
        """Name the epoch; keep counting steps."""
        self.train_progress_bar.set_description(f"Epoch {trainer.current_epoch + 1}/{trainer.max_epochs}")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        """Advance by the run's step count."""
        n = trainer.global_step
        if self._should_update(n, self.train_progress_bar.total or n):
            self.train_progress_bar.n = n
            self.train_progress_bar.set_postfix(self._shown(trainer, pl_module), refresh=True)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        """Show the epoch's figures."""
        self.train_progress_bar.set_postfix(self._shown(trainer, pl_module), refresh=True)

    def on_validation_start(self, trainer, pl_module) -> None:
        """No separate bar for validation passes (they are short); the main bar shows their figures."""

    def on_validation_batch_start(self, *args: Any, **kwargs: Any) -> None:
        """No validation bar."""

    def on_validation_batch_end(self, *args: Any, **kwargs: Any) -> None:
        """No validation bar."""

    def on_validation_end(self, trainer, pl_module) -> None:
        """Show the validation figures on the main bar."""
        self.reset_dataloader_idx_tracker()
        if self._train_progress_bar is not None and trainer.state.fn == "fit":
            self.train_progress_bar.set_postfix(self._shown(trainer, pl_module), refresh=True)

    def _shown(self, trainer, pl_module) -> dict[str, str]:
        metrics = self.get_metrics(trainer, pl_module)
        short = {"train_loss": "loss", "validation_loss": "val_loss", "validation_f1_macro": "val_F1"}
        short["validation_accuracy"] = "val_acc"
        return {short[k]: metrics[k] for k in SHOWN if k in metrics}
