"""Cell embeddings for ``sc.pp.neighbors``: the final CLS state of each cell."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from anndata import AnnData

from sctransformer_tools._constants import ADATA_KEYS, AUTO

from ._mudata import reads_mudata

logger = logging.getLogger(__name__)


class EmbeddingMixin:
    """``get_latent_representation``."""

    @reads_mudata
    def get_latent_representation(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int = 256,
        key_added: str = ADATA_KEYS.LATENT,
        inplace: bool = True,
        *,
        layer: str | None = AUTO,
        gene_symbols: str | None = None,
        library_size_key: str | None = None,
    ) -> np.ndarray:
        """Cell embeddings: the final, layer-normalised CLS state of each cell.

        ``adata`` may be the reference or a new dataset (its genes are matched to the model's on the fly;
        see :meth:`prepare_query_anndata`).

        Parameters
        ----------
        adata
            Cells to embed; the reference when ``None``.
        indices
            Cells to embed (all when ``None``); only with ``inplace=False``.
        batch_size
            Cells per minibatch.
        key_added
            ``obsm`` key written.
        inplace
            Write the embedding into ``adata.obsm[key_added]``.
        layer, gene_symbols, library_size_key
            How to read a query (as in :meth:`predict`).

        Returns
        -------
        ``(cells, d_model)`` array.

        Sets the following fields (when ``inplace``)
        --------------------------------------------
        ``adata.obsm["X_sctransformer"]``
            The embedding, for ``sc.pp.neighbors(adata, use_rep="X_sctransformer")``.

        Examples
        --------
        >>> import sctransformer_tools as sct
        >>> adata = sct.ds.pbmc68k_reduced()
        >>> sct.SCTransformer.setup_anndata(adata, labels_key="bulk_labels")
        >>> model = sct.SCTransformer(adata, n_layers=1, d_model=16, n_heads=2, n_top_genes=0)
        >>> model.train(max_epochs=1, enable_progress_bar=False)
        >>> model.get_latent_representation(adata).shape, adata.obsm["X_sctransformer"].shape
        ((700, 16), (700, 16))
        """
        self.require_trained()
        if inplace and indices is not None:
            raise ValueError("indices can only be used with inplace=False (obsm covers every cell).")
        target = self.adata if adata is None else adata

        def embed(batch):
            return self.module.encode(batch).embedding.float().cpu()

        reading = {"layer": layer, "gene_symbols": gene_symbols, "library_size_key": library_size_key}
        with self.reader.read(adata, **reading) as data:
            chunks = self.reader.map_batches(data, embed, indices, batch_size)
        width = self.module.cls.shape[-1]
        latent = torch.cat(chunks).numpy() if chunks else np.zeros((0, width), dtype=np.float32)
        if inplace:
            target.obsm[key_added] = latent
            logger.info("Embedded %s cells: adata.obsm[%r].", f"{len(latent):,}", key_added)
        return latent
