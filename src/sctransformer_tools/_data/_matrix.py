"""Reading expression from AnnData: the counts matrix, library sizes and log-normalised values."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

logger = logging.getLogger(__name__)

#: Rows read at once from a (possibly backed) matrix.
ROW_CHUNK = 10_000

#: ``obs`` columns that commonly hold each cell's total counts over all genes (scanpy, Seurat, 10x/Cell Ranger
#: exports, Allen), in the order they are looked for.
LIBRARY_SIZE_COLUMNS = (
    "n_counts",
    "total_counts",
    "nCount_RNA",
    "nUMI",
    "n_umi",
    "total_UMIs",
    "total_counts_all_genes",
    "library_size",
)


def get_matrix(adata: AnnData, layer: str | None):
    """``adata.X`` or ``adata.layers[layer]``, with an error that lists the layers when it is missing."""
    if layer is None:
        if adata.X is None:
            raise ValueError(
                "adata.X is empty. Pass `layer=` naming the layer that holds raw counts"
                + (f" (layers: {list(adata.layers)})." if len(adata.layers) else ".")
            )
        return adata.X
    if layer not in adata.layers:
        raise KeyError(
            f"Layer {layer!r} not found in adata.layers (available: {list(adata.layers.keys()) or 'none'}). "
            "Name the layer that holds raw counts, or None for adata.X; to keep counts in a layer, store them "
            "first, e.g. `adata.layers['counts'] = adata.X.copy()`."
        )
    return adata.layers[layer]


def row_chunks(adata: AnnData, layer: str | None, chunk: int = ROW_CHUNK):
    """Yield ``(start, rows)`` of the matrix, ``chunk`` cells at a time (a backed matrix is never loaded whole)."""
    matrix = get_matrix(adata, layer)
    for start in range(0, adata.n_obs, chunk):
        rows = matrix[start : start + chunk]
        if hasattr(rows, "to_memory"):  # lazy / backed arrays
            rows = rows.to_memory()
        yield start, rows


def library_sizes(adata: AnnData, layer: str | None = None, library_size_key: str | None = None) -> np.ndarray:
    """Per-cell library size: ``obs[library_size_key]`` or the row sums of the matrix.

    Parameters
    ----------
    adata
        Cells x genes with counts in ``X`` or ``layer`` (read in row chunks: backed data stay on disk).
    layer
        Layer of counts (``None``: ``X``).
    library_size_key
        ``obs`` column of each cell's total counts; the row sums when ``None``.

    Returns
    -------
    Float array, one value per cell.

    Examples
    --------
    >>> import numpy as np
    >>> from anndata import AnnData
    >>> import sctransformer_tools as sct
    >>> sct.pp.library_sizes(AnnData(np.array([[1.0, 3.0], [0.0, 2.0]]))).tolist()
    [4.0, 2.0]
    """
    if library_size_key is not None:
        if library_size_key not in adata.obs:
            raise KeyError(
                f"library_size_key {library_size_key!r} not found in adata.obs "
                f"(columns: {list(adata.obs.columns)[:20]})."
            )
        lib = pd.to_numeric(adata.obs[library_size_key], errors="coerce").to_numpy(dtype=float)
        if not np.isfinite(lib).all() or (lib < 0).any():
            raise ValueError(f"adata.obs[{library_size_key!r}] must hold finite, non-negative library sizes.")
        return lib
    sums = [np.asarray(rows.sum(axis=1), dtype=float).ravel() for _, rows in row_chunks(adata, layer)]
    return np.concatenate(sums) if sums else np.zeros(0)


def find_library_size_key(adata: AnnData, layer: str | None, row_sums: np.ndarray | None = None) -> str | None:
    """The first of :data:`LIBRARY_SIZE_COLUMNS` in ``adata.obs`` that can be each cell's total counts.

    A column qualifies when it is numeric, finite and at least the cell's row sum over the genes in the
    matrix (within 1%) for at least 99% of the cells: a total over *all* of a cell's genes can only be as
    large or larger than the sum over a subset of them.

    Returns
    -------
    The column name, or ``None``.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from anndata import AnnData
    >>> from sctransformer_tools._data import find_library_size_key
    >>> adata = AnnData(np.array([[1.0, 2.0], [0.0, 5.0]]), obs=pd.DataFrame({"nCount_RNA": [30.0, 40.0]}))
    >>> find_library_size_key(adata, None)
    'nCount_RNA'
    """
    candidates = [c for c in LIBRARY_SIZE_COLUMNS if c in adata.obs]
    if not candidates or adata.n_obs == 0:
        return None
    if row_sums is None:
        row_sums = library_sizes(adata, layer)
    for column in candidates:
        values = pd.to_numeric(adata.obs[column], errors="coerce").to_numpy(dtype=float)
        if not np.isfinite(values).all() or (values < 0).any():
            continue
        if adata.n_obs and np.mean(values >= 0.99 * row_sums) >= 0.99:
            return column
        logger.info(
            "adata.obs[%r] was not used as library sizes: it is below the row sums for more than 1%% of cells.",
            column,
        )
    return None


def log_normalised(
    adata: AnnData,
    layer: str | None = None,
    *,
    library_size_key: str | None = None,
    gene_symbols: str | None = None,
    target_sum: float = 1e4,
) -> AnnData:
    """A new AnnData with ``log1p(counts / library size * target_sum)``; ``adata`` is not modified.

    Parameters
    ----------
    adata
        Cells x genes with counts in ``X`` or ``layer``.
    layer
        Layer of counts.
    library_size_key
        ``obs`` column of library sizes (totals over all genes); the row sums when ``None``.
    gene_symbols
        ``var`` column whose values become the new object's ``var_names`` (made unique).
    target_sum
        Counts per cell after normalisation.

    Returns
    -------
    AnnData with a CSR float32 ``X`` and ``obs`` index of ``adata`` (no other columns).

    Examples
    --------
    >>> import numpy as np
    >>> from anndata import AnnData
    >>> import sctransformer_tools as sct
    >>> x = sct.pp.log_normalised(AnnData(np.array([[1.0, 3.0], [0.0, 2.0]]))).X
    >>> np.round(np.expm1(x.toarray()).sum(1)).tolist()
    [10000.0, 10000.0]
    """
    library = library_sizes(adata, layer, library_size_key)
    scale = np.divide(target_sum, library, out=np.zeros_like(library, dtype=np.float64), where=library > 0)
    blocks = []
    for start, rows in row_chunks(adata, layer):
        rows = sparse.csr_matrix(rows, dtype=np.float32)
        blocks.append(sparse.diags(scale[start : start + rows.shape[0]].astype(np.float32)) @ rows)
    out = sparse.csr_matrix(sparse.vstack(blocks) if blocks else sparse.csr_matrix((0, adata.n_vars)), dtype=np.float32)
    out.data = np.log1p(out.data)
    if gene_symbols is None:
        var_names = pd.Index(adata.var_names.astype(str))
    else:
        if gene_symbols not in adata.var:
            raise KeyError(f"gene_symbols column {gene_symbols!r} not found in adata.var.")
        var_names = pd.Index(adata.var[gene_symbols].astype(str).to_numpy())
    result = AnnData(X=out, obs=pd.DataFrame(index=adata.obs_names), var=pd.DataFrame(index=var_names))
    result.var_names_make_unique()
    return result
