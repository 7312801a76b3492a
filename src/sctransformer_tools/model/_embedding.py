"""Cell embeddings for ``sc.pp.neighbors`` (the final CLS state of each cell), and contextual gene states."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from anndata import AnnData

from sctransformer_tools._constants import ADATA_KEYS, AUTO
from sctransformer_tools._docs import dsp

from ._mudata import reads_mudata

logger = logging.getLogger(__name__)


class EmbeddingMixin:
    """``get_latent_representation``, ``get_gene_states``."""

    @reads_mudata
    @dsp.dedent
    def get_latent_representation(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
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
        %(param_read_batch_size)s
        key_added
            ``obsm`` key written.
        inplace
            Write the embedding into ``adata.obsm[key_added]``.
        %(param_layer)s
        %(param_gene_symbols)s
        %(param_library_size_key)s

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
        >>> model, adata = sct.ds.toy_model()  # a tiny trained model and its data (pbmc68k_reduced)
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

    @reads_mudata
    @dsp.dedent
    def get_gene_states(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        *,
        depths: Sequence[int] | None = None,
        batch_size: int | None = None,
        min_cells: int = 1,
        layer: str | None = AUTO,
        gene_symbols: str | None = None,
        library_size_key: str | None = None,
    ) -> dict[int, pd.DataFrame]:
        """Contextual gene states: each gene's token state in the residual stream, averaged over the cells expressing it.

        Every cell read gives each of its gene tokens a state at every depth of the encoder: depth 0 is the token
        entering the first block (gene identity + value embedding), depth ``i`` its state after block ``i``. A
        gene's state at a depth is the mean of its tokens' states over the cells read that express it (cells are
        read whole, without token dropout). These are the contextual gene representations that gene-embedding
        analyses of single-cell transformers read layer by layer
        (:func:`sctransformer_tools.tl.gene_embedding_audit`); :meth:`get_gene_embeddings` is the static
        identity table. The model need not be fine-tuned: a pretrained or an untrained encoder reads cells too
        (the latter as a baseline).

        Parameters
        ----------
        adata
            Cells to read; the reference when ``None``.
        indices
            Cells to read (all when ``None``).
        depths
            Depths to return (0 .. ``n_layers``); all when ``None``.
        %(param_read_batch_size)s
        min_cells
            Genes expressed in fewer of the cells read are left out.
        %(param_layer)s
        %(param_gene_symbols)s
        %(param_library_size_key)s

        Returns
        -------
        Depth -> ``(genes, d_model)`` table, one row per panel gene expressed in at least ``min_cells`` cells read
        (index: gene symbol), in panel order.

        Examples
        --------
        >>> import sctransformer_tools as sct
        >>> adata = sct.ds.pbmc68k_reduced()
        >>> sct.SCTransformer.setup_anndata(adata, labels_key="bulk_labels")
        >>> model = sct.SCTransformer(adata, n_layers=2, d_model=16, n_heads=2, n_top_genes=0)
        >>> states = model.get_gene_states(adata, indices=range(200))
        >>> sorted(states), states[2].shape[1], states[0].index.equals(states[2].index)
        ([0, 1, 2], 16, True)
        """
        module = self.module
        n_layers = module.n_layers
        depths = list(range(n_layers + 1)) if depths is None else sorted({int(d) for d in depths})
        if any(not 0 <= d <= n_layers for d in depths):
            raise ValueError(
                f"depths must lie in 0..{n_layers} (0: the tokens entering the first block), got {depths}."
            )
        panel = self.spec_.panel
        n_genes, width = len(panel), module.cls.numel()
        sums = torch.zeros(len(depths), n_genes, width, dtype=torch.float64)
        counts = torch.zeros(n_genes, dtype=torch.float64)

        def read(batch) -> None:
            entering = {}

            def keep(identity, value, tokens):
                entering["states"] = identity + value
                return entering["states"]

            out = module.encode(batch, token_hook=keep, return_layers=n_layers > 0 and max(depths) > 0)
            n_cells = out.tokens.n_cells
            states = [entering["states"], *(h[n_cells:] for h in out.layers or [])]
            genes = out.tokens.gene_ids.cpu()
            for i, depth in enumerate(depths):
                sums[i].index_add_(0, genes, states[depth].detach().double().cpu())
            counts.index_add_(0, genes, torch.ones(len(genes), dtype=torch.float64))

        reading = {"layer": layer, "gene_symbols": gene_symbols, "library_size_key": library_size_key}
        with self.reader.read(adata, **reading) as data:
            chosen = None if indices is None else np.asarray(indices, dtype=np.int64)
            self.reader.map_batches(data.adata, read, chosen, batch_size)
        keep_genes = (counts >= max(min_cells, 1)).numpy()
        symbols = pd.Index(panel["symbol"].astype(str).to_numpy()[keep_genes], name="symbol")
        means = (sums[:, keep_genes] / counts[keep_genes][None, :, None]).float().numpy()
        return {depth: pd.DataFrame(means[i], index=symbols) for i, depth in enumerate(depths)}
