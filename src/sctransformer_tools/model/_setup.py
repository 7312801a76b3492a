"""Registering a reference: ``setup_anndata`` and ``setup_mudata`` (scvi-tools' conventions), with the checks
that training needs (counts, labels, regulons that reach the data's genes).
"""

from __future__ import annotations

import logging
import os
import warnings

import numpy as np
import pandas as pd
from anndata import AnnData
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data._constants import _SETUP_ARGS_KEY
from scvi.data.fields import LayerField, MuDataLayerField, MuDataNumericalObsField, MuDataWrapper, NumericalObsField
from scvi.utils import setup_anndata_dsp

from sctransformer_tools import grn
from sctransformer_tools._constants import ADATA_KEYS, SCT_REGISTRY_KEYS
from sctransformer_tools._data import (
    TolerantCategoricalObsField,
    check_expression,
    check_labels,
    check_var_names,
    find_library_size_key,
    library_sizes,
    user_stacklevel,
)

from ._mudata import RNA, counts_layer, expression_view, is_mudata, rna_modality

logger = logging.getLogger(__name__)

#: Labels and batches of a MuData, read from ``mdata.obs`` or a modality's ``obs`` (scvi-tools' MuData wrapper).
MuDataTolerantCategoricalObsField = MuDataWrapper(TolerantCategoricalObsField)


