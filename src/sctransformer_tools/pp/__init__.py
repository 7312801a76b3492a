"""Preprocessing as the package does it: the genes, counts and normalisation its model and peers read.

The same functions :class:`~sctransformer_tools.SCTransformer` (its panel's highly variable genes) and the peers of
:mod:`sctransformer_tools.bm.peers` (their features) use, for comparisons that must read cells the same way (the
repository's ``benchmarks/`` use them for scVI corpora and the linear peers' PCA space). Each returns a new object;
the user's AnnData is never modified.
"""

from sctransformer_tools._data import align_genes, highly_variable_genes, library_sizes, log_normalised

__all__ = ["align_genes", "highly_variable_genes", "library_sizes", "log_normalised"]
