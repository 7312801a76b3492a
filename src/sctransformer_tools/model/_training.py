"""Training: a stratified validation split, every cell learned from, Lightning through scvi-tools, one line of summary.

:func:`fit` is the one way the package runs Lightning over a model (``train``, ``pretrain`` and reference
mapping all go through it): it composes the objectives to train with their weights
(:class:`~sctransformer_tools.model.SCTransformerTrainingPlan`), picks the precision, and keeps the heads of the
other objectives frozen.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
from scvi import REGISTRY_KEYS
from scvi.model._utils import use_distributed_sampler  # the rule scvi-tools' Trainer applies too

from sctransformer_tools._data import stratified_split
from sctransformer_tools.module import CellTypeClassification, Consistency, MaskedExpression, PseudoLabels

from ._precision import choose_precision
from ._prediction import fit_confidence_and_novelty
from ._progress import RunProgressBar
from ._quiet import quiet_training
from ._splitter import SemiSupervisedSplitter
from ._trainingplan import RestoreBestWeights

if TYPE_CHECKING:
    from ._model import SCTransformer

logger = logging.getLogger(__name__)

#: Epochs of ``train`` by default on data of a few thousand cells or more ...
MIN_EPOCHS = 8
#: ... and at least this many optimiser steps on smaller data (more epochs). Chosen on validation cells
#: (``benchmarks/semi_supervised.py``, arms "... 300 steps" and "... 150 steps"): with 1-20% of pbmc3k's labels,
#: 300 steps classified as well as 600, in half the time.
MIN_STEPS = 300
#: Cells per minibatch of ``train``.
DEFAULT_BATCH_SIZE = 32
#: What ``train`` adds to the classifier's loss when the reference has unlabelled cells: objectives that read
#: every cell, with their weights. None by default (the unlabelled cells enter through the expression profile, at no
#: cost in training time): chosen on validation cells by ``benchmarks/semi_supervised.py``, whose report
#: (``docs/results/semi_supervised.md``) gives each arm's macro-F1 and training time.
SEMI_SUPERVISED: dict[str, float] = {}


def default_max_epochs(n_train_cells: int, batch_size: int = DEFAULT_BATCH_SIZE, n_read: int | None = None) -> int:
    """Epochs of ``train(max_epochs=None)``: 8, or enough for :data:`MIN_STEPS` optimiser steps on smaller data.

    Measured on pbmc3k (``benchmarks/annotation_speed.py``): 8 epochs at batch 32 reach the held-out macro-F1
    that 30 epochs at batch 64 reached, in about a quarter of the time. A small reference (a few hundred cells, or
    a few labelled cells) has few steps per epoch, so it trains for more epochs, which cost little there.

    With unlabelled cells read too (``n_read`` cells in all, each step reading a minibatch of them and one of the
    ``n_train_cells`` labelled ones), an epoch is a pass over all ``n_read`` cells: training takes as many steps as
    it would on the labelled cells alone, in whole epochs.

    Examples
    --------
    >>> from sctransformer_tools.model._training import default_max_epochs
    >>> default_max_epochs(2_374), default_max_epochs(350), default_max_epochs(50_000), default_max_epochs(20)
    (8, 28, 8, 300)
    >>> default_max_epochs(20, n_read=2_000), default_max_epochs(2_000, n_read=8_000)  # 300 steps, 504 steps
    (5, 3)
    """
    steps = max(-(-n_train_cells // batch_size), 1)
    epochs = int(max(MIN_EPOCHS, -(-MIN_STEPS // steps)))
    if n_read is None or n_read <= n_train_cells:
        return epochs
    return max(1, -(-(epochs * steps) // -(-n_read // batch_size)))


#: Cell types with fewer labelled cells keep them all for training (none held out for validation): with a few
#: labels per type, one held out is a large share of what the classifier learns from.
MIN_VALIDATED_CELLS = 5

#: Below this validation macro-F1, ``train`` warns that the model's calls are not to be trusted.
POOR_MACRO_F1 = 0.5


@contextlib.contextmanager
def _frozen(params: list):
    """Freeze ``params`` for the block; make them trainable again on leaving, however the block ends."""
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def add_objective(model: SCTransformer, name: str, **kwargs) -> None:
    """Add an objective to ``model``'s module by name, and record how it was built (``model.objectives_``, which
    :meth:`~sctransformer_tools.SCTransformer.load` replays): ``"pseudo_labels"``, ``"consistency"`` or
    ``"masked_expression"``, with its keyword arguments.
    """
    module = model.module
    n_labels = model.summary_stats.n_labels
    if name == PseudoLabels.name:
        objective = PseudoLabels(n_labels, **kwargs)
    elif name == Consistency.name:
        objective = Consistency(n_labels, **kwargs)
    elif name == MaskedExpression.name:
        log_normalized = module.tokenizer.log_normalized
        kwargs.setdefault("target", "log_expression" if log_normalized else "counts")
        objective = MaskedExpression(
            module.cls.numel(),
            log_normalized=log_normalized,
            target_sum=module.tokenizer.target_sum,
            n_genes=module.tokenizer.n_genes,
            **kwargs,
        )
    else:
        raise ValueError(
            f"Unknown objective {name!r}: choose among {[PseudoLabels.name, Consistency.name, MaskedExpression.name]}."
        )
    module.add_objective(objective)
    model.objectives_ = {**getattr(model, "objectives_", {}), name: dict(kwargs)}


def restore_objectives(model: SCTransformer) -> None:
    """Rebuild the objectives recorded in ``model.objectives_`` (before loading saved weights into them)."""
    for name, kwargs in dict(getattr(model, "objectives_", None) or {}).items():
        if name not in model.module.objectives:
            add_objective(model, name, **kwargs)


def fit_aside(model: SCTransformer, record: str, *args, **kwargs) -> None:
    """:func:`fit` for a run that is not the classifier's training (pretraining, query adaptation): no weight
    averaging nor early stopping, a history of its own (``model.<record>``, not appended to ``history_``), and
    ``is_trained_`` and ``history_`` left as they were.
    """
    trained, history = model.is_trained_, getattr(model, "history_", None)
    model.is_trained_, model.history_ = False, None
    try:
        fit(
            model,
            *args,
            weight_averaging=False,
            early_stopping=False,
            early_stopping_patience=0,
            datasplitter_kwargs=None,
            **kwargs,
        )
        setattr(model, record, model.history_)
    finally:
        model.is_trained_, model.history_ = trained, history


def fit(
    model: SCTransformer,
    objectives: Mapping[str, float],
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    *,
    labelled_idx: np.ndarray | None = None,
    adata=None,
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
    trainable=None,
    **trainer_kwargs,
) -> None:
    """Train ``objectives`` (``{name: weight}``, the first validating the run) of ``model`` through scvi-tools.

    Parameters
    ----------
    model
        The model.
    objectives
        Objectives of ``model.module`` to train and their weights.
    train_idx, val_idx
        Training and validation cells of ``adata``.
    labelled_idx
        Labelled training cells: each step then also reads a minibatch of them
        (:class:`~sctransformer_tools.model._splitter.SemiSupervisedSplitter`).
    adata
        A registered AnnData to train on instead of the model's (e.g. a pretraining corpus or a query).
    trainable
        Parameters to train (default: all but the heads of objectives not trained).
    **kwargs
        As in :meth:`~sctransformer_tools.SCTransformer.train`.
    """
    import lightning.pytorch as pl

    pl.seed_everything(seed, verbose=False)
    data = model.adata if adata is None else adata
    has_val = len(val_idx) > 0
    if precision == "auto":
        probe = next(iter(model._make_data_loader(data, indices=train_idx[:batch_size], batch_size=batch_size)))
        model.precision_ = choose_precision(model.module, probe, accelerator)
        precision = model.precision_["precision"]
    else:
        model.precision_ = {"precision": precision}
    plan = model._training_plan_cls(model.module, objectives=objectives, lr=lr, **(plan_kwargs or {}))
    # several devices/machines (strategy="ddp", ...): every process reads its own share of cells
    distributed = use_distributed_sampler(trainer_kwargs.get("strategy"))
    every = np.arange(data.n_obs)
    unused = np.setdiff1d(every, np.concatenate([train_idx, val_idx]))  # scvi-tools wants every cell placed
    splitter = SemiSupervisedSplitter(
        model.get_anndata_manager(data, required=True),
        labelled=np.array([], dtype=int) if labelled_idx is None else labelled_idx,
        batch_size=batch_size,
        distributed_sampler=distributed,
        external_indexing=[train_idx, val_idx, unused],
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
    module = model.module
    module.train()  # reading cells (predict, pretrain's end) leaves it in evaluation mode
    # parameters that get no gradient are frozen: out of the optimiser, and out of DDP's check that every
    # trainable parameter was used
    if trainable is None:
        frozen = [
            p
            for name, objective in module.objectives.items()
            if name not in objectives
            for p in objective.parameters()
            if p.requires_grad
        ]
    else:
        keep = {id(p) for p in trainable}
        frozen = [p for p in module.parameters() if p.requires_grad and id(p) not in keep]
    with quiet_training(), _frozen(frozen):
        model._train_runner_cls(
            model,
            training_plan=plan,
            data_splitter=splitter,
            max_epochs=max_epochs,
            accelerator=accelerator,
            devices=devices,
            early_stopping=early_stopping,
            early_stopping_monitor="validation_loss",
            early_stopping_patience=early_stopping_patience,
            check_val_every_n_epoch=max(1, max_epochs // 50) if has_val else None,  # at most ~50 validations
            callbacks=callbacks,
            precision=precision,
            enable_progress_bar=enable_progress_bar,
            simple_progress_bar=False,
            **trainer_kwargs,
        )()
    if isinstance(model.history_, dict):  # logged tensors -> plain floats
        model.history_ = {k: v.astype(float) for k, v in model.history_.items()}


class TrainingMixin:
    """``train``: fit the cell-type classifier on the labelled cells, and learn from the unlabelled ones."""

    def add_objective(self, name: str, **kwargs) -> None:
        """Add (or replace) a training objective with its settings, for ``train(objectives={name: weight})``.

        Parameters
        ----------
        name
            ``"pseudo_labels"`` (:class:`~sctransformer_tools.module.PseudoLabels`), ``"consistency"``
            (:class:`~sctransformer_tools.module.Consistency`) or ``"masked_expression"``
            (:class:`~sctransformer_tools.module.MaskedExpression`).
        **kwargs
            The objective's settings (e.g. ``threshold=0.9``); saved with the model.

        Examples
        --------
        >>> import sctransformer_tools as sct
        >>> adata = sct.ds.pbmc68k_reduced()
        >>> sct.SCTransformer.setup_anndata(adata, labels_key="bulk_labels")
        >>> model = sct.SCTransformer(adata, n_layers=1, d_model=16, n_heads=2, n_top_genes=0)
        >>> model.add_objective("pseudo_labels", threshold=0.9)
        >>> model.objectives_["pseudo_labels"]
        {'threshold': 0.9}
        """
        if name in self.module.objectives:
            del self.module.objectives[name]
        add_objective(self, name, **kwargs)

    def train(
        self,
        max_epochs: int | None = None,
        *,
        lr: float = 2e-3,
        batch_size: int = DEFAULT_BATCH_SIZE,
        train_size: float = 0.9,
        semi_supervised: bool | None = None,
        objectives: Mapping[str, float] | None = None,
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

        When the reference has unlabelled cells (a missing label, or ``unlabeled_category`` of
        :meth:`setup_anndata`), the model learns from them too: they shape the expression profile the CLS token
        starts from (fitted on every cell when the model is built), and objectives that need no label
        (:data:`SEMI_SUPERVISED`, none by default, or ``objectives=``) can be added to the classifier's loss; every
        step then reads a minibatch of all training cells and one of labelled cells, as scANVI does.
        ``model.training_`` records what was trained on. A stratified share ``1 - train_size`` of the labelled cells of every cell type is held out for
        validation (at least one of each type with at least :data:`MIN_VALIDATED_CELLS` labelled cells; smaller
        types are all trained on). The learning rate warms up, then follows
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
            at least 300 optimiser steps (:func:`default_max_epochs`).
        lr
            Peak learning rate (AdamW, warm-up then cosine decay).
        batch_size
            Cells per minibatch.
        train_size
            Fraction of labelled cells used for training; the rest validates. ``1.0``: no validation
            (no early stopping, no calibration).
        semi_supervised
            Learn from the unlabelled cells too; ``None``: when there are any.
        objectives
            ``{objective: weight}`` trained beside the classifier, instead of :data:`SEMI_SUPERVISED`:
            ``"pseudo_labels"`` (:class:`~sctransformer_tools.module.PseudoLabels`), ``"consistency"``
            (:class:`~sctransformer_tools.module.Consistency`), ``"masked_expression"``
            (:class:`~sctransformer_tools.module.MaskedExpression`); e.g. ``{}`` for the classifier alone.
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

        Sets the following fields
        -------------------------
        ``model.history``, ``model.training_``, ``model.calibration_``, ``model.novelty_``, ``model.precision_``
            Per-epoch metrics, what was trained on (objectives and weights, cells), the fitted temperature
            and novelty model, the precision used.

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
        seed = self.spec_.settings["seed"] if seed is None else seed
        codes = self.adata_manager.get_from_registry(REGISTRY_KEYS.LABELS_KEY).ravel()
        n_labels = self.summary_stats.n_labels
        train_idx, val_idx = stratified_split(
            codes, train_size, seed, n_labels=n_labels, min_held_class=MIN_VALIDATED_CELLS
        )
        if len(train_idx) == 0:
            raise ValueError("No labelled cells to train on: every value of the labels column is missing.")
        if len(np.unique(codes[train_idx])) < 2:
            raise ValueError("Training needs labelled cells of at least two cell types.")
        unlabelled = np.flatnonzero(codes >= n_labels)
        use_unlabelled = len(unlabelled) > 0 if semi_supervised is None else bool(semi_supervised)
        if use_unlabelled and len(unlabelled) == 0:
            raise ValueError(
                "semi_supervised=True, but every cell has a label: mark the cells to learn from without labels with "
                "a missing value (or unlabeled_category= in setup_anndata)."
            )
        weights = {CellTypeClassification.name: 1.0}
        if objectives is not None:
            weights |= dict(objectives)
        elif use_unlabelled:
            weights |= SEMI_SUPERVISED
        for name in weights:
            if name not in self.module.objectives:
                add_objective(self, name)
        # unlabelled cells are read by the objectives that need no label; the classifier alone learns from them only
        # through the expression profile (fitted on every cell when the model was built)
        reads_unlabelled = use_unlabelled and any(not self.module.objectives[n].needs_labels for n in weights)
        fitted_idx = np.sort(np.concatenate([train_idx, unlabelled])) if reads_unlabelled else train_idx
        if max_epochs is None:
            max_epochs = default_max_epochs(len(train_idx), batch_size, n_read=len(fitted_idx))
        start = time.perf_counter()
        fit(
            self,
            weights,
            fitted_idx,
            val_idx,
            labelled_idx=train_idx if reads_unlabelled else None,
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
        self.training_ = {
            "objectives": weights,
            "n_labelled": len(train_idx),
            "n_validation": len(val_idx),
            "n_unlabelled": len(unlabelled) if use_unlabelled else 0,
            "unlabelled_read_by_objectives": bool(reads_unlabelled),
            "max_epochs": int(max_epochs),
            "seconds": round(time.perf_counter() - start, 1),
        }
        fit_confidence_and_novelty(self, train_idx, val_idx, codes, seed)
        self._report_training(len(train_idx), len(val_idx), time.perf_counter() - start, self.training_["n_unlabelled"])

    def _report_training(self, n_train: int, n_val: int, seconds: float, n_unlabelled: int = 0) -> None:
        """One line on what was trained and how it validates; a warning when the validation is poor."""
        history = self.history or {}
        epochs = len(history["train_loss"]) if "train_loss" in history else 0

        def last(name: str) -> float | None:
            return float(history[name].iloc[-1].item()) if name in history and len(history[name]) else None

        f1, accuracy = last("validation_f1_macro"), last("validation_accuracy")
        summary = self.mask_summary()
        line = (
            f"Trained SCTransformer ({summary['mask']} mask, {summary['genes']:,} genes, "
            f"{self.summary_stats.n_labels} cell types) for {epochs} epochs on {n_train:,} labelled cells"
            + (f" and {n_unlabelled:,} unlabelled" if n_unlabelled else "")
            + f" in {seconds:.0f} s "
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
