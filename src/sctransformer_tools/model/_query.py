"""Checking a new dataset against a trained model before annotating it: ``prepare_query_anndata``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pandas as pd
from anndata import AnnData
from scvi.data._constants import _SETUP_ARGS_KEY

from sctransformer_tools._constants import ADATA_KEYS, AUTO
from sctransformer_tools._docs import dsp

from ._mudata import counts_layer, expression_view, is_mudata, rna_modality, write_back
from ._reader import CellReader

if TYPE_CHECKING:
    from mudata import MuData


class QueryMixin:
    """Reading new datasets: ``prepare_query_anndata`` (optional) and the alignment behind every reading method."""

    # ------------------------------------------------------------------ public
    @classmethod
    @dsp.dedent
    def prepare_query_anndata(
        cls,
        adata: AnnData | MuData,
        reference_model: str | os.PathLike | QueryMixin,
        *,
        layer: str | None = AUTO,
        gene_symbols: str | None = None,
        library_size_key: str | None = None,
        min_panel_match: float = 0.05,
        inplace: bool = True,
        allow_pickle: bool = False,
    ) -> AnnData | None:
        """Check a new dataset against a trained model and record how the model will read it.

        Optional: :meth:`predict`, :meth:`get_latent_representation` and :meth:`get_attention` align a query
        themselves. Preparing first checks the query early (and lets its choices, ``layer``, ``gene_symbols``,
        ``library_size_key``, be given once). Nothing of the query is reshaped: it keeps all of its genes and
        columns.

        The query may lack a labels column, order its genes differently and have fewer or more genes.
        Genes it lacks are read as not expressed (never tokens: outside attention), with a warning that
        counts them; names that differ from the model's only by case or an Ensembl version suffix
        (``ENSG00000075624.17``) are matched. A query measuring less than ``min_panel_match`` of the model's
        panel genes is refused with an error that shows the names the model expects and, when a ``var``
        column would match better (symbols next to Ensembl IDs), names it.

        Parameters
        ----------
        adata
            The query, raw counts in ``X`` or a layer (a MuData: its RNA modality, see
            :meth:`~sctransformer_tools.SCTransformer.setup_mudata`).
        reference_model
            A trained model or the folder it was saved to.
        %(param_layer)s
        %(param_gene_symbols)s
        %(param_library_size_key)s
        %(param_min_panel_match)s
        inplace
            Record the check in ``adata.uns`` (default), or return a new AnnData of the query aligned to the
            model's genes (counts in ``X``, the query's ``obs``).
        allow_pickle
            Also read a model folder saved by an earlier version (a pickle: only for folders you trust).

        Returns
        -------
        ``None``, or the aligned AnnData when ``inplace=False``.

        Sets the following fields (when ``inplace``)
        --------------------------------------------
        ``adata.uns["sctransformer_query"]``
            Shared, zero-filled, unused and case/version-matched gene counts, the panel match ratio, where
            counts and library sizes were read, and ``params`` (``layer``, ``gene_symbols``,
            ``library_size_key``, ``min_panel_match``) that later calls reuse.

        Examples
        --------
        >>> import sctransformer_tools as sct
        >>> adata = sct.ds.pbmc68k_reduced()
        >>> sct.SCTransformer.setup_anndata(adata, labels_key="bulk_labels")
        >>> model = sct.SCTransformer(adata, n_layers=1, d_model=16, n_heads=2, n_top_genes=0)
        >>> query = adata[:50, ::-1].copy()  # genes in another order
        >>> sct.SCTransformer.prepare_query_anndata(query, model)
        >>> query.uns["sctransformer_query"]["panel_match_ratio"], query.n_vars
        (1.0, 765)
        """
        if is_mudata(adata):  # its RNA modality; the report goes to the MuData and to that modality
            setup = reference_model.registry_[_SETUP_ARGS_KEY] if isinstance(reference_model, QueryMixin) else None
            modality = rna_modality(adata, setup)
            view = expression_view(adata, modality)
            before = {"obs": {}, "obsm": {}, "uns": dict(view.uns)}
            result = cls.prepare_query_anndata(
                view,
                reference_model,
                layer=layer,
                gene_symbols=gene_symbols,
                library_size_key=library_size_key,
                min_panel_match=min_panel_match,
                inplace=inplace,
                allow_pickle=allow_pickle,
            )
            if inplace:
                view.obs = view.obs[[]]  # nothing of obs is written by preparation
                write_back(view, before, adata, modality)
            return result
        if isinstance(reference_model, QueryMixin):
            reader = reference_model.reader
        else:
            reader = CellReader.of_folder(reference_model, cls.__name__, allow_pickle=allow_pickle)
        read = reader.align(
            adata,
            layer=layer,
            gene_symbols=gene_symbols,
            library_size_key=library_size_key,
            min_panel_match=min_panel_match,
            previous=adata.uns.get(ADATA_KEYS.QUERY),
        )
        if inplace:
            adata.uns[ADATA_KEYS.QUERY] = read.report
            return None
        setup = reader.registry[_SETUP_ARGS_KEY]
        aligned = AnnData(X=read.matrix, obs=adata.obs.copy(), var=pd.DataFrame(index=reader.var_names))
        aligned.var[f"{ADATA_KEYS.QUERY}_zero_filled"] = ~read.present
        aligned.obs[ADATA_KEYS.LIBRARY_COLUMN] = read.library
        if counts_layer(setup) is not None:
            aligned.layers[counts_layer(setup)] = aligned.X
        aligned.uns[ADATA_KEYS.QUERY] = read.report
        return aligned
