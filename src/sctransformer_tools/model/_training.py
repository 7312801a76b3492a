"""Training: a stratified validation split, Lightning through scvi-tools, one line of summary."""

from __future__ import annotations

import contextlib
import logging
import time
import warnings

import numpy as np
from scvi import REGISTRY_KEYS
from scvi.model._utils import use_distributed_sampler  # the rule scvi-tools' Trainer applies too

from sctransformer_tools._data import stratified_split
from sctransformer_tools.module import CellTypeClassification

from ._precision import choose_precision
from ._progress import RunProgressBar
from ._quiet import quiet_training
from ._trainingplan import RestoreBestWeights

logger = logging.getLogger(__name__)

#: Epochs of ``train`` by default on data of a few thousand cells or more ...
MIN_EPOCHS = 8
#: ... and at least this many optimiser steps on smaller data (more epochs, up to :data:`MAX_AUTO_EPOCHS`).
MIN_STEPS = 600
MAX_AUTO_EPOCHS = 50
#: Cells per minibatch of ``train``.
DEFAULT_BATCH_SIZE = 32


def default_max_epochs(n_train_cells: int, batch_size: int = DEFAULT_BATCH_SIZE) -> int:
    """Epochs of ``train(max_epochs=None)``: 8, or enough for :data:`MIN_STEPS` steps on small data (at most 50).

    Measured on pbmc3k (``benchmarks/annotation_speed.py``): 8 epochs at batch 32 reach the held-out macro-F1
    that 30 epochs at batch 64 reached, in about a quarter of the time. A small reference (a few hundred
    cells) has few steps per epoch, so it trains for more epochs, which cost little there.

    Examples
    --------
    >>> from sctransformer_tools.model._training import default_max_epochs
    >>> default_max_epochs(2_374), default_max_epochs(350), default_max_epochs(50_000)
    (8, 50, 8)
    """
    steps = max(-(-n_train_cells // batch_size), 1)
    return int(min(MAX_AUTO_EPOCHS, max(MIN_EPOCHS, -(-MIN_STEPS // steps))))


#: Below this validation macro-F1, ``train`` warns that the model's calls are not to be trusted.
POOR_MACRO_F1 = 0.5


@contextlib.contextmanager
def _restoring_grad(params: list):
    """Make ``params`` trainable again on leaving, however the block ends."""
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


class TrainingMixin:
    """``train``: fit the module's classification objective on the labelled cells."""

    def train(
        self,
        max_epochs: int | None = None,
        *,
        lr: float = 2e-3,
        batch_size: int = DEFAULT_BATCH_SIZE,
        train_size: float = 0.9,
        weight_averaging: bool = True,
        early_stopping: bool = False,
        early_stopping_patience: int = 8,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        precision: str | None = "auto",
        seed: int | None = None,
        enable_progress_bar: bool = True,
        plan_kwargs: dict | None = None,
        datasplitter_kwargs: dict | None = None,
        **trainer_kwargs,
    ) -> None:
        """Train the cell-type classifier, with a progress bar, validation metrics and weight averaging.

        A stratified share ``1 - train_size`` of the labelled cells of every cell type is held out for
        validation (each type with >= 2 cells gets at least one). The learning rate warms up, then follows
        a cosine decay over ``max_epochs``. By default the model keeps an exponential moving average of its
        weights (from epoch ``max_epochs // 6``), validates with it and ends with it. With
        ``early_stopping=True`` training instead stops when the validation loss has not improved for
        ``early_stopping_patience`` epochs and the weights of the best validation epoch are restored. At the
        end, a temperature that calibrates confidences and the novelty model behind "Unknown" calls are
        fitted (see :meth:`predict`), and one line reports the validation macro-F1; a warning follows when it
        is poor. ``model.history`` holds loss, accuracy and macro-F1 of both splits per epoch.

        Parameters
        ----------
        max_epochs
            Passes over the training cells; ``None``: 8, or more on small references so that training takes
            at least 600 optimiser steps (:func:`default_max_epochs`).
        lr
            Peak learning rate (AdamW, warm-up then cosine decay).
        batch_size
            Cells per minibatch.
        train_size
            Fraction of labelled cells used for training; the rest validates. ``1.0``: no validation
            (no early stopping, no calibration).
        weight_averaging
            Keep and end with an exponential moving average of the weights (decay 0.99 per step,
            :class:`lightning.pytorch.callbacks.EMAWeightAveraging`). Off when ``early_stopping``.
        early_stopping
            Stop when the validation loss stalls and restore the best epoch's weights.
        early_stopping_patience
            Epochs without improvement before stopping.
        accelerator, devices
            Lightning accelerator and devices. Several devices or machines train data-parallel through
            Lightning's strategies, e.g. ``accelerator="gpu", devices=4, strategy="ddp"`` (or
            ``accelerator="cpu", devices=2, strategy="ddp"``; in a notebook ``strategy="ddp_notebook"``;
            across machines add ``num_nodes=`` and launch with ``torchrun`` or SLURM). Each process then
            reads its own share of every epoch's cells, so ``batch_size`` is per process.
        precision
            Lightning precision. ``"auto"``: times a few forward and backward passes of this model in float32
            and in bfloat16 autocast on a slice of a training minibatch and picks bf16 only when it is clearly
            faster here (see :mod:`sctransformer_tools.model._precision`); the choice is in
            ``model.precision_``. Weights stay float32 either way.
        seed
            Seed of the split and minibatch order (default: the model's ``seed``).
        enable_progress_bar
            Show one progress bar over all steps of the run, with the time left and the latest figures.
        plan_kwargs
            Passed to :class:`~sctransformer_tools.model.SCTransformerTrainingPlan` (``weight_decay``, ...).
        datasplitter_kwargs
            Passed to :class:`scvi.dataloaders.DataSplitter`.
        **trainer_kwargs
            Passed to the Lightning trainer (:class:`scvi.train.Trainer`); ``gradient_clip_val`` defaults to 1.

        Examples
        --------
        >>> import sctransformer_tools as sct
        >>> adata = sct.ds.pbmc68k_reduced()
        >>> sct.SCTransformer.setup_anndata(adata, labels_key="bulk_labels")
        >>> model = sct.SCTransformer(adata, n_layers=1, d_model=16, n_heads=2, n_top_genes=0)
        >>> model.train(max_epochs=1, enable_progress_bar=False)
        >>> sorted(model.history)[:3]
        ['train_accuracy', 'train_f1_macro', 'train_loss']
        """
        seed = self.init_params_["non_kwargs"].get("seed", 0) if seed is None else seed
        codes = self.adata_manager.get_from_registry(REGISTRY_KEYS.LABELS_KEY).ravel()
        n_labels = self.summary_stats.n_labels
        train_idx, val_idx = stratified_split(codes, train_size, seed, n_labels=n_labels)
        if len(train_idx) == 0:
            raise ValueError("No labelled cells to train on: every value of the labels column is missing.")
        if len(np.unique(codes[train_idx])) < 2:
            raise ValueError("Training needs labelled cells of at least two cell types.")
        if max_epochs is None:
            max_epochs = default_max_epochs(len(train_idx), batch_size)
        start = time.perf_counter()
        self.module.objective = CellTypeClassification.name
        unlabelled = np.flatnonzero(codes >= n_labels)
        self._fit_objective(
            train_idx,
            val_idx,
            unlabelled,
            max_epochs=max_epochs,
            lr=lr,
            batch_size=batch_size,
            weight_averaging=weight_averaging,
            early_stopping=early_stopping,
            early_stopping_patience=early_stopping_patience,
            accelerator=accelerator,
            devices=devices,
            precision=precision,
            seed=seed,
            enable_progress_bar=enable_progress_bar,
            plan_kwargs=plan_kwargs,
            datasplitter_kwargs=datasplitter_kwargs,
            **trainer_kwargs,
        )
        self._fit_confidence_and_novelty(train_idx, val_idx, codes, seed)
        self._report_training(len(train_idx), len(val_idx), time.perf_counter() - start)

    def _fit_objective(
        self,
        train_idx: np.ndarray,
        val_idx: np.ndarray,
        unused_idx: np.ndarray,
        *,
        max_epochs: int,
        lr: float,
        batch_size: int,
        weight_averaging: bool,
        early_stopping: bool,
        early_stopping_patience: int,
        accelerator: str,
        devices,
        precision: str | None,
        seed: int,
        enable_progress_bar: bool,
        plan_kwargs: dict | None,
        datasplitter_kwargs: dict | None,
        adata=None,
        **trainer_kwargs,
    ) -> None:
        """Train ``self.module.objective`` on ``train_idx`` (validating on ``val_idx``) through scvi-tools.

        ``adata``: a registered AnnData to train on instead of the reference (e.g. a pretraining corpus).
        """
        import lightning.pytorch as pl

        pl.seed_everything(seed, verbose=False)
        data = self.adata if adata is None else adata
        has_val = len(val_idx) > 0
        if precision == "auto":
            probe = next(iter(self._make_data_loader(data, indices=train_idx[:batch_size], batch_size=batch_size)))
            self.precision_ = choose_precision(self.module, probe, accelerator)
            precision = self.precision_["precision"]
        else:
            self.precision_ = {"precision": precision}
        plan = self._training_plan_cls(self.module, lr=lr, **(plan_kwargs or {}))
        # several devices/machines (strategy="ddp", ...): every process reads its own share of cells
        distributed = use_distributed_sampler(trainer_kwargs.get("strategy"))
        splitter = self._data_splitter_cls(
            self.get_anndata_manager(data, required=True),
            batch_size=batch_size,
            distributed_sampler=distributed,
            # cells outside both splits (unlabelled) sit in the unused test split: scvi-tools wants every cell
            external_indexing=[train_idx, val_idx, unused_idx],
            **(datasplitter_kwargs or {}),
        )
        callbacks: list[pl.Callback] = list(trainer_kwargs.pop("callbacks", []))
        early_stopping = early_stopping and has_val
        if early_stopping:
            callbacks.append(RestoreBestWeights("validation_loss", "min"))
        elif weight_averaging:
            from lightning.pytorch.callbacks import EMAWeightAveraging

            callbacks.append(EMAWeightAveraging(decay=0.99, update_starting_at_epoch=max_epochs // 6))
        if enable_progress_bar and not any(isinstance(c, pl.callbacks.ProgressBar) for c in callbacks):
            callbacks.append(RunProgressBar())
        trainer_kwargs.setdefault("gradient_clip_val", 1.0)
        self.module.train()  # reading cells (predict, pretrain's end) leaves it in evaluation mode
        # the heads of the other objectives get no gradient: frozen, they stay out of the optimiser (and out of
        # DDP's check that every trainable parameter was used)
        frozen = [
            p
            for name, objective in self.module.objectives.items()
            if name != self.module.objective
            for p in objective.parameters()
            if p.requires_grad
        ]
        for p in frozen:
            p.requires_grad_(False)
        with quiet_training(), _restoring_grad(frozen):
            self._train_runner_cls(
                self,
                training_plan=plan,
                data_splitter=splitter,
                max_epochs=max_epochs,
                accelerator=accelerator,
                devices=devices,
                early_stopping=early_stopping,
                early_stopping_monitor="validation_loss",
                early_stopping_patience=early_stopping_patience,
                check_val_every_n_epoch=1 if has_val else None,
                callbacks=callbacks,
                precision=precision,
                enable_progress_bar=enable_progress_bar,
                simple_progress_bar=False,
                **trainer_kwargs,
            )()
        if isinstance(self.history_, dict):  # logged tensors -> plain floats
            self.history_ = {k: v.astype(float) for k, v in self.history_.items()}

    def _report_training(self, n_train: int, n_val: int, seconds: float) -> None:
        """One line on what was trained and how it validates; a warning when the validation is poor."""
        history = self.history or {}
        epochs = len(history["train_loss"]) if "train_loss" in history else 0

        def last(name: str) -> float | None:
            return float(history[name].iloc[-1].item()) if name in history and len(history[name]) else None

        f1, accuracy = last("validation_f1_macro"), last("validation_accuracy")
        summary = self.mask_summary()
        line = (
            f"Trained SCTransformer ({summary['mask']} mask, {summary['genes']:,} genes, "
            f"{self.summary_stats.n_labels} cell types) for {epochs} epochs on {n_train:,} cells in {seconds:.0f} s "
            f"({self.precision_.get('precision')})"
        )
        if f1 is not None:
            line += f"; validation ({n_val:,} cells): macro-F1 {f1:.3f}, accuracy {accuracy:.3f}."
        else:
            line += "; no validation cells (train_size=1.0)."
        logger.info(line)
        if f1 is not None and f1 < POOR_MACRO_F1:
            warnings.warn(
                f"Validation macro-F1 is {f1:.2f} (accuracy {accuracy:.2f}): the model does not yet tell these cell "
                "types apart, so its calls are not to be trusted. Train longer (max_epochs), check the labels, and "
                "check that every cell type has enough reference cells.",
                UserWarning,
                stacklevel=3,
            )
