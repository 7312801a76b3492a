"""TF -> target attention per group of cells, aggregated on the fly; the model's mask and regulon edges."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from anndata import AnnData

from sctransformer_tools._constants import ADATA_KEYS, AUTO
from sctransformer_tools._docs import dsp

from ._mudata import reads_mudata


class AttentionMixin:
    """``get_attention``, ``regulon_edges`` and ``mask_summary``."""

    @reads_mudata
    @dsp.dedent
    def get_attention(
        self,
        adata: AnnData | None = None,
        groupby: str | None = None,
        *,
        layer: int | None = None,
        batch_size: int | None = None,
        key_added: str = ADATA_KEYS.ATTENTION,
        inplace: bool = True,
        counts_layer: str | None = AUTO,
        gene_symbols: str | None = None,
        library_size_key: str | None = None,
    ) -> pd.DataFrame:
        """TF -> target attention per group of cells, aggregated on the fly (no per-cell matrices kept).

        For every regulon edge of the panel, the attention weight of the target gene's token on its TF's
        token (mean over heads, and over layers unless ``layer`` is given) is averaged over the cells of each
        group; a cell in which either gene is not expressed contributes 0. ``coverage`` is the fraction of a
        group's cells in which both genes are tokens. For ``mask="dense"`` the same edges are read from
        unconstrained attention (to test attention against the regulons); for ``"random"``/``"shuffled"``
        most regulon edges are not allowed and read 0.

        Parameters
        ----------
        adata
            Cells to read (the reference when ``None``; a new dataset is matched to the model's genes).
        groupby
            ``obs`` column defining the groups (e.g. ``"cell_type"`` or the predictions); all cells form one
            group when ``None``.
        layer
            Transformer layer to read (0-based); the mean over layers when ``None``.
        %(param_read_batch_size)s
        key_added
            ``uns`` key written.
        inplace
            Write the result into ``adata.uns[key_added]``.
        %(param_counts_layer)s
        %(param_gene_symbols)s
        %(param_library_size_key)s

        Returns
        -------
        Long table: ``group``, ``source`` (TF), ``target``, ``weight`` (regulon sign), ``score``, ``coverage``.

        Sets the following fields (when ``inplace``)
        --------------------------------------------
        ``adata.uns[key_added]``
            ``"groups"`` (the group names), ``"edges"`` (source, target, weight), ``"scores"`` and
            ``"coverage"`` (edges x groups arrays), ``"tfs"`` and ``"tf_scores"`` (TFs x groups: attention
            summed over a TF's targets), ``"genes"`` and ``"cls_attention"`` (panel genes x groups: CLS attention
            per gene), ``"mask"`` (:meth:`mask_summary`) and ``"params"``. Names are stored as data, never as
            keys, so any group name writes to h5ad; :func:`sctransformer_tools.tl.attention_tables` reads them
            back as tables.

        Examples
        --------
        >>> import sctransformer_tools as sct
        >>> model, adata = sct.ds.toy_model()  # a tiny trained model and its data (pbmc68k_reduced)
        >>> table = model.get_attention(adata, groupby="bulk_labels")
        >>> sorted(adata.uns["sctransformer_attention"])
        ['cls_attention', 'coverage', 'edges', 'genes', 'groups', 'mask', 'params', 'scores', 'tf_scores', 'tfs']
        """
        self.require_trained()
        target = self.adata if adata is None else adata
        if target is None:
            raise ValueError("This model was loaded without data: pass the AnnData to read (adata=...).")
        if target.n_obs == 0:
            raise ValueError("adata has no cells: there is no attention to read.")
        if groupby is None:
            groups = pd.Categorical(np.repeat("all", target.n_obs))
        else:
            if groupby not in target.obs:
                raise KeyError(f"groupby column {groupby!r} not found in adata.obs.")
            column = target.obs[groupby]
            if column.isna().any():
                raise ValueError(
                    f"adata.obs[{groupby!r}] has {int(column.isna().sum())} missing values; fill or drop them."
                )
            groups = pd.Categorical(column.astype(str))
        edges = self.regulon_edges()
        read = self.attention_on_pairs(
            adata,
            edges[["target_idx", "source_idx"]].to_numpy(),
            groups=groups,
            layer=layer,
            batch_size=batch_size,
            counts_layer=counts_layer,
            gene_symbols=gene_symbols,
            library_size_key=library_size_key,
        )
        score, cover, cls = read["score"], read["coverage"], read["cls"]
        names = [str(c) for c in groups.categories]
        edge_index = edges["source"] + "->" + edges["target"]
        scores = pd.DataFrame(score.T, index=edge_index, columns=names)
        coverage = pd.DataFrame(cover.T, index=edge_index, columns=names)
        tf_scores = scores.groupby(edges["source"].to_numpy()).sum()
        tf_scores.index.name = "tf"
        long = scores.reset_index(drop=True).assign(
            source=edges["source"], target=edges["target"], weight=edges["weight"]
        )
        long = long.melt(id_vars=["source", "target", "weight"], var_name="group", value_name="score")
        long["coverage"] = coverage.to_numpy().T.ravel()
        long = long[["group", "source", "target", "weight", "score", "coverage"]]
        if inplace:  # group and gene names are stored as data, never as keys (h5ad-safe for any name)
            target.uns[key_added] = {
                "groups": np.asarray(names, dtype=object),
                "edges": edges[["source", "target", "weight"]].reset_index(drop=True),
                "scores": score.T.astype(np.float32),
                "coverage": cover.T.astype(np.float32),
                "tfs": tf_scores.index.to_numpy(dtype=object),
                "tf_scores": tf_scores.to_numpy(dtype=np.float32),
                "genes": self.spec_.panel["symbol"].to_numpy(dtype=object),
                "cls_attention": cls.T.astype(np.float32),
                "mask": self.mask_summary(),
                "params": {"groupby": groupby or "", "layer": -1 if layer is None else layer, "heads": "mean"},
            }
        return long

    @reads_mudata
    @dsp.dedent
    def attention_on_pairs(
        self,
        adata: AnnData | None,
        pairs: np.ndarray,
        *,
        groups: pd.Categorical | np.ndarray | None = None,
        layer: int | None = None,
        batch_size: int | None = None,
        counts_layer: str | None = AUTO,
        gene_symbols: str | None = None,
        library_size_key: str | None = None,
    ) -> dict[str, np.ndarray]:
        """Attention of a query gene's token on a key gene's token, per pair and group of cells.

        The reading behind :meth:`get_attention`, for any pairs of panel genes (e.g. sampled non-edges to
        test attention against the regulons). Attention is the mean over heads (heads left dense on masked
        layers are not read) and over layers unless ``layer`` is given; a cell where either gene is not a
        token contributes 0.

        Parameters
        ----------
        adata
            Cells to read (the reference when ``None``; a new dataset is matched to the model's genes).
        pairs
            ``(n, 2)`` panel positions ``(query, key)``; a TF -> target edge is ``(target, TF)``.
        groups
            One group per cell (all cells one group when ``None``).
        layer
            Transformer layer to read; the mean over layers when ``None``.
        %(param_read_batch_size)s
        %(param_counts_layer)s
        %(param_gene_symbols)s
        %(param_library_size_key)s

        Returns
        -------
        ``score`` and ``coverage`` (``groups x pairs``: mean attention over the group's cells, and the share
        of its cells where both genes are tokens), ``cls`` (``groups x panel genes``: mean attention of the CLS
        token), ``sizes`` (cells per group) and ``groups`` (the group names).
        """
        self.require_trained()
        target = self.adata if adata is None else adata
        n_cells = 0 if target is None else target.n_obs
        groups = pd.Categorical(np.repeat("all", n_cells) if groups is None else np.asarray(groups).astype(str))
        if len(groups) != n_cells:
            raise ValueError(f"groups has {len(groups)} entries for {n_cells} cells.")
        if layer is not None and not 0 <= layer < self.module.n_layers:
            raise ValueError(f"layer must be in 0..{self.module.n_layers - 1}, got {layer}.")
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        n_genes = len(self.spec_.panel)
        codes = pairs[:, 0] * n_genes + pairs[:, 1]
        unique, inverse = np.unique(codes, return_inverse=True)
        pair_codes = torch.as_tensor(unique, device=self.device)
        n_groups = len(groups.categories)
        group_codes = torch.tensor(groups.codes, dtype=torch.long)
        layers = None if layer is None else [layer]
        score = torch.zeros(n_groups, len(unique), dtype=torch.float64)
        cover = torch.zeros(n_groups, len(unique), dtype=torch.float64)
        cls = torch.zeros(n_groups, n_genes, dtype=torch.float64)
        start = 0

        def accumulate(batch):
            nonlocal start
            out = self.module.pair_attention(batch, pair_codes=pair_codes, layers=layers)
            n = out["cls"].shape[0]
            onehot = torch.nn.functional.one_hot(group_codes[start : start + n], n_groups).double().T
            score.add_(onehot @ out["pairs"].double().cpu())
            cover.add_(onehot @ out["present"].double().cpu())
            cls.add_(onehot @ out["cls"].double().cpu())
            start += n

        with self.reader.read(
            adata, layer=counts_layer, gene_symbols=gene_symbols, library_size_key=library_size_key
        ) as data:
            self.reader.map_batches(data, accumulate, None, batch_size)
        sizes = np.bincount(groups.codes, minlength=n_groups)
        scale = 1.0 / np.maximum(sizes, 1)[:, None]
        return {
            "score": (score.numpy() * scale)[:, inverse],
            "coverage": (cover.numpy() * scale)[:, inverse],
            "cls": cls.numpy() * scale,
            "sizes": sizes,
            "groups": [str(c) for c in groups.categories],
        }
