"""SCTransformer: the AnnData-facing model (scvi-tools BaseModelClass)."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data._constants import _SETUP_ARGS_KEY
from scvi.data.fields import LayerField, NumericalObsField
from scvi.dataloaders import DataSplitter
from scvi.model._utils import use_distributed_sampler  # the rule scvi-tools' Trainer applies too
from scvi.model.base import BaseModelClass
from scvi.model.base._constants import SAVE_KEYS
from scvi.train import TrainRunner
from scvi.utils import setup_anndata_dsp

from sctransformer_tools import grn
from sctransformer_tools._constants import ADATA_KEYS, SCT_REGISTRY_KEYS
from sctransformer_tools.module import SCTransformerModule

from ._calibration import fit_temperature
from ._checks import check_expression, check_labels, check_var_names, get_matrix, library_sizes
from ._fields import TolerantCategoricalObsField
from ._novelty import MAX_FIT_CELLS, fit_novelty, novelty_percentile, restrict_novelty
from ._query import load_saved, prepare_query
from ._trainingplan import RestoreBestWeights, SCTransformerTrainingPlan

logger = logging.getLogger(__name__)

#: Label of cells whose confidence is below ``unknown_threshold`` in :meth:`SCTransformer.predict`.
UNKNOWN = "Unknown"


#: Highly variable genes of larger (or backed) data are computed on a seeded sample of this many cells.
HVG_MAX_CELLS = 50_000


def _stratified_split(labels: np.ndarray, n_labels: int, train_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split labelled cells per class; every class with >= 2 cells has at least one validation cell."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for code in range(n_labels):
        idx = rng.permutation(np.flatnonzero(labels == code))
        n_val = 0 if len(idx) < 2 or train_size >= 1 else max(1, round(len(idx) * (1 - train_size)))
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def _auto_precision(accelerator: str) -> str:
    """bf16 mixed precision where the hardware has native bfloat16 matmuls, else float32."""
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true"
    if accelerator in ("auto", "cpu"):
        native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
        return "bf16-mixed" if native else "32-true"
    return "32-true"


@contextlib.contextmanager
def _restore_torch_threads(threads: int):
    """Give torch back ``threads`` intra-op threads after a call into a library that changes them."""
    try:
        yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


class SCTransformer(BaseModelClass):
    """Cell-type classifier: a Transformer over genes whose attention follows TF -> target regulons.

    Every cell is read as the set of panel genes it expresses (gene identity + expression value
    tokens) plus a CLS token. Gene tokens attend only along the mask: with ``mask="grn"`` a target gene
    reads its transcription factors (:func:`~sctransformer_tools.grn.build_mask`). The CLS token reads
    every gene; its final state is the cell embedding (``obsm["X_sctransformer"]``) and feeds the
    classifier. ``"dense"``, ``"random"`` and ``"shuffled"`` masks run the same code with no mask, or a
    random / degree-preserving shuffled mask of the same density: the controls that tell whether the
    biology of the prior helps, beyond its sparsity.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`.
    mask
        ``"grn"``, ``"dense"``, ``"random"`` or ``"shuffled"``.
    d_model
        Token width.
    n_layers
        Transformer blocks.
    n_heads
        Attention heads per block.
    dropout
        Dropout in the feed-forward and residual branches (off by default; ``token_dropout`` regularises).
    n_top_genes
        Highly variable genes (scanpy, ``flavor="seurat_v3"`` on counts) added to the regulon genes of
        the panel; 0 for regulon genes only. They have no edges but reach the CLS token. On data opened
        backed or with more than 50,000 cells they are computed on a seeded sample of 50,000 cells.
    min_targets
        TFs with fewer targets among the data's genes lose their edges.
    direction
        ``"tf_to_target"`` (a target attends to its TFs) or ``"both"``.
    self_loops
        Gene tokens attend to themselves.
    genes_attend_cls
        Gene tokens may attend to the CLS token (the CLS token always attends to every gene).
    dense_heads
        Heads per layer left dense (no mask).
    masked_layers
        Layers (0-based) that use the mask; ``None`` for all.
    edge_bias
        Use the regulon sign as a learned attention bias on allowed pairs (default: edges are
        allowed or not, signs ignored).
    max_tokens
        Cap on gene tokens per cell (the most expressed are kept).
    token_dropout
        Fraction of a cell's expressed genes dropped at random while training (augmentation).
    label_smoothing
        Label smoothing of the cross-entropy.
    class_weights
        ``None`` (plain cross-entropy) or ``"balanced"`` (weights inversely proportional to the square
        root of class frequency, for rare cell types).
    seed
        Seed of the random and shuffled masks and of the weights' initialisation.
    panel_genes
        Explicit gene panel (names in ``var_names``); default: chosen from the regulons and ``n_top_genes``.
    regulons
        Regulons to use instead of those given to :meth:`setup_anndata`.
    registry
        Registry of a saved model (used by :meth:`load` without data).
    **module_kwargs
        Passed to :class:`~sctransformer_tools.module.SCTransformerModule`.

    Examples
    --------
    >>> import scanpy as sc
    >>> import sctransformer_tools as sct
    >>> adata = sct.ds.pbmc68k_reduced_counts()  # doctest: +SKIP
    >>> sct.SCTransformer.setup_anndata(adata, labels_key="bulk_labels", regulons="collectri")  # doctest: +SKIP
    >>> model = sct.SCTransformer(adata, mask="grn")  # doctest: +SKIP
    >>> model.train(max_epochs=5)  # doctest: +SKIP
    >>> model.get_latent_representation(adata)  # doctest: +SKIP
    >>> sc.pp.neighbors(adata, use_rep="X_sctransformer")  # doctest: +SKIP
    """

    _module_cls = SCTransformerModule
    _training_plan_cls = SCTransformerTrainingPlan
    _data_splitter_cls = DataSplitter
    _train_runner_cls = TrainRunner

    def __init__(
        self,
        adata: AnnData | None = None,
        mask: Literal["grn", "dense", "random", "shuffled"] = "grn",
        *,
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        dropout: float = 0.0,
        n_top_genes: int = 2000,
        min_targets: int = 1,
        direction: Literal["tf_to_target", "both"] = "tf_to_target",
        self_loops: bool = True,
        genes_attend_cls: bool = False,
        dense_heads: int = 0,
        masked_layers: Sequence[int] | None = None,
        edge_bias: bool = False,
        max_tokens: int = 2048,
        token_dropout: float = 0.3,
        label_smoothing: float = 0.1,
        class_weights: Literal["balanced"] | None = None,
        seed: int = 0,
        panel_genes: Sequence[str] | None = None,
        regulons: str | pd.DataFrame | None = None,
        registry: dict | None = None,
        **module_kwargs,
    ):
        if mask not in grn.MASK_KINDS:
            raise ValueError(f"Unknown mask {mask!r}: choose one of {grn.MASK_KINDS}.")
        if direction not in grn.DIRECTIONS:
            raise ValueError(f"Unknown direction {direction!r}: choose one of {grn.DIRECTIONS}.")
        if class_weights not in (None, "balanced"):
            raise ValueError(f"class_weights must be None or 'balanced', got {class_weights!r}.")
        super().__init__(adata, registry=registry)
        setup_args = self.registry_[_SETUP_ARGS_KEY]
        var_names = pd.Index(self.get_var_names()).astype(str)
        torch.manual_seed(seed)

        if panel_genes is None:
            if adata is None:
                raise ValueError("panel_genes must be given when the model is built without data.")
            net = grn.load_regulons(
                setup_args["regulons"] if regulons is None else regulons,
                organism=setup_args.get("organism", "human"),
                levels=setup_args.get("regulon_levels", "ABC"),
            )
            symbols = self._gene_symbols(adata, setup_args.get("gene_symbols"))
            extra = self._highly_variable_genes(adata, n_top_genes, setup_args) if n_top_genes else pd.Index([])
            panel = grn.select_panel(
                symbols, net, extra_genes=symbols[var_names.get_indexer(extra)], min_targets=min_targets
            )
        else:
            net = grn.validate_regulons(regulons, name="the model's regulon edges")
            pos = var_names.get_indexer(pd.Index(panel_genes))
            if (pos < 0).any():
                raise ValueError(f"panel_genes not among the data's genes: {list(pd.Index(panel_genes)[pos < 0][:5])}")
            panel = grn.select_panel(var_names, net, extra_genes=var_names[pos], min_targets=min_targets)
            symbols = None
        panel_var = var_names[panel.var_index]
        gene_mask = grn.build_mask(
            len(panel),
            panel.edges,
            kind=mask,
            direction=direction,
            self_loops=self_loops,
            genes_attend_cls=genes_attend_cls,
            seed=seed,
        )
        n_labels = self.summary_stats.n_labels
        n_batch = self.summary_stats.n_batch if setup_args.get("batch_key") else 0
        weights = None
        if class_weights == "balanced" and adata is not None:
            codes = self.adata_manager.get_from_registry(REGISTRY_KEYS.LABELS_KEY).ravel()
            counts = np.bincount(codes[codes < n_labels], minlength=n_labels).astype(float)
            weights = 1 / np.sqrt(np.maximum(counts, 1))
            weights = weights / (weights * counts).sum() * counts.sum()
        self.module = self._module_cls(
            n_input=len(var_names),
            n_labels=n_labels,
            panel_index=panel.var_index,
            mask_pairs=gene_mask.pairs,
            pair_weight=gene_mask.pair_weight,
            n_batch=n_batch,
            d_model=d_model,
            n_layers=n_layers,
            n_heads=n_heads,
            dropout=dropout,
            self_loops=self_loops,
            genes_attend_cls=genes_attend_cls,
            dense_heads=dense_heads,
            masked_layers=masked_layers,
            edge_bias=edge_bias,
            max_tokens=max_tokens,
            log_normalized=setup_args.get("log_normalized", False),
            token_dropout=token_dropout,
            label_smoothing=label_smoothing,
            class_weights=weights,
            **module_kwargs,
        )
        # What a saved model needs to be rebuilt without the regulon source: the panel and its edges,
        # with gene names as in var_names.
        edges_var = panel.edges.assign(
            source=panel_var[panel.edges["source_idx"]], target=panel_var[panel.edges["target_idx"]]
        )
        keep = [c for c in ("source", "target", "weight", "confidence") if c in edges_var.columns]
        self.init_params_ = self._get_init_params(locals())
        self.init_params_["non_kwargs"]["panel_genes"] = list(panel_var)
        self.init_params_["non_kwargs"]["regulons"] = edges_var[keep].reset_index(drop=True)
        # a model rebuilt from a saved one gets its symbols back with the saved `panel_`
        panel_symbols = symbols[panel.var_index] if symbols is not None else panel_var
        self.panel_ = pd.DataFrame(
            {"symbol": np.asarray(panel_symbols), "is_tf": panel.is_tf, "is_regulon_gene": panel.is_regulon_gene},
            index=pd.Index(panel_var, name="gene"),
        )
        self.mask_ = gene_mask.summary() | {
            "panel_genes": len(panel),
            "regulon_genes": int(panel.is_regulon_gene.sum()),
            "extra_genes": int((~panel.is_regulon_gene).sum()),
            "regulon_edges": len(panel.edges),
            "n_layers": n_layers,
            "n_heads": n_heads,
            "dense_heads": dense_heads,
            "masked_layers": list(self.module.masked_layers),
            "edge_weights": "attention bias (learned scale x sign)" if edge_bias else "ignored",
        }
        self._model_summary_string = (
            f"SCTransformer: mask={mask!r}, {len(panel):,} panel genes ({self.mask_['tfs']} TFs), "
            f"{gene_mask.n_pairs:,} allowed gene pairs (density {gene_mask.density:.2e}), {n_layers} layers x "
            f"{n_heads} heads, d_model={d_model}, {n_labels} cell types."
        )

    # ------------------------------------------------------------------ setup
    @classmethod
    @setup_anndata_dsp.dedent
    def setup_anndata(
        cls,
        adata: AnnData,
        layer: str | None = None,
        labels_key: str | None = None,
        batch_key: str | None = None,
        regulons: str | os.PathLike | pd.DataFrame = "collectri",
        *,
        organism: str = "human",
        regulon_levels: str = "ABC",
        gene_symbols: str | None = None,
        library_size_key: str | None = None,
        log_normalized: bool = False,
        **kwargs,
    ):
        """Register an AnnData for scTransformer and check it.

        Parameters
        ----------
        adata
            Cells x genes with raw counts in ``X`` or in ``layer``.
        layer
            Layer holding raw counts (``None``: ``adata.X``).
        labels_key
            ``obs`` column with cell types. Missing values mark unlabelled cells: they are kept (and get
            predictions and embeddings) but do not contribute to the loss.
        batch_key
            ``obs`` column with batches; adds a batch embedding to the CLS token (unseen batches of a
            query get a shared "unseen batch" embedding) and is used for highly variable gene selection.
        regulons
            ``"collectri"``, ``"dorothea"``, a DataFrame (``source``, ``target``, ``weight``) or a CSV/TSV
            path (see :func:`~sctransformer_tools.grn.load_regulons`).
        organism
            Organism of ``"collectri"`` / ``"dorothea"``.
        regulon_levels
            DoRothEA confidence levels.
        gene_symbols
            ``var`` column with gene symbols, when ``var_names`` are not symbols (e.g. Ensembl IDs).
        library_size_key
            ``obs`` column with each cell's total counts over all genes. Default: the row sums of the
            matrix. Give it when the matrix holds only some genes of each cell.
        log_normalized
            The matrix is log-normalised (``log1p(counts / total * 1e4)``) instead of counts.

        Sets the following fields
        -------------------------
        ``adata.obs["_sct_library_size"]``
            Library size per cell.
        ``adata.obs["_scvi_labels"]``, ``adata.obs["_scvi_batch"]``
            Integer codes used by the data loaders (scvi-tools convention).
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        source_registry = kwargs.get("source_registry")
        check_var_names(adata)
        check_expression(adata, layer, log_normalized)
        if source_registry is None:  # a new reference: check what training needs
            check_labels(adata, labels_key)
            if batch_key is not None and batch_key not in adata.obs:
                raise KeyError(
                    f"batch_key {batch_key!r} not found in adata.obs (columns: {list(adata.obs.columns)[:20]})."
                )
            if gene_symbols is not None and gene_symbols not in adata.var:
                raise KeyError(
                    f"gene_symbols column {gene_symbols!r} not found in adata.var (columns: {list(adata.var.columns)})."
                )
            net = grn.load_regulons(regulons, organism=organism, levels=regulon_levels)
            symbols = cls._gene_symbols(adata, gene_symbols)
            grn.select_panel(symbols, net)  # raises with the overlap counts when the regulons do not fit
            labelled = int(adata.obs[labels_key].notna().sum())
            if labelled < adata.n_obs:
                logger.info(
                    "%d of %d cells have no label: kept, but not used by the loss.", adata.n_obs - labelled, adata.n_obs
                )
        if ADATA_KEYS.LIBRARY_COLUMN not in adata.obs or source_registry is None:
            adata.obs[ADATA_KEYS.LIBRARY_COLUMN] = library_sizes(adata, layer, library_size_key)
        n_empty = int((adata.obs[ADATA_KEYS.LIBRARY_COLUMN] <= 0).sum())
        if n_empty:
            logger.info("%d cells have no counts: they are kept and classified from the CLS token alone.", n_empty)
        anndata_fields = [
            LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=False),
            TolerantCategoricalObsField(REGISTRY_KEYS.LABELS_KEY, labels_key, what="unlabelled"),
            TolerantCategoricalObsField(REGISTRY_KEYS.BATCH_KEY, batch_key, what="an unseen batch"),
            NumericalObsField(SCT_REGISTRY_KEYS.LIBRARY_KEY, ADATA_KEYS.LIBRARY_COLUMN),
        ]
        adata_manager = AnnDataManager(fields=anndata_fields, setup_method_args=setup_method_args)
        adata_manager.register_fields(adata, **kwargs)
        cls.register_manager(adata_manager)

    @staticmethod
    def _gene_symbols(adata: AnnData, gene_symbols: str | None) -> pd.Index:
        if gene_symbols is None:
            return pd.Index(adata.var_names.astype(str))
        if gene_symbols not in adata.var:
            raise KeyError(f"gene_symbols column {gene_symbols!r} not found in adata.var.")
        return pd.Index(adata.var[gene_symbols].astype(str).to_numpy())

    @staticmethod
    def _highly_variable_genes(adata: AnnData, n_top_genes: int, setup_args: dict) -> pd.Index:
        import anndata as ad
        import scanpy as sc

        matrix = get_matrix(adata, setup_args.get("layer"))
        cells = np.arange(adata.n_obs)
        if adata.isbacked or adata.n_obs > HVG_MAX_CELLS:  # a seeded sample of cells, read from disk if backed
            cells = np.sort(
                np.random.default_rng(0).choice(adata.n_obs, min(adata.n_obs, HVG_MAX_CELLS), replace=False)
            )
            matrix = matrix[cells]
            if hasattr(matrix, "to_memory"):
                matrix = matrix.to_memory()
        tmp = ad.AnnData(
            X=matrix, obs=pd.DataFrame(index=adata.obs_names[cells]), var=pd.DataFrame(index=adata.var_names)
        )
        batch_key = setup_args.get("batch_key")
        if batch_key is not None:
            tmp.obs["batch"] = adata.obs[batch_key].astype(str).to_numpy()[cells]
        n_top = min(n_top_genes, adata.n_vars)
        threads = torch.get_num_threads()  # scanpy's seurat_v3 path resets torch's thread count
        with warnings.catch_warnings(), _restore_torch_threads(threads):
            warnings.simplefilter("ignore")
            if setup_args.get("log_normalized", False):
                sc.pp.highly_variable_genes(tmp, n_top_genes=n_top, batch_key="batch" if batch_key else None)
            else:
                try:
                    sc.pp.highly_variable_genes(
                        tmp, n_top_genes=n_top, flavor="seurat_v3", batch_key="batch" if batch_key else None
                    )
                except ValueError as err:  # the loess fit of seurat_v3 can fail on small or degenerate data
                    logger.warning("seurat_v3 highly variable genes failed (%s); using flavor='seurat'.", err)
                    tmp.X = tmp.X.copy()  # never normalise the user's counts in place
                    sc.pp.normalize_total(tmp, target_sum=1e4)
                    sc.pp.log1p(tmp)
                    sc.pp.highly_variable_genes(tmp, n_top_genes=n_top, batch_key="batch" if batch_key else None)
        return tmp.var_names[tmp.var["highly_variable"].to_numpy()]

    def _validate_anndata(self, adata: AnnData | None = None, copy_if_view: bool = True) -> AnnData:
        """Check that ``adata`` has the model's genes, then register it (transferring the setup)."""
        if adata is not None and adata is not self.adata:
            model_genes = pd.Index(self.get_var_names())
            if not adata.var_names.equals(model_genes):
                n_shared = int(model_genes.isin(adata.var_names).sum())
                raise ValueError(
                    f"adata's genes differ from the model's ({n_shared:,} of the model's {len(model_genes):,} genes "
                    f"present, {adata.n_vars:,} genes in adata, order may differ). Align them first: "
                    "`SCTransformer.prepare_query_anndata(adata, model)`."
                )
            if ADATA_KEYS.LIBRARY_COLUMN not in adata.obs:
                setup_args = self.registry_[_SETUP_ARGS_KEY]
                check_expression(adata, setup_args.get("layer"), setup_args.get("log_normalized", False))
                adata.obs[ADATA_KEYS.LIBRARY_COLUMN] = library_sizes(adata, setup_args.get("layer"))
        return super()._validate_anndata(adata, copy_if_view=copy_if_view)

    # ------------------------------------------------------------------ train
    def train(
        self,
        max_epochs: int = 30,
        *,
        lr: float = 2e-3,
        batch_size: int = 64,
        train_size: float = 0.9,
        weight_averaging: bool = True,
        early_stopping: bool = False,
        early_stopping_patience: int = 8,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        precision: str | None = "auto",
        seed: int | None = None,
        plan_kwargs: dict | None = None,
        datasplitter_kwargs: dict | None = None,
        **trainer_kwargs,
    ) -> None:
        """Train the classifier with a Lightning progress bar, validation metrics and weight averaging.

        A stratified share ``1 - train_size`` of the labelled cells of every cell type is held out for
        validation (each type with >= 2 cells gets at least one). The learning rate warms up, then
        follows a cosine decay over ``max_epochs``. By default the model keeps an exponential moving
        average of its weights (from epoch ``max_epochs // 6``), validates with it and ends with it.
        With ``early_stopping=True`` training instead stops when the validation loss has not improved
        for ``early_stopping_patience`` epochs and the raw weights of the best validation epoch are
        restored (a run that reaches ``max_epochs`` keeps its final weights). On pbmc3k, early stopping
        on a small validation split picked noisy epochs and lost about 0.01 macro-F1 against running the
        full schedule (see the README). ``model.history`` holds loss, accuracy and macro-F1 of both
        splits per epoch.

        Parameters
        ----------
        max_epochs
            Maximum passes over the training cells.
        lr
            Peak learning rate (AdamW, warm-up then cosine decay).
        batch_size
            Cells per minibatch.
        train_size
            Fraction of labelled cells used for training; the rest validates. ``1.0``: no validation
            (and no early stopping).
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
            Lightning precision. ``"auto"``: ``"bf16-mixed"`` where the hardware multiplies bfloat16
            natively (CPUs with AVX512-BF16 or AMX, bf16-capable GPUs; about 2x faster training here),
            else ``"32-true"``. Weights stay float32 either way.
        seed
            Seed of the split and minibatch order (default: the model's ``seed``).
        plan_kwargs
            Passed to :class:`~sctransformer_tools.model.SCTransformerTrainingPlan` (``weight_decay``, ...).
        datasplitter_kwargs
            Passed to :class:`scvi.dataloaders.DataSplitter`.
        **trainer_kwargs
            Passed to the Lightning trainer.
        """
        import lightning.pytorch as pl

        seed = self.init_params_["non_kwargs"].get("seed", 0) if seed is None else seed
        pl.seed_everything(seed, verbose=False)
        codes = self.adata_manager.get_from_registry(REGISTRY_KEYS.LABELS_KEY).ravel()
        n_labels = self.summary_stats.n_labels
        train_idx, val_idx = _stratified_split(codes, n_labels, train_size, seed)
        if len(train_idx) == 0:
            raise ValueError("No labelled cells to train on: every value of the labels column is missing.")
        present = np.unique(codes[train_idx])
        if len(present) < 2:
            raise ValueError("Training needs labelled cells of at least two cell types.")
        has_val = len(val_idx) > 0
        if precision == "auto":
            precision = _auto_precision(accelerator)
        plan = self._training_plan_cls(self.module, lr=lr, **(plan_kwargs or {}))
        # several devices/machines (strategy="ddp", ...): every process reads its own share of cells
        distributed = use_distributed_sampler(trainer_kwargs.get("strategy"))
        splitter = self._data_splitter_cls(
            self.adata_manager,
            batch_size=batch_size,
            distributed_sampler=distributed,
            # unlabelled cells sit in the (unused) test split: scvi-tools wants every cell assigned
            external_indexing=[train_idx, val_idx, np.flatnonzero(codes >= n_labels)],
            **(datasplitter_kwargs or {}),
        )
        callbacks = list(trainer_kwargs.pop("callbacks", []))
        early_stopping = early_stopping and has_val
        if early_stopping:
            callbacks.append(RestoreBestWeights("validation_loss", "min"))
        elif weight_averaging:
            from lightning.pytorch.callbacks import EMAWeightAveraging

            callbacks.append(EMAWeightAveraging(decay=0.99, update_starting_at_epoch=max_epochs // 6))
        runner = self._train_runner_cls(
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
            **trainer_kwargs,
        )
        runner()
        if isinstance(self.history_, dict):  # logged tensors -> plain floats
            self.history_ = {k: v.astype(float) for k, v in self.history_.items()}
        self.calibration_ = None
        if has_val:  # temperature scaling on the validation cells (never seen by the optimiser)
            logits = torch.cat(self._run(None, val_idx, 256, self._logits)[1]).float()
            self.calibration_ = fit_temperature(logits, torch.as_tensor(codes[val_idx], dtype=torch.long))
            logger.info(
                "Temperature %.2f fitted on %d validation cells: ECE %.3f -> %.3f",
                self.calibration_["temperature"],
                len(val_idx),
                self.calibration_["ece_before"],
                self.calibration_["ece_after"],
            )
        self.novelty_ = self._fit_novelty(np.concatenate([train_idx, val_idx]), codes, seed)

    def _expression(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        """Log-normalised panel expression of a minibatch, as the model's tokenizer sees it."""
        inputs = self.module._get_inference_input(tensors)
        library = inputs["library"]
        return self.module.tokenizer.normalize(
            inputs["x"].to(self.device), None if library is None else library.to(self.device)
        ).float()

    def _fit_novelty(self, indices: np.ndarray, codes: np.ndarray, seed: int) -> dict:
        """The reference expression model behind the novelty percentile (:mod:`._novelty`)."""
        rng = np.random.default_rng(seed)
        if len(indices) > MAX_FIT_CELLS:
            indices = rng.choice(indices, MAX_FIT_CELLS, replace=False)
        indices = np.sort(indices)
        expression = torch.cat(self._run(None, indices, 256, lambda t: self._expression(t).cpu())[1]).numpy()
        return fit_novelty(expression, codes[indices], self.summary_stats.n_labels, seed=seed)

    def _novelty_for(self, adata: AnnData | None) -> dict | None:
        """The novelty model for ``adata``: refitted on the panel genes a prepared query measures."""
        fit = getattr(self, "novelty_", None)
        column = f"{ADATA_KEYS.QUERY}_zero_filled"
        if fit is None or adata is None or column not in adata.var:
            return fit
        panel = pd.Index(self.init_params_["non_kwargs"]["panel_genes"])
        measured = ~adata.var[column].reindex(panel).fillna(False).to_numpy(dtype=bool)
        if measured.all():
            return fit
        if "reference_data" not in fit:
            warnings.warn(
                f"The query lacks {int((~measured).sum()):,} of the model's {len(panel):,} panel genes, but this "
                "model's novelty model keeps no reference cells to be refitted on the genes the query measures "
                "(it was trained before that existed): its novelty percentiles read those genes as zeros and "
                "overstate novelty. Retrain the model to score this query.",
                UserWarning,
                stacklevel=3,
            )
            return fit
        cache = self.__dict__.setdefault("_restricted_novelty", {})  # not saved: no trailing underscore
        key = np.flatnonzero(~measured).tobytes()
        if key not in cache:
            cache[key] = restrict_novelty(fit, measured)
            warnings.warn(
                f"The query measures {int(measured.sum()):,} of the model's {len(panel):,} panel genes: its "
                "novelty percentiles compare it with the reference on those genes only (the novelty model is "
                f"refitted on them from the {len(fit['reference_types']):,} reference cells kept with it).",
                UserWarning,
                stacklevel=3,
            )
        return cache[key]

    # -------------------------------------------------------------- inference
    @torch.inference_mode()
    def _run(self, adata: AnnData | None, indices, batch_size: int, fn):
        adata = self._validate_anndata(adata)
        loader = self._make_data_loader(adata=adata, indices=indices, batch_size=batch_size)
        self.module.eval()
        return adata, [fn(tensors) for tensors in loader]

    def _logits(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.module.inference(**self.module._get_inference_input(tensors))["logits"].float().cpu()

    @property
    def temperature(self) -> float:
        """Temperature that divides the logits in :meth:`predict` (1.0 when none was fitted)."""
        calibration = getattr(self, "calibration_", None)
        return 1.0 if not calibration else float(calibration["temperature"])

    def predict(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        soft: bool = False,
        batch_size: int = 128,
        key_added: str = "sctransformer",
        inplace: bool = True,
        calibrated: bool = True,
        unknown_threshold: float | None = None,
        novelty_threshold: float | None = None,
        over_clustering: str | None = None,
    ) -> np.ndarray | pd.DataFrame:
        """Predict cell types, with calibrated confidence and an optional "Unknown" call.

        Probabilities are ``softmax(logits / T)``, with the temperature ``T`` fitted on the validation
        cells at the end of :meth:`train` (``model.calibration_`` holds it and the expected calibration
        error before and after). Temperature scaling changes confidences, never the predicted type.

        Parameters
        ----------
        adata
            Registered AnnData (a query prepared with :meth:`prepare_query_anndata`); the training data
            when ``None``.
        indices
            Cells to predict (all when ``None``); only used when ``inplace=False``.
        soft
            Return class probabilities (cells x cell types) instead of labels.
        batch_size
            Cells per minibatch.
        key_added
            Prefix of the ``obs`` columns written.
        inplace
            Write the predictions into ``adata.obs``.
        calibrated
            Apply the fitted temperature (``False``: raw softmax).
        unknown_threshold
            Cells whose confidence is below this are called ``"Unknown"``. ``None``: no confidence cut.
            Confidence does not catch a cell type absent from the reference (the classifier maps it onto
            a known type, often confidently): ``novelty_threshold`` does.
        novelty_threshold
            Cells more atypical than this share of the reference cells of the type they resemble most
            are called ``"Unknown"`` (e.g. ``0.95``: about 5% of cells of known types are flagged).
            The novelty percentile comes from a probabilistic PCA of the reference's panel expression
            fitted at the end of :meth:`train` (``model.novelty_``; see
            :mod:`sctransformer_tools.model._novelty`). For a query prepared with
            :meth:`prepare_query_anndata` that lacks panel genes, it is refitted on the genes the query
            measures (zero-filled genes would make every cell look novel). ``None``: no novelty cut.
        over_clustering
            ``obs`` column of clusters (e.g. ``"leiden"``): also write the majority prediction of each
            cluster, as CellTypist's majority voting (needs ``inplace=True``).

        Returns
        -------
        Predicted labels (array), or probabilities (DataFrame) when ``soft``.

        Sets the following fields (when ``inplace``)
        --------------------------------------------
        ``adata.obs[f"{key_added}_prediction"]``
            Predicted cell type (categorical; ``"Unknown"`` below ``unknown_threshold``).
        ``adata.obs[f"{key_added}_confidence"]``
            Calibrated probability of the most likely type.
        ``adata.obs[f"{key_added}_novelty"]``
            Novelty percentile of the cell against the reference type it resembles most (0.5: typical,
            0.99: more atypical than 99% of the reference cells of that type).
        ``adata.obs[f"{key_added}_majority_voting"]``
            With ``over_clustering``: the most frequent prediction of the cell's cluster.

        Examples
        --------
        >>> import sctransformer_tools as sct
        >>> adata = sct.ds.pbmc68k_reduced()
        >>> sct.SCTransformer.setup_anndata(adata, labels_key="bulk_labels", library_size_key="n_counts")
        >>> model = sct.SCTransformer(adata, n_layers=1, d_model=16, n_heads=2)
        >>> model.train(max_epochs=1, enable_progress_bar=False)
        >>> labels = model.predict(adata, unknown_threshold=0.9)
        >>> sorted(adata.obs["sctransformer_prediction"].cat.categories)[-1]
        'Unknown'
        """
        if inplace and indices is not None:
            raise ValueError("indices can only be used with inplace=False (obs columns cover every cell).")
        if over_clustering is not None and not inplace:
            raise ValueError("over_clustering writes adata.obs: use it with inplace=True.")
        for name, value in (("unknown_threshold", unknown_threshold), ("novelty_threshold", novelty_threshold)):
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is a probability between 0 and 1, got {value}.")
        fit = self._novelty_for(adata)
        if novelty_threshold is not None and fit is None:
            raise ValueError(
                "This model has no novelty model (trained before it existed): retrain to use novelty_threshold."
            )

        def logits_and_novelty(tensors):
            logits = self._logits(tensors)
            if fit is None:
                return logits, torch.full((len(logits),), float("nan"))
            expression = self._expression(tensors).cpu().numpy()
            return logits, torch.as_tensor(novelty_percentile(fit, expression))

        adata, chunks = self._run(adata, indices, batch_size, logits_and_novelty)
        temperature = self.temperature if calibrated else 1.0
        probs = torch.softmax(torch.cat([c[0] for c in chunks]) / temperature, -1).numpy()
        novelty = torch.cat([c[1] for c in chunks]).numpy()
        categories = self._label_categories()
        obs_names = adata.obs_names if indices is None else adata.obs_names[np.asarray(indices)]
        codes = probs.argmax(1)
        confidence = probs.max(1)
        if unknown_threshold is not None or novelty_threshold is not None:
            if UNKNOWN in categories:
                raise ValueError(
                    f"The reference already has a cell type called {UNKNOWN!r}; rename it to call cells Unknown."
                )
            unknown = np.zeros(len(codes), dtype=bool)
            if unknown_threshold is not None:
                unknown |= confidence < unknown_threshold
            if novelty_threshold is not None:
                unknown |= novelty > novelty_threshold
            codes = np.where(unknown, len(categories), codes)
            categories = [*categories, UNKNOWN]
        predicted = pd.Categorical.from_codes(codes, categories=categories)
        if inplace:
            adata.obs[f"{key_added}_prediction"] = predicted
            adata.obs[f"{key_added}_confidence"] = confidence
            if fit is not None:
                adata.obs[f"{key_added}_novelty"] = novelty
            if over_clustering is not None:
                if over_clustering not in adata.obs:
                    raise KeyError(f"over_clustering={over_clustering!r} is not a column of adata.obs.")
                votes = pd.crosstab(adata.obs[over_clustering], predicted.astype(str)).idxmax(axis=1)
                adata.obs[f"{key_added}_majority_voting"] = pd.Categorical(
                    adata.obs[over_clustering].map(votes).astype(str), categories=categories
                )
        if soft:
            return pd.DataFrame(probs, index=obs_names, columns=self._label_categories())
        return np.asarray(predicted)

    def _label_categories(self) -> list[str]:
        mapping = self.adata_manager.get_state_registry(REGISTRY_KEYS.LABELS_KEY).categorical_mapping
        return [str(c) for c in mapping]

    def get_latent_representation(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int = 128,
        key_added: str = ADATA_KEYS.LATENT,
        inplace: bool = True,
    ) -> np.ndarray:
        """Cell embeddings: the final CLS state of each cell.

        Parameters
        ----------
        adata
            Registered AnnData; the training data when ``None``.
        indices
            Cells to embed (all when ``None``); only used when ``inplace=False``.
        batch_size
            Cells per minibatch.
        key_added
            ``obsm`` key written.
        inplace
            Write the embedding into ``adata.obsm[key_added]``.

        Returns
        -------
        ``(cells, d_model)`` array.

        Sets the following fields (when ``inplace``)
        --------------------------------------------
        ``adata.obsm["X_sctransformer"]``
            The embedding, for ``sc.pp.neighbors(adata, use_rep="X_sctransformer")``.
        """
        if inplace and indices is not None:
            raise ValueError("indices can only be used with inplace=False (obsm covers every cell).")
        adata, chunks = self._run(
            adata,
            indices,
            batch_size,
            lambda t: self.module.inference(**self.module._get_inference_input(t))["embedding"].cpu(),
        )
        latent = torch.cat(chunks).numpy()
        if inplace:
            adata.obsm[key_added] = latent
        return latent

    def get_attention(
        self,
        adata: AnnData | None = None,
        groupby: str | None = None,
        *,
        layer: int | None = None,
        batch_size: int = 32,
        key_added: str = ADATA_KEYS.ATTENTION,
        inplace: bool = True,
    ) -> pd.DataFrame:
        """TF -> target attention per group of cells, aggregated on the fly (no per-cell matrices kept).

        For every regulon edge of the panel, the attention weight of the target gene's token on its
        TF's token (mean over heads, and over layers unless ``layer`` is given) is averaged over the cells
        of each group; a cell in which either gene is not expressed contributes 0. ``coverage`` is the
        fraction of a group's cells in which both genes are tokens. For ``mask="dense"`` the same
        edges are read from unconstrained attention (useful to test attention against the regulons);
        for ``"random"``/``"shuffled"`` most regulon edges are not allowed and read 0.

        Parameters
        ----------
        adata
            Registered AnnData; the training data when ``None``.
        groupby
            ``obs`` column defining the groups (e.g. ``"cell_type"`` or the predictions); all cells form
            one group when ``None``.
        layer
            Layer to read (0-based); the mean over layers when ``None``.
        batch_size
            Cells per minibatch (attention weights of a minibatch are held in memory).
        key_added
            ``uns`` key written.
        inplace
            Write the result into ``adata.uns[key_added]``.

        Returns
        -------
        Long table: ``group``, ``source`` (TF), ``target``, ``weight`` (regulon sign), ``score``, ``coverage``.

        Sets the following fields (when ``inplace``)
        --------------------------------------------
        ``adata.uns[key_added]``
            ``"scores"`` and ``"coverage"`` (edges x groups), ``"edges"`` (source, target, weight),
            ``"tf_scores"`` (TFs x groups: attention summed over a TF's targets), ``"cls_attention"``
            (panel genes x groups: CLS attention per gene), ``"mask"`` (:meth:`mask_summary`) and ``"params"``.
        """
        adata = self._validate_anndata(adata)
        if groupby is None:
            groups = pd.Categorical(np.repeat("all", adata.n_obs))
        else:
            if groupby not in adata.obs:
                raise KeyError(f"groupby column {groupby!r} not found in adata.obs.")
            column = adata.obs[groupby]
            if column.isna().any():
                raise ValueError(
                    f"adata.obs[{groupby!r}] has {int(column.isna().sum())} missing values; fill or drop them."
                )
            groups = pd.Categorical(column.astype(str))
        if layer is not None and not 0 <= layer < self.module.n_layers:
            raise ValueError(f"layer must be in 0..{self.module.n_layers - 1}, got {layer}.")
        edges = self.regulon_edges()
        n_genes = len(self.panel_)
        codes = edges["target_idx"].to_numpy() * n_genes + edges["source_idx"].to_numpy()
        order = np.argsort(codes)
        pair_codes = torch.as_tensor(codes[order], device=self.device)
        n_groups = len(groups.categories)
        score = torch.zeros(n_groups, len(edges))
        cover = torch.zeros(n_groups, len(edges))
        cls = torch.zeros(n_groups, n_genes)
        group_codes = torch.tensor(groups.codes, dtype=torch.long)
        loader = self._make_data_loader(adata=adata, batch_size=batch_size)
        self.module.eval()
        start = 0
        for tensors in loader:
            inputs = self.module._get_inference_input(tensors)
            inputs = {k: (v.to(self.device) if v is not None else None) for k, v in inputs.items()}
            out = self.module.pair_attention(**inputs, pair_codes=pair_codes, layers=None if layer is None else [layer])
            n = out["cls"].shape[0]
            onehot = torch.nn.functional.one_hot(group_codes[start : start + n], n_groups).float().T
            score += onehot @ out["pairs"].cpu()
            cover += onehot @ out["present"].cpu()
            cls += onehot @ out["cls"].cpu()
            start += n
        sizes = torch.as_tensor(np.bincount(groups.codes, minlength=n_groups), dtype=torch.float32).clamp(min=1)
        inverse = np.argsort(order)  # back from sorted codes to edge order
        score = (score / sizes[:, None]).numpy()[:, inverse]
        cover = (cover / sizes[:, None]).numpy()[:, inverse]
        cls = (cls / sizes[:, None]).numpy()
        names = [str(c) for c in groups.categories]
        edge_index = edges["source"] + "->" + edges["target"]
        scores = pd.DataFrame(score.T, index=edge_index, columns=names)
        coverage = pd.DataFrame(cover.T, index=edge_index, columns=names)
        tf_scores = scores.groupby(edges["source"].to_numpy()).sum()
        tf_scores.index.name = "tf"
        cls_attention = pd.DataFrame(cls.T, index=self.panel_["symbol"].to_numpy(), columns=names)
        long = scores.reset_index(drop=True).assign(
            source=edges["source"], target=edges["target"], weight=edges["weight"]
        )
        long = long.melt(id_vars=["source", "target", "weight"], var_name="group", value_name="score")
        long["coverage"] = coverage.to_numpy().T.ravel()
        long = long[["group", "source", "target", "weight", "score", "coverage"]]
        if inplace:
            adata.uns[key_added] = {
                "scores": scores,
                "coverage": coverage,
                "edges": edges[["source", "target", "weight"]].set_index(edge_index),
                "tf_scores": tf_scores,
                "cls_attention": cls_attention,
                "mask": self.mask_summary(),
                "params": {"groupby": groupby or "", "layer": -1 if layer is None else layer, "heads": "mean"},
            }
        return long

    def regulon_edges(self) -> pd.DataFrame:
        """The regulon edges (TF -> target) with both genes in the model's panel.

        Returns
        -------
        ``source``, ``target`` (gene symbols), ``weight`` (regulon sign / confidence weight),
        ``source_idx``, ``target_idx`` (panel positions). The prior the GRN mask is built from (with
        ``min_targets`` applied), whatever the model's ``mask``.
        """
        net = self.init_params_["non_kwargs"]["regulons"]
        edges = grn.regulon_edges_in(self.panel_.index, net, min_targets=self.init_params_["non_kwargs"]["min_targets"])
        symbol = self.panel_["symbol"].to_numpy()
        return edges.assign(source=symbol[edges["source_idx"]], target=symbol[edges["target_idx"]])

    def mask_summary(self) -> dict:
        """Genes, TFs, edges, density and every mask choice of this model.

        Returns
        -------
        A flat dict: panel size, TFs, allowed pairs (``edges``), the GRN reference count, ``density``
        (allowed pairs between distinct genes / all such pairs), direction, self-loops, CLS access,
        heads/layers left dense and how edge weights are used.
        """
        return dict(self.mask_)

    # ------------------------------------------------------------------ query
    @classmethod
    def prepare_query_anndata(
        cls,
        adata: AnnData,
        reference_model: str | os.PathLike | SCTransformer,
        *,
        gene_symbols: str | None = None,
        min_panel_match: float = 0.05,
        library_size_key: str | None = None,
        inplace: bool = True,
    ) -> AnnData | None:
        """Align a new dataset with a trained model's genes so that :meth:`predict` can read it.

        The query may lack a labels column and have other gene orders and fewer or more genes. Its
        genes are reordered to the model's; genes it lacks are zero-filled (never expressed, hence
        never tokens: excluded from attention) with a warning that counts them; genes the model does
        not know are dropped. Names that differ from the model's only by case or an Ensembl version
        suffix (``ENSG00000075624.17``) are matched, with a warning that counts them. A query measuring
        less than ``min_panel_match`` of the model's panel genes is refused with an error that shows the
        names the model expects and, when a ``var`` column would match better (symbols next to
        Ensembl IDs), names it. Library sizes are computed from the query's own counts *before*
        alignment (or taken from ``library_size_key``), so normalisation is not skewed by the genes
        the model does not know.

        Parameters
        ----------
        adata
            The query, raw counts in the layer the model was trained on (or in ``X``).
        reference_model
            A trained :class:`SCTransformer` or the directory it was saved to.
        gene_symbols
            ``var`` column holding gene names in the model's naming (e.g. symbols when ``var_names`` are
            Ensembl IDs); ``var_names`` when ``None``. The aligned query is indexed by these names.
        min_panel_match
            Smallest share of the model's panel genes the query must measure.
        library_size_key
            ``obs`` column of total counts per cell, when the matrix holds only some genes.
        inplace
            Modify ``adata`` (default) or return a new AnnData.

        Returns
        -------
        ``None``, or the aligned AnnData when ``inplace=False``.

        Sets the following fields
        -------------------------
        ``adata.var["sctransformer_query_zero_filled"]``
            True for genes added as zeros.
        ``adata.uns["sctransformer_query"]``
            Counts of shared, zero-filled, dropped and case/version-matched genes and the panel match
            ratio.
        """
        if isinstance(reference_model, SCTransformer):
            saved = {
                SAVE_KEYS.VAR_NAMES_KEY: np.asarray(reference_model.get_var_names()),
                SAVE_KEYS.ATTR_DICT_KEY: {
                    "registry_": reference_model.registry_,
                    "init_params_": reference_model.init_params_,
                },
            }
        else:
            saved = load_saved(reference_model, cls.__name__)
        return prepare_query(
            adata,
            saved,
            gene_symbols=gene_symbols,
            min_panel_match=min_panel_match,
            library_size_key=library_size_key,
            inplace=inplace,
        )

    @classmethod
    def load(cls, dir_path: str | os.PathLike, adata: AnnData | None = None, **kwargs) -> SCTransformer:
        """Load a model saved with :meth:`save`.

        Parameters
        ----------
        dir_path
            Directory written by ``model.save``.
        adata
            Data with the model's genes (the reference, or a query prepared with
            :meth:`prepare_query_anndata`). ``None`` loads the AnnData saved with the model, if any.
        **kwargs
            Passed to :meth:`scvi.model.base.BaseModelClass.load` (``accelerator``, ``device``).

        Returns
        -------
        The model, in evaluation mode.
        """
        saved = load_saved(dir_path, cls.__name__)
        if adata is not None:
            var_names = pd.Index(saved[SAVE_KEYS.VAR_NAMES_KEY])
            if not adata.var_names.equals(var_names):
                n_shared = int(var_names.isin(adata.var_names).sum())
                raise ValueError(
                    f"adata's genes differ from the saved model's ({n_shared:,} of {len(var_names):,} present). "
                    f"Run `SCTransformer.prepare_query_anndata(adata, {str(dir_path)!r})` first."
                )
        return super().load(str(dir_path), adata=adata, **kwargs)
