"""SCTransformer: the AnnData-facing model, composed from focused mixins (scvi-tools' BaseModelClass)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scvi import REGISTRY_KEYS
from scvi.data._constants import _SETUP_ARGS_KEY
from scvi.dataloaders import DataSplitter
from scvi.model.base import BaseModelClass
from scvi.train import TrainRunner

from sctransformer_tools._colors import column_colors, scanpy_default_colors
from sctransformer_tools.module import SCTransformerModule

from ._attention import AttentionMixin
from ._embedding import EmbeddingMixin
from ._mapping import MappingMixin
from ._mudata import counts_layer, expression_view, is_mudata, rna_modality, rna_of
from ._prediction import PredictionMixin
from ._pretraining import PretrainingMixin
from ._query import QueryMixin
from ._reader import CellReader
from ._save import SaveLoadMixin
from ._setup import SetupMixin, gene_symbols_of
from ._spec import DEFAULTS, MODULE_SETTINGS, ModelSpec, fit_expression_profile, fit_panel_share, panel_counts
from ._training import TrainingMixin
from ._trainingplan import SCTransformerTrainingPlan

logger = logging.getLogger(__name__)


class SCTransformer(
    SetupMixin,
    MappingMixin,
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

    The CLS token starts from the cell's whole expression profile: its coordinates on the principal components
    of the panel's highly variable genes, fitted on every cell the model is set up with, labelled or not
    (``profile_components``; :class:`~sctransformer_tools.module.ExpressionProfile`).

    The network is defined by its :class:`~sctransformer_tools.model.ModelSpec` (``model.spec_``: panel, edges,
    mask, settings), resolved once from the data. Cells are read through one
    :class:`~sctransformer_tools.model.CellReader` (``model.reader``). The methods come from mixins, one job
    each: ``setup_anndata``/``setup_mudata``, ``train``, ``pretrain``/``from_pretrained``, ``predict``,
    ``get_latent_representation``, ``get_attention``, ``prepare_query_anndata``, ``load_query_data`` and
    ``save``/``load``.

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
    profile_components
        Principal components of the expression profile added to the CLS token; 0 for none.
    size_factors
        What each cell's counts are divided by before ``log1p``: ``"panel"``, its counts over the model's panel
        genes (the model's input then does not depend on which other genes a dataset holds; a query lacking
        panel genes is scaled by the reference's share of those it measures), or ``"library"``, its library size
        (``library_size_key`` of :meth:`setup_anndata`, else the row sums).
    seed
        Seed of the random and shuffled masks and of the weights' initialisation.
    panel_genes
        Explicit gene panel (names in ``var_names``); default: chosen from the regulons and ``n_top_genes``.
    regulons
        Regulons to use instead of those given to :meth:`setup_anndata`.
    spec
        A resolved :class:`~sctransformer_tools.model.ModelSpec` to build the network from (``load``,
        ``from_pretrained`` and ``load_query_data`` pass it); the settings above are then those of the spec.
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
        profile_components: int = 50,
        size_factors: Literal["panel", "library"] = "panel",
        seed: int = 0,
        panel_genes: Sequence[str] | None = None,
        regulons: str | pd.DataFrame | None = None,
        spec: ModelSpec | None = None,
        registry: dict | None = None,
        **module_kwargs,
    ):
        super().__init__(adata, registry=registry)
        setup_args = self.registry_[_SETUP_ARGS_KEY]
        data = expression_view(adata, rna_modality(adata, setup_args)) if is_mudata(adata) else adata
        var_names = pd.Index(self.get_var_names()).astype(str)
        fit_here = spec is None
        if spec is None:
            if data is None:
                raise ValueError("A model built without data needs its spec (SCTransformer.load passes it).")
            settings = {k: v for k, v in locals().items() if k in DEFAULTS}
            spec = ModelSpec.resolve(
                data,
                var_names,
                setup_args,
                mask=mask,
                symbols=gene_symbols_of(data, setup_args.get("gene_symbols")),
                layer=counts_layer(setup_args),
                panel_genes=panel_genes,
                regulons=regulons,
                module_kwargs=module_kwargs,
                **settings,
            )
        self.spec_ = spec
        self.reader = CellReader(
            var_names, spec.genes, self.registry_, model=self, size_factors=spec.settings["size_factors"]
        )
        s = spec.settings
        torch.manual_seed(s["seed"])
        gene_mask = spec.build_mask()
        n_labels = self.summary_stats.n_labels
        weights = None
        if s["class_weights"] == "balanced" and data is not None:
            codes = self.adata_manager.get_from_registry(REGISTRY_KEYS.LABELS_KEY).ravel()
            counts = np.bincount(codes[codes < n_labels], minlength=n_labels).astype(float)
            weights = 1 / np.sqrt(np.maximum(counts, 1))
            weights = weights / (weights * counts).sum() * counts.sum()
        self.module = self._module_cls(
            n_input=len(var_names),
            n_labels=n_labels,
            panel_index=var_names.get_indexer(spec.genes),
            mask_pairs=gene_mask.pairs,
            pair_weight=gene_mask.pair_weight,
            n_batch=self.summary_stats.n_batch if setup_args.get("batch_key") else 0,
            **{k: s[k] for k in MODULE_SETTINGS},
            log_normalized=setup_args.get("log_normalized", False),
            class_weights=weights,
            profile_genes=spec.profile_positions(),
            **s.get("module_kwargs", {}),
        )
        if fit_here:  # what is fitted on the registered cells, labelled or not (then saved with the weights)
            counts, library = panel_counts(data, spec, setup_args)
            if s["size_factors"] == "panel" and not setup_args.get("log_normalized", False):
                self.module.tokenizer.panel_share.copy_(torch.as_tensor(fit_panel_share(counts)))
            if self.module.profile is not None:
                log_normalized = setup_args.get("log_normalized", False)
                self.module.profile.set_projection(**fit_expression_profile(counts, library, spec, log_normalized))
        self.init_params_ = self._get_init_params(locals())
        self.label_colors_ = self._reference_colors(data, setup_args.get("labels_key"))
        self._mask_summary = gene_mask.summary() | {
            "panel_genes": len(spec.panel),
            "regulon_genes": int(spec.panel["is_regulon_gene"].sum()),
            "extra_genes": int((~spec.panel["is_regulon_gene"]).sum()),
            "regulon_edges": len(spec.edges),
            "n_layers": s["n_layers"],
            "n_heads": s["n_heads"],
            "dense_heads": s["dense_heads"],
            "masked_layers": list(self.module.masked_layers),
            "edge_weights": "attention bias (learned scale x sign)" if s["edge_bias"] else "ignored",
        }
        self._model_summary_string = (
            f"SCTransformer: mask={spec.mask!r}, {len(spec.panel):,} panel genes ({self._mask_summary['tfs']} TFs), "
            f"{gene_mask.n_pairs:,} allowed gene pairs (density {gene_mask.density:.2e}), {s['n_layers']} layers x "
            f"{s['n_heads']} heads, d_model={s['d_model']}, {n_labels} cell types."
        )

    @property
    def panel_(self) -> pd.DataFrame:
        """The gene panel (``spec_.panel``): one row per panel gene, ``symbol``, ``is_tf``, ``is_regulon_gene``..."""
        return self.spec_.panel

    def mask_summary(self) -> dict:
        """Genes, TFs, edges, density and every mask choice of this model.

        Returns
        -------
        A flat dict: panel size, TFs, allowed pairs (``edges``), the GRN reference count, ``density``
        (allowed pairs between distinct genes / all such pairs), direction, self-loops, CLS access,
        heads/layers left dense and how edge weights are used.
        """
        return dict(self._mask_summary)

    def regulon_edges(self) -> pd.DataFrame:
        """The regulon edges (TF -> target) with both genes in the model's panel.

        Returns
        -------
        ``source``, ``target`` (gene symbols), ``weight`` (regulon sign / confidence weight), ``source_idx``,
        ``target_idx`` (panel positions). The prior the GRN mask is built from (with ``min_targets``
        applied), whatever the model's ``mask``.
        """
        return self.spec_.regulon_edges()

    def get_gene_embeddings(self) -> pd.DataFrame:
        """The gene identity embeddings the model learned: one row per panel gene (index: gene symbol).

        Returns
        -------
        ``(panel genes, d_model)`` table.
        """
        weights = self.module.gene_embeddings().detach().float().cpu().numpy()
        return pd.DataFrame(weights, index=pd.Index(self.spec_.panel["symbol"].astype(str), name="symbol"))

    @property
    def cell_type_colors(self) -> dict[str, str]:
        """The colour of each reference cell type (the reference's ``uns["<labels_key>_colors"]`` when it had
        them), which predictions and the package's plots use.
        """
        return dict(zip(self.cell_types, getattr(self, "label_colors_", None) or [], strict=False))

    def _reference_colors(self, adata: AnnData | None, labels_key: str | None) -> list[str]:
        """The colour of each cell type as ``sc.pl.umap(reference, color=labels_key)`` draws it: the reference's
        ``uns[f"{labels_key}_colors"]`` if set, else scanpy's default rule over the column's categories.
        """
        types = self.cell_types
        fallback = scanpy_default_colors(types)
        if adata is None or labels_key is None or labels_key not in adata.obs:
            return [fallback[t] for t in types]
        lookup = column_colors(adata.obs[labels_key], adata.uns.get(f"{labels_key}_colors"))
        return [lookup.get(t, fallback[t]) for t in types]

    # ------------------------------------------------------------- internals
    def get_var_names(self, legacy_mudata_format: bool = False) -> np.ndarray:
        """The model's input genes (of the registered AnnData, or saved with the model when loaded without data)."""
        if self.adata is not None and is_mudata(self.adata):  # the RNA modality's genes
            return rna_of(self.adata, self.registry_).var_names.astype(str).to_numpy()
        if self.adata is not None:
            return super().get_var_names(legacy_mudata_format=legacy_mudata_format)
        return np.asarray(self.__dict__["_saved_var_names"])

    def require_trained(self) -> None:
        """Raise when the model has not been trained (its outputs would be those of random weights)."""
        if not self.is_trained_:
            raise RuntimeError(
                "This model has not been trained: its outputs would be those of random weights. Call "
                "model.train() first, or load a trained model with SCTransformer.load(folder)."
            )

    @property
    def cell_types(self) -> list[str]:
        """The reference's cell types, in the classifier's order."""
        state = self.registry_["field_registries"][REGISTRY_KEYS.LABELS_KEY]["state_registry"]
        return [str(c) for c in state["categorical_mapping"]]
