"""Highly variable genes, the one way the package picks them (model panels and the linear peers)."""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from ._matrix import get_matrix

logger = logging.getLogger(__name__)

#: Highly variable genes of larger (or backed) data are computed on a seeded sample of this many cells.
HVG_MAX_CELLS = 50_000


@contextlib.contextmanager
def keep_torch_threads():
    """Give torch back its intra-op thread count after a library call that changes it.

    scanpy's loess does; so does anything run by numba's OpenMP threading layer (``sc.pp.neighbors``'
    connectivities, ``sc.tl.umap``), which sets the thread count of the OpenMP runtime torch shares.
    """
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        yield
        return
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def highly_variable_genes(
    adata: AnnData,
    n_top_genes: int = 2000,
    *,
    layer: str | None = None,
    batch_key: str | None = None,
    log_normalized: bool = False,
    seed: int = 0,
) -> pd.Index:
    """The ``n_top_genes`` most variable genes (scanpy), all genes when there are no more than that.

    Counts use ``flavor="seurat_v3"``; where its loess fit fails (tiny or degenerate data) the genes are
    ranked by dispersion of log-normalised values (``flavor="seurat"``) instead, and a log message says so.
    Log-normalised input (``log_normalized=True``) uses ``flavor="seurat"`` directly. Data opened backed or
    with more than :data:`HVG_MAX_CELLS` cells are ranked on a seeded sample of that many cells. ``adata`` is
    never modified.

    Parameters
    ----------
    adata
        Cells x genes.
    n_top_genes
        Number of genes.
    layer
        Layer with counts (``None``: ``X``).
    batch_key
        ``obs`` column of batches (genes are ranked within batches, as scanpy does).
    log_normalized
        The matrix holds log-normalised values rather than counts.
    seed
        Seed of the cell sample of large data.

    Returns
    -------
    Gene names, in ``var`` order.

    Examples
    --------
    >>> import sctransformer_tools as sct
    >>> adata = sct.ds.pbmc68k_reduced()
    >>> len(sct.pp.highly_variable_genes(adata, 100))
    100
    """
    import anndata as ad
    import scanpy as sc

    if adata.n_vars <= n_top_genes:
        return pd.Index(adata.var_names.astype(str))
    matrix = get_matrix(adata, layer)
    cells = np.arange(adata.n_obs)
    if adata.isbacked or adata.n_obs > HVG_MAX_CELLS:
        cells = np.sort(np.random.default_rng(seed).choice(adata.n_obs, min(adata.n_obs, HVG_MAX_CELLS), replace=False))
        matrix = matrix[cells]
        if hasattr(matrix, "to_memory"):
            matrix = matrix.to_memory()
    matrix = sparse.csr_matrix(matrix, dtype=np.float32, copy=True)  # scanpy never touches the user's matrix
    tmp = ad.AnnData(X=matrix, obs=pd.DataFrame(index=adata.obs_names[cells]), var=pd.DataFrame(index=adata.var_names))
    batch = None
    if batch_key is not None:
        tmp.obs["batch"] = adata.obs[batch_key].astype(str).to_numpy()[cells]
        batch = "batch"
    with keep_torch_threads():
        if log_normalized:
            sc.pp.highly_variable_genes(tmp, n_top_genes=n_top_genes, batch_key=batch)
        else:
            try:
                sc.pp.highly_variable_genes(tmp, n_top_genes=n_top_genes, flavor="seurat_v3", batch_key=batch)
            except ValueError as err:  # the loess fit of seurat_v3 fails on small or degenerate data
                logger.info("seurat_v3 highly variable genes failed (%s); ranking by dispersion instead.", err)
                sc.pp.normalize_total(tmp, target_sum=1e4)
                sc.pp.log1p(tmp)
                sc.pp.highly_variable_genes(tmp, n_top_genes=n_top_genes, batch_key=batch)
    return pd.Index(tmp.var_names[tmp.var["highly_variable"].to_numpy()].astype(str))
