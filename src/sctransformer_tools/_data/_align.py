"""Bring a dataset onto a given gene list: match names, reorder, zero-fill the genes it lacks.

The one home of gene alignment: the model reads queries through it (:mod:`sctransformer_tools.model._query`)
and the linear peers of :mod:`sctransformer_tools.bm` read test cells through it. The user's AnnData is only
read, never modified.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from sctransformer_tools.grn import match_gene_names

from ._matrix import row_chunks


@dataclass(frozen=True)
class GeneMatch:
    """Where each wanted gene sits in a dataset.

    Attributes
    ----------
    columns
        For each wanted gene, its column in the dataset's matrix; -1 where the dataset lacks it.
    names
        The dataset's gene names in the wanted naming (after ``gene_symbols`` and case / version matching).
    n_exact
        Dataset genes whose names match a wanted gene exactly.
    n_case_or_version
        Dataset genes matched only after ignoring case or an Ensembl version suffix.
    n_ambiguous
        Dataset genes left unmatched because their name could mean several wanted genes.
    """

    columns: np.ndarray
    names: pd.Index
    n_exact: int
    n_case_or_version: int
    n_ambiguous: int

    @property
    def present(self) -> np.ndarray:
        """Boolean per wanted gene: the dataset measures it."""
        return self.columns >= 0


def match_genes(adata: AnnData, genes, *, gene_symbols: str | None = None, what: str = "the model") -> GeneMatch:
    """Find each of ``genes`` among ``adata``'s genes (or the ``var`` column ``gene_symbols``).

    Raises
    ------
    KeyError
        ``gene_symbols`` is not a column of ``adata.var``.
    ValueError
        A wanted gene appears more than once in the dataset (which copy to read cannot be guessed).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from anndata import AnnData
    >>> from sctransformer_tools._data import match_genes
    >>> a = AnnData(np.ones((2, 3), dtype=np.float32), var=pd.DataFrame(index=["cd3e", "MS4A1", "X"]))
    >>> match_genes(a, ["MS4A1", "CD3E", "NKG7"]).columns.tolist()
    [1, 0, -1]
    """
    genes = pd.Index(np.asarray(genes, dtype=str))
    if gene_symbols is not None:
        if gene_symbols not in adata.var:
            raise KeyError(
                f"gene_symbols={gene_symbols!r} is not a column of adata.var (columns: {list(adata.var.columns)[:20]})."
            )
        names = pd.Index(adata.var[gene_symbols].astype(str).to_numpy())
    else:
        names = pd.Index(adata.var_names.astype(str))
    names, report = match_gene_names(names, genes)
    known = names.isin(genes)
    duplicated = names[known & names.duplicated(keep=False)].unique()
    if len(duplicated):
        source = "adata.var_names" if gene_symbols is None else f"adata.var[{gene_symbols!r}]"
        raise ValueError(
            f"{len(duplicated)} of {what}'s genes appear more than once in {source} (after matching case and Ensembl "
            f"versions), e.g. {duplicated[:5].tolist()}. Aggregate or remove the duplicates first: which copy to use "
            "is not something to guess."
        )
    columns = pd.Index(names).get_indexer(genes)
    return GeneMatch(
        columns.astype(np.int64), names, report["n_exact"], report["n_case_or_version"], report["n_ambiguous"]
    )


def aligned_matrix(adata: AnnData, layer: str | None, columns: np.ndarray) -> sparse.csr_matrix:
    """``adata``'s matrix with one column per wanted gene (``columns`` from :class:`GeneMatch`), zeros where -1.

    Read in row chunks, so a backed matrix is never loaded whole; the result is a new CSR float32 matrix.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from anndata import AnnData
    >>> from sctransformer_tools._data import aligned_matrix
    >>> a = AnnData(np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32))
    >>> aligned_matrix(a, None, np.array([1, -1, 0])).toarray().tolist()
    [[2.0, 0.0, 1.0], [4.0, 0.0, 3.0]]
    """
    columns = np.asarray(columns, dtype=np.int64)
    found = np.flatnonzero(columns >= 0)
    # a (dataset genes x wanted genes) selection matrix: one product reorders, subsets and zero-fills
    select = sparse.csr_matrix(
        (np.ones(len(found), dtype=np.float32), (columns[found], found)), shape=(adata.n_vars, len(columns))
    )
    blocks = [
        sparse.csr_matrix(sparse.csr_matrix(rows, dtype=np.float32) @ select) for _, rows in row_chunks(adata, layer)
    ]
    if not blocks:
        return sparse.csr_matrix((0, len(columns)), dtype=np.float32)
    out = sparse.vstack(blocks, format="csr")
    out.sort_indices()
    return out.astype(np.float32)


def align_genes(adata: AnnData, genes, *, layer: str | None = None) -> AnnData:
    """A new AnnData with ``adata``'s counts on exactly ``genes`` (zero-filled where absent) and its ``obs``.

    Genes are found by exact name in ``var_names``.

    Parameters
    ----------
    adata
        Cells x genes with counts in ``X`` or ``layer``.
    genes
        The genes of the result, in its order.
    layer
        Layer of counts (``None``: ``X``).

    Returns
    -------
    AnnData with a CSR float32 ``X`` of ``len(genes)`` columns, a copy of ``adata.obs``, and ``genes`` as
    ``var_names``.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from anndata import AnnData
    >>> import sctransformer_tools as sct
    >>> a = AnnData(np.ones((2, 2), dtype=np.float32), var=pd.DataFrame(index=["x", "y"]))
    >>> sct.pp.align_genes(a, ["y", "z"]).X.toarray().tolist()
    [[1.0, 0.0], [1.0, 0.0]]
    """
    genes = pd.Index(np.asarray(genes, dtype=str))
    columns = pd.Index(adata.var_names.astype(str)).get_indexer(genes)
    return AnnData(X=aligned_matrix(adata, layer, columns), obs=adata.obs.copy(), var=pd.DataFrame(index=genes))