class SetupMixin:
    """``setup_anndata`` and ``setup_mudata``: register a reference and check what training needs."""

    @staticmethod
    def registry_fields(setup_args: dict) -> list:
        """The scvi-tools fields of an AnnData registered with ``setup_args`` (counts, labels, batches, library
        sizes); the reader registers aligned copies of new datasets with them.
        """
        return [
            LayerField(REGISTRY_KEYS.X_KEY, counts_layer(setup_args), is_count_data=False),
            TolerantCategoricalObsField(
                REGISTRY_KEYS.LABELS_KEY,
                setup_args.get("labels_key"),
                what="unlabelled",
                unlabeled_category=setup_args.get("unlabeled_category"),
            ),
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
        unlabeled_category: str | None = None,
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
            ``obs`` column with cell types. Cells without a label (missing values, or ``unlabeled_category``)
            are unlabelled: :meth:`train` learns from them too (semi-supervised), and they get predictions and
            embeddings like every cell.
        batch_key
            ``obs`` column with batches; adds a batch embedding to the CLS token (unseen batches of a query
            get a shared "unseen batch" embedding) and is used for highly variable gene selection.
        regulons
            ``"collectri"``, ``"dorothea"``, a DataFrame (``source``, ``target``, ``weight``) or a CSV/TSV path
            (see :func:`~sctransformer_tools.grn.load_regulons`).
        unlabeled_category
            Value of ``labels_key`` that marks unlabelled cells (scANVI's convention, e.g. ``"Unknown"``), for
            a reference joined with unlabelled data.
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
        library = cls._check_reference(adata, layer, setup_method_args[_SETUP_ARGS_KEY], kwargs.get("source_registry"))
        if library is not None:
            adata.obs[ADATA_KEYS.LIBRARY_COLUMN] = library
        setup_args = {
            "layer": layer,
            "labels_key": labels_key,
            "batch_key": batch_key,
            "unlabeled_category": unlabeled_category,
        }
        adata_manager = AnnDataManager(fields=cls.registry_fields(setup_args), setup_method_args=setup_method_args)
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
        unlabeled_category: str | None = None,
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
        unlabeled_category, organism, regulon_levels, gene_symbols, library_size_key, log_normalized
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
            rna_layer,
            setup_method_args[_SETUP_ARGS_KEY],
            kwargs.get("source_registry"),
        )
        if library is not None:
            rna.obs[ADATA_KEYS.LIBRARY_COLUMN] = library
        fields = [
            MuDataLayerField(REGISTRY_KEYS.X_KEY, rna_layer, mod_key=rna_mod, is_count_data=False, mod_required=True),
            MuDataTolerantCategoricalObsField(
                REGISTRY_KEYS.LABELS_KEY,
                labels_key,
                what="unlabelled",
                unlabeled_category=unlabeled_category,
                mod_key=modalities["labels_key"],
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
    def _check_reference(cls, adata: AnnData, layer: str | None, args: dict, source_registry: dict | None):
        """Check what training needs (genes, counts, labels, regulons) and return each cell's library size.

        ``args`` are the arguments of ``setup_anndata`` or ``setup_mudata`` (labels, batches, regulons, gene symbols,
        library sizes); ``adata`` holds the counts, in ``layer``. ``None`` when a reloaded reference already holds the
        library sizes it was set up with.
        """
        labels_key, unlabeled_category, batch_key = args["labels_key"], args["unlabeled_category"], args["batch_key"]
        regulons, organism, gene_symbols = args["regulons"], args["organism"], args["gene_symbols"]
        library_size_key, log_normalized = args["library_size_key"], args["log_normalized"]
        check_var_names(adata)
        check_expression(adata, layer, log_normalized)
        if source_registry is None:  # a new reference: check what training needs
            labelled = check_labels(adata, labels_key, unlabeled_category)
            if batch_key is not None and batch_key not in adata.obs:
                raise KeyError(
                    f"batch_key {batch_key!r} not found in adata.obs (columns: {list(adata.obs.columns)[:20]})."
                )
            if gene_symbols is not None and gene_symbols not in adata.var:
                raise KeyError(
                    f"gene_symbols column {gene_symbols!r} not found in adata.var (columns: {list(adata.var.columns)})."
                )
            net = grn.load_regulons(regulons, organism=organism, levels=args["regulon_levels"])
            symbols = gene_symbols_of(adata, gene_symbols)
            if grn.looks_like_mouse(symbols) and not grn.looks_like_mouse(pd.unique(net["target"])):
                warnings.warn(
                    _mouse_symbols_message(symbols, net, regulons, organism), UserWarning, stacklevel=user_stacklevel()
                )
            grn.select_panel(adata.var_names, net, symbols=symbols)  # raises with the overlap counts if none fit
            if labelled < adata.n_obs:
                logger.info(
                    "%s of %s cells have no label: train() learns from them too (semi-supervised).",
                    f"{adata.n_obs - labelled:,}",
                    f"{adata.n_obs:,}",
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


def _mouse_symbols_message(symbols: pd.Index, net: pd.DataFrame, regulons, organism: str) -> str:
    """The warning for mouse-like gene names and regulons written the human way: how many were matched by case."""
    regulon_genes = pd.Index(pd.unique(np.concatenate([net["source"].to_numpy(), net["target"].to_numpy()])))
    by_case = ~symbols.isin(regulon_genes) & grn.gene_key(symbols).isin(grn.gene_key(regulon_genes))
    named = isinstance(regulons, str) and regulons.lower() in ("collectri", "dorothea")
    which = f"the {regulons} regulons (organism={organism!r})" if named else "the regulons"
    fix = "Pass organism='mouse' for mouse regulons" if named and organism == "human" else "Pass mouse regulons"
    return (
        f"The gene names look like mouse symbols ({list(symbols[:3])}) but {which} use human symbols: "
        f"{int(by_case.sum()):,} mouse genes were matched to regulon genes only by ignoring case, that is to their "
        f"human namesakes, which is not an ortholog mapping. {fix}, or map the genes to human orthologs first."
    )


def gene_symbols_of(adata: AnnData, gene_symbols: str | None) -> pd.Index:
    """The gene symbols of ``adata``: ``var[gene_symbols]``, or ``var_names`` when ``None``."""
    if gene_symbols is None:
        return pd.Index(adata.var_names.astype(str))
    if gene_symbols not in adata.var:
        raise KeyError(f"gene_symbols column {gene_symbols!r} not found in adata.var.")
    return pd.Index(adata.var[gene_symbols].astype(str).to_numpy())
