"""SCTransformer: the AnnData-facing model, composed from focused mixins (scvi-tools' BaseModelClass)."""

from __future__ import annotations

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
from scvi.data.fields import LayerField, MuDataLayerField, MuDataNumericalObsField, MuDataWrapper, NumericalObsField
from scvi.dataloaders import DataSplitter
from scvi.model.base import BaseModelClass
from scvi.train import TrainRunner
from scvi.utils import setup_anndata_dsp

from sctransformer_tools import grn
from sctransformer_tools._constants import ADATA_KEYS, SCT_REGISTRY_KEYS
from sctransformer_tools._data import (
    TolerantCategoricalObsField,
    check_expression,
    check_labels,
    check_var_names,
    find_library_size_key,
    highly_variable_genes,
    library_sizes,
)
from sctransformer_tools.module import SCTransformerModule

from ._attention import AttentionMixin
from ._embedding import EmbeddingMixin
from ._mudata import RNA, counts_layer, expression_view, is_mudata, rna_modality
from ._prediction import PredictionMixin
from ._pretraining import PretrainingMixin
from ._query import QueryMixin
from ._save import SaveLoadMixin
from ._training import TrainingMixin
from ._trainingplan import SCTransformerTrainingPlan

logger = logging.getLogger(__name__)

#: Labels and batches of a MuData, read from ``mdata.obs`` or a modality's ``obs`` (scvi-tools' MuData wrapper).
MuDataTolerantCategoricalObsField = MuDataWrapper(TolerantCategoricalObsField)


