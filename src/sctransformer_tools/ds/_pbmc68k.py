"""scanpy's ``pbmc68k_reduced`` with its raw counts rebuilt from the log-normalised ``.raw``."""

from __future__ import annotations

import numpy as np
from anndata import AnnData
from scipy import sparse

#: Zheng 2017 FACS-sorted populations (``bulk_labels``) -> Seurat pbmc3k tutorial labels. ``None``: no
#: counterpart in pbmc3k (CD34+ progenitors; regulatory T cells are split across CD4 types).
PBMC68K_TO_PBMC3K: dict[str, str | None] = {
    "CD14+ Monocyte": "CD14+ Mono",
    "CD19+ B": "B",
    "CD4+/CD25 T Reg": "Memory CD4 T",
    "CD4+/CD45RA+/CD25- Naive T": "Naive CD4 T",
    "CD4+/CD45RO+ Memory": "Memory CD4 T",
    "CD8+ Cytotoxic T": "CD8 T",
    "CD8+/CD45RA+ Naive Cytotoxic": "CD8 T",
    "CD56+ NK": "NK",
    "Dendritic": "DC",
    "CD34+": None,
}


def pbmc68k_reduced() -> AnnData:
    """700 PBMCs of Zheng et al. 2017 (scanpy's ``pbmc68k_reduced``) with whole-number counts.

    scanpy ships this dataset with a scaled ``X`` and a log-normalised ``.raw``
    (``log1p(counts / n_counts * 1e4)``, 765 genes). Counts are rebuilt exactly as
    ``expm1(raw) * n_counts / 1e4`` (``obs["n_counts"]`` is each cell's total over *all* its genes) and
    rounded; ``uns["counts_reconstruction"]`` records how far the values were from whole numbers
    before rounding. Because only 765 genes are kept, normalise with ``library_size_key="n_counts"``.

    Returns
    -------
    AnnData with counts in ``X`` (CSR, float32), ``obs`` of the scanpy dataset (``bulk_labels``: the
    FACS-sorted population; ``n_counts``: library size over all genes).

    Examples
    --------
    >>> import sctransformer_tools as sct
    >>> adata = sct.ds.pbmc68k_reduced()
    >>> adata.shape, float(adata.X.max()) > 10, adata.uns["counts_reconstruction"]["within_0.05"] > 0.999
    ((700, 765), True, True)
    """
    import scanpy as sc

    src = sc.datasets.pbmc68k_reduced()
    logn = src.raw.X.toarray() if sparse.issparse(src.raw.X) else np.asarray(src.raw.X)
    values = np.expm1(logn.astype(np.float64)) * src.obs["n_counts"].to_numpy()[:, None] / 1e4
    counts = np.round(values)
    nz = values[values > 0]
    deviation = np.abs(nz - np.round(nz))
    adata = AnnData(
        X=sparse.csr_matrix(counts.astype(np.float32)),
        obs=src.obs.copy(),
        var=src.raw.var.copy(),
    )
    adata.uns["counts_reconstruction"] = {
        "formula": "round(expm1(raw.X) * obs['n_counts'] / 1e4)",
        "within_0.05": float((deviation < 0.05).mean()),
        "max_deviation": float(deviation.max()),
    }
    return adata