class SCTransformer(
    TrainingMixin,
    PretrainingMixin,
    PredictionMixin,
    EmbeddingMixin,
    AttentionMixin,
    QueryMixin,
    SaveLoadMixin,
    BaseModelClass,
):
    """Cell-type classifier: a Transformer over genes whose attention follows TF -> target regulons.

    Every cell is read as the set of panel genes it expresses (gene identity + expression value tokens)
    plus a CLS token. Gene tokens attend only along the mask: with ``mask="grn"`` a target gene reads its
    transcription factors (:func:`~sctransformer_tools.grn.build_mask`). The CLS token reads every gene;
    its final state is the cell embedding (``obsm["X_sctransformer"]``) and feeds the classifier.
    ``"dense"``, ``"random"`` and ``"shuffled"`` masks run the same code with no mask, or a random /
    degree-preserving shuffled mask of the same density: the controls that tell whether the biology of
    the prior helps, beyond its sparsity.

    The class composes: :class:`~sctransformer_tools.model._training.TrainingMixin` (``train``),
    :class:`~sctransformer_tools.model._prediction.PredictionMixin` (``predict``, calibration, novelty),
    :class:`~sctransformer_tools.model._embedding.EmbeddingMixin` (``get_latent_representation``),
    :class:`~sctransformer_tools.model._attention.AttentionMixin` (``get_attention``, ``mask_summary``),
    :class:`~sctransformer_tools.model._query.QueryMixin` (``prepare_query_anndata`` and the reading of
    new datasets) and :class:`~sctransformer_tools.model._save.SaveLoadMixin` (``save``, ``load``).

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata` (or a MuData registered with :meth:`setup_mudata`).
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
        Highly variable genes (scanpy, ``flavor="seurat_v3"`` on counts) added to the regulon genes of the
        panel; 0 for regulon genes only. They have no edges but reach the CLS token. On data opened backed
        or with more than 50,000 cells they are computed on a seeded sample of 50,000 cells.
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
        Use the regulon sign as a learned attention bias on allowed pairs (default: edges are allowed or
        not, signs ignored).
    max_tokens
        Cap on gene tokens per cell (the most expressed are kept).
    token_dropout
        Fraction of a cell's expressed genes dropped at random while training (augmentation).
    label_smoothing
        Label smoothing of the cross-entropy.
    class_weights
        ``None`` (plain cross-entropy) or ``"balanced"`` (weights inversely proportional to the square root
        of class frequency, for rare cell types).
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
    >>> adata = sct.ds.pbmc68k_reduced()  # 700 PBMCs, raw counts in X
    >>> sct.SCTransformer.setup_anndata(adata, labels_key="bulk_labels", regulons="collectri")
    >>> model = sct.SCTransformer(adata, mask="grn", n_layers=1, d_model=16, n_heads=2)
    >>> model.train(max_epochs=2, enable_progress_bar=False)
    >>> latent = model.get_latent_representation(adata)
    >>> sc.pp.neighbors(adata, use_rep="X_sctransformer")
    >>> "neighbors" in adata.uns
    True
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
        data = expression_view(adata, rna_modality(adata, setup_args)) if is_mudata(adata) else adata
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
            extra = pd.Index([])
            if n_top_genes:
                extra = highly_variable_genes(
                    data,
                    n_top_genes,
                    layer=counts_layer(setup_args),
                    batch_key=setup_args.get("batch_key"),
                    log_normalized=setup_args.get("log_normalized", False),
                )
            symbols = self._gene_symbols(data, setup_args.get("gene_symbols"))
            panel = grn.select_panel(var_names, net, symbols=symbols, extra_genes=extra, min_targets=min_targets)
        else:  # rebuilt from a saved model: its panel and edges, named by var_names
            net = grn.validate_regulons(regulons, name="the model's regulon edges")
            missing = pd.Index(panel_genes)[~pd.Index(panel_genes).isin(var_names)]
            if len(missing):
                raise ValueError(f"panel_genes not among the data's genes: {list(missing[:5])}")
            panel = grn.select_panel(var_names, net, extra_genes=panel_genes, min_targets=min_targets)
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
        # what a saved model needs to be rebuilt without the regulon source: the panel and its edges, named
        # by var_names
        panel_var = panel.genes
        edges_var = panel.edges.assign(
            source=panel_var[panel.edges["source_idx"]], target=panel_var[panel.edges["target_idx"]]
        )
        keep = [c for c in ("source", "target", "weight", "confidence") if c in edges_var.columns]
        self.init_params_ = self._get_init_params(locals())
        self.init_params_["non_kwargs"]["panel_genes"] = list(panel_var)
        self.init_params_["non_kwargs"]["regulons"] = edges_var[keep].reset_index(drop=True)
        self.panel_ = panel.frame()  # a model rebuilt from a saved one gets its symbols back with the saved panel_
        self.label_colors_ = self._reference_colors(data, setup_args.get("labels_key"))
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
    @staticmethod
    def _anndata_fields(setup_args: dict) -> list:
        """The scvi-tools fields of a registered AnnData (counts, labels, batches, library sizes)."""
        return [
            LayerField(REGISTRY_KEYS.X_KEY, counts_layer(setup_args), is_count_data=False),
            TolerantCategoricalObsField(REGISTRY_KEYS.LABELS_KEY, setup_args.get("labels_key"), what="unlabelled"),
            TolerantCategoricalObsField(REGISTRY_KEYS.BATCH_KEY, setup_args.get("batch_key"), what="an unseen batch"),
            NumericalObsField(SCT_REGISTRY_KEYS.LIBRARY_KEY, ADATA_KEYS.LIBRARY_COLUMN),
        ]

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
    ) -> None:
        """Register a reference AnnData for scTransformer and check it.

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
            ``obs`` column with batches; adds a batch embedding to the CLS token (unseen batches of a query
            get a shared "unseen batch" embedding) and is used for highly variable gene selection.
        regulons
            ``"collectri"``, ``"dorothea"``, a DataFrame (``source``, ``target``, ``weight``) or a CSV/TSV path
            (see :func:`~sctransformer_tools.grn.load_regulons`).
        organism
            Organism of ``"collectri"`` / ``"dorothea"``.
        regulon_levels
            DoRothEA confidence levels.
        gene_symbols
            ``var`` column with gene symbols, when ``var_names`` are not symbols (e.g. Ensembl IDs).
        library_size_key
            ``obs`` column with each cell's total counts over all genes. Default: a column with a usual name
            (``n_counts``, ``total_counts``, ``nCount_RNA``, ``nUMI``, ...) when it can hold totals (at least the
            row sums), else the row sums of the matrix. Matters when the matrix holds only some genes.
        log_normalized
            The matrix is log-normalised (``log1p(counts / total * 1e4)``) instead of counts.

        Sets the following fields
        -------------------------
        ``adata.obs["_sct_library_size"]``
            Library size per cell.
        ``adata.obs["_scvi_labels"]``, ``adata.obs["_scvi_batch"]``
            Integer codes used by the data loaders (scvi-tools convention).

        Examples
        --------
        >>> import sctransformer_tools as sct
        >>> adata = sct.ds.pbmc68k_reduced()
        >>> sct.SCTransformer.setup_anndata(adata, labels_key="bulk_labels")
        >>> adata.obs["_sct_library_size"].equals(adata.obs["n_counts"].astype(float))
        True
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        if is_mudata(adata):
            raise TypeError(
                "setup_anndata takes an AnnData, and this is a MuData: use SCTransformer.setup_mudata(mdata, "
                "modalities={'rna_layer': 'rna'}, labels_key=...) (the model reads the RNA modality), or pass the RNA "
                "modality itself (mdata.mod['rna']) to setup_anndata."
            )
        library = cls._check_reference(
            adata,
            layer=layer,
            labels_key=labels_key,
            batch_key=batch_key,
            regulons=regulons,
            organism=organism,
            regulon_levels=regulon_levels,
            gene_symbols=gene_symbols,
            library_size_key=library_size_key,
            log_normalized=log_normalized,
            source_registry=kwargs.get("source_registry"),
            stacklevel=3,
        )
        if library is not None:
            adata.obs[ADATA_KEYS.LIBRARY_COLUMN] = library
        setup_args = {"layer": layer, "labels_key": labels_key, "batch_key": batch_key}
        adata_manager = AnnDataManager(fields=cls._anndata_fields(setup_args), setup_method_args=setup_method_args)
        adata_manager.register_fields(adata, **kwargs)
        cls.register_manager(adata_manager)

    @classmethod
    def setup_mudata(
        cls,
        mdata,
        rna_layer: str | None = None,
        labels_key: str | None = None,
        batch_key: str | None = None,
        regulons: str | os.PathLike | pd.DataFrame = "collectri",
        *,
        modalities: dict[str, str] | None = None,
        organism: str = "human",
        regulon_levels: str = "ABC",
        gene_symbols: str | None = None,
        library_size_key: str | None = None,
        log_normalized: bool = False,
        **kwargs,
    ) -> None:
        """Register a reference MuData for scTransformer: the model reads its RNA modality, and ignores the others.

        Follows scvi-tools' ``setup_mudata`` (as in TOTALVI / MULTIVI): ``modalities`` maps an argument to the
        modality it applies to. Counts come from ``mdata.mod[modalities["rna_layer"]]`` (its ``X``, or
        ``rna_layer``); ``labels_key`` and ``batch_key`` are columns of ``mdata.obs`` unless ``modalities`` names a
        modality for them, and a column found only in the RNA modality's ``obs`` is read there. Everything else
        is as in :meth:`setup_anndata`. Methods that read cells (:meth:`predict`, :meth:`get_latent_representation`,
        :meth:`get_attention`) take the MuData too, and write their results to the MuData *and* its RNA
        modality.

        Parameters
        ----------
        mdata
            A :class:`~mudata.MuData` with an RNA modality holding raw counts.
        rna_layer
            Layer of the RNA modality holding raw counts (``None``: its ``X``).
        labels_key
            Column with cell types (missing values: unlabelled cells, kept but not used by the loss).
        batch_key
            Column with batches.
        regulons
            As in :meth:`setup_anndata`.
        modalities
            ``{"rna_layer": <RNA modality>, "labels_key": <modality or None>, "batch_key": <modality or None>}``.
            Default: ``{"rna_layer": "rna"}``.
        organism, regulon_levels, gene_symbols, library_size_key, log_normalized
            As in :meth:`setup_anndata` (``gene_symbols`` and ``library_size_key`` name columns of the RNA
            modality's ``var`` and ``obs``).

        Sets the following fields
        -------------------------
        ``mdata.mod[rna].obs["_sct_library_size"]``
            Library size per cell.
        ``"_scvi_labels"``, ``"_scvi_batch"``
            Integer codes used by the data loaders, in the ``obs`` that holds each column (scvi-tools
            convention).

        Examples
        --------
        >>> import anndata as ad
        >>> import mudata as md
        >>> import numpy as np
        >>> import sctransformer_tools as sct
        >>> rna = sct.ds.pbmc68k_reduced()  # 700 PBMCs, raw counts in X
        >>> protein = ad.AnnData(np.zeros((rna.n_obs, 3), dtype=np.float32), obs=rna.obs[[]])  # ignored
        >>> mdata = md.MuData({"rna": rna, "protein": protein})
        >>> sct.SCTransformer.setup_mudata(mdata, modalities={"rna_layer": "rna"}, labels_key="bulk_labels")
        >>> model = sct.SCTransformer(mdata, n_layers=1, d_model=16, n_heads=2, n_top_genes=0)
        >>> model.train(max_epochs=1, enable_progress_bar=False)
        >>> latent = model.get_latent_representation(mdata)
        >>> mdata.obsm["X_sctransformer"].shape == mdata["rna"].obsm["X_sctransformer"].shape == (700, 16)
        True
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        if not is_mudata(mdata):
            raise TypeError(
                f"setup_mudata takes a MuData, got {type(mdata).__name__}: use SCTransformer.setup_anndata for an AnnData."
            )
        if modalities is None:
            modalities = {RNA: rna_modality(mdata)}
        if RNA not in modalities:
            raise ValueError(
                f"modalities must name the RNA modality: modalities={{'rna_layer': ...}} (the MuData has {list(mdata.mod)})."
            )
        modalities = dict(cls._create_modalities_attr_dict(modalities, setup_method_args))
        rna_mod = rna_modality(mdata, {"modalities": modalities})
        rna = mdata.mod[rna_mod]
        for arg, column in (("labels_key", labels_key), ("batch_key", batch_key)):
            if column is None or modalities[arg] is not None or column in mdata.obs:
                continue
            if column in rna.obs:  # a column of the RNA modality, not pulled into mdata.obs
                modalities[arg] = rna_mod
                if kwargs.get("source_registry") is None:
                    logger.info("%s %r read from mdata[%r].obs.", arg, column, rna_mod)
        for arg, column in (("labels_key", labels_key), ("batch_key", batch_key)):
            holder = mdata if modalities[arg] is None else mdata.mod[modalities[arg]]
            if column is not None and column not in holder.obs:
                where = "mdata.obs" if modalities[arg] is None else f"mdata[{modalities[arg]!r}].obs"
                raise KeyError(
                    f"{arg} {column!r} not found in {where} nor in mdata[{rna_mod!r}].obs. Name the modality holding "
                    f"it with modalities={{'rna_layer': {rna_mod!r}, {arg!r}: ...}}."
                )
        library = cls._check_reference(
            expression_view(mdata, rna_mod),
            layer=rna_layer,
            labels_key=labels_key,
            batch_key=batch_key,
            regulons=regulons,
            organism=organism,
            regulon_levels=regulon_levels,
            gene_symbols=gene_symbols,
            library_size_key=library_size_key,
            log_normalized=log_normalized,
            source_registry=kwargs.get("source_registry"),
            stacklevel=3,
        )
        if library is not None:
            rna.obs[ADATA_KEYS.LIBRARY_COLUMN] = library
        fields = [
            MuDataLayerField(REGISTRY_KEYS.X_KEY, rna_layer, mod_key=rna_mod, is_count_data=False, mod_required=True),
            MuDataTolerantCategoricalObsField(
                REGISTRY_KEYS.LABELS_KEY, labels_key, what="unlabelled", mod_key=modalities["labels_key"]
            ),
            MuDataTolerantCategoricalObsField(
                REGISTRY_KEYS.BATCH_KEY, batch_key, what="an unseen batch", mod_key=modalities["batch_key"]
            ),
            MuDataNumericalObsField(SCT_REGISTRY_KEYS.LIBRARY_KEY, ADATA_KEYS.LIBRARY_COLUMN, mod_key=rna_mod),
        ]
        adata_manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
        adata_manager.register_fields(mdata, **kwargs)
        cls.register_manager(adata_manager)

    @classmethod
    def _check_reference(
        cls,
        adata: AnnData,
        *,
        layer: str | None,
        labels_key: str | None,
        batch_key: str | None,
        regulons,
        organism: str,
        regulon_levels: str,
        gene_symbols: str | None,
        library_size_key: str | None,
        log_normalized: bool,
        source_registry: dict | None,
        stacklevel: int = 2,
    ):
        """Check what training needs (genes, counts, labels, regulons) and return each cell's library size.

        ``None`` when a reloaded reference already holds the library sizes it was set up with.
        """
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
            if isinstance(regulons, str) and organism == "human" and grn.looks_like_mouse(symbols):
                warnings.warn(
                    f"The gene names look like mouse symbols ({list(symbols[:3])}) but organism='human': the human "
                    f"{regulons} regulons are matched to them ignoring case, which treats mouse genes as their human "
                    "namesakes. Pass organism='mouse' for mouse regulons, or map the genes to human orthologs first.",
                    UserWarning,
                    stacklevel=stacklevel,
                )
            grn.select_panel(adata.var_names, net, symbols=symbols)  # raises with the overlap counts if none fit
            labelled = int(adata.obs[labels_key].notna().sum())
            if labelled < adata.n_obs:
                logger.info(
                    "%d of %d cells have no label: kept, but not used by the loss.", adata.n_obs - labelled, adata.n_obs
                )
        if ADATA_KEYS.LIBRARY_COLUMN in adata.obs and source_registry is not None:
            return None  # a reloaded reference keeps the library sizes it was set up with
        key = library_size_key
        if key is None and not log_normalized:
            row_sums = library_sizes(adata, layer)
            key = find_library_size_key(adata, layer, row_sums)
            if key is not None:
                logger.info("Library sizes read from adata.obs[%r] (totals over all genes).", key)
                library = library_sizes(adata, layer, key)
            else:
                library = row_sums
        else:
            library = library_sizes(adata, layer, key)
        n_empty = int((np.asarray(library) <= 0).sum())
        if n_empty:
            logger.info("%d cells have no counts: they are kept and classified from the CLS token alone.", n_empty)
        return library

    def _reference_colors(self, adata: AnnData | None, labels_key: str | None) -> dict[str, str]:
        """One colour per cell type: the reference's ``uns[f"{labels_key}_colors"]`` if set, else scanpy's palette."""
        from sctransformer_tools.pl import label_colors

        categories = self._label_categories()
        stored = None
        if adata is not None and labels_key is not None and f"{labels_key}_colors" in adata.uns:
            column = adata.obs[labels_key]
            names = column.cat.categories.astype(str) if hasattr(column, "cat") else []
            colors = list(adata.uns[f"{labels_key}_colors"])
            if len(colors) == len(names):
                lookup = dict(zip(names, colors, strict=True))
                if all(c in lookup for c in categories):
                    stored = [lookup[c] for c in categories]
        return label_colors(categories, stored)

    @staticmethod
    def _gene_symbols(adata: AnnData, gene_symbols: str | None) -> pd.Index:
        if gene_symbols is None:
            return pd.Index(adata.var_names.astype(str))
        if gene_symbols not in adata.var:
            raise KeyError(f"gene_symbols column {gene_symbols!r} not found in adata.var.")
        return pd.Index(adata.var[gene_symbols].astype(str).to_numpy())

    # ------------------------------------------------------------- internals
    def get_var_names(self, legacy_mudata_format: bool = False) -> np.ndarray:
        """The model's input genes (of the registered AnnData, or saved with the model when loaded without data)."""
        if self.adata is not None and is_mudata(self.adata):  # the RNA modality's genes
            return (
                self.adata.mod[rna_modality(self.adata, self.registry_[_SETUP_ARGS_KEY])]
                .var_names.astype(str)
                .to_numpy()
            )
        if self.adata is not None:
            return super().get_var_names(legacy_mudata_format=legacy_mudata_format)
        return np.asarray(self.__dict__["_saved_var_names"])

    def _check_trained(self) -> None:
        if not self.is_trained_:
            raise RuntimeError(
                "This model has not been trained: its outputs would be those of random weights. Call "
                "model.train() first, or load a trained model with SCTransformer.load(folder)."
            )

    def _label_categories(self) -> list[str]:
        """The reference's cell types, in the classifier's order."""
        state = self.registry_["field_registries"][REGISTRY_KEYS.LABELS_KEY]["state_registry"]
        return [str(c) for c in state["categorical_mapping"]]

    @torch.inference_mode()
    def _batches(self, adata: AnnData, indices, batch_size: int, fn) -> list:
        """``fn`` applied to each minibatch of a registered AnnData (evaluation mode, no gradients)."""
        if adata.n_obs == 0 or (indices is not None and len(indices) == 0):
            return []
        loader = self._make_data_loader(adata=adata, indices=indices, batch_size=batch_size)
        self.module.eval()
        return [fn(tensors) for tensors in loader]
