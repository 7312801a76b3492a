"""Input data, the one way the package reads it: checks, matrices, library sizes, genes, splits, registry fields.

Private: used by ``model``, ``tl`` and ``bm``; nothing here is part of the public API.
"""

from ._align import GeneMatch, align_genes, aligned_matrix, match_genes
from ._checks import check_expression, check_labels, check_var_names, holds_whole_numbers, whole_number_sources
from ._fields import TolerantCategoricalObsField
from ._hvg import HVG_MAX_CELLS, highly_variable_genes, keep_torch_threads
from ._matrix import LIBRARY_SIZE_COLUMNS, find_library_size_key, get_matrix, library_sizes, log_normalised, row_chunks
from ._split import stratified_split
from ._stack import user_stacklevel

__all__ = [
    "HVG_MAX_CELLS",
    "LIBRARY_SIZE_COLUMNS",
    "GeneMatch",
    "TolerantCategoricalObsField",
    "align_genes",
    "aligned_matrix",
    "check_expression",
    "check_labels",
    "check_var_names",
    "find_library_size_key",
    "get_matrix",
    "highly_variable_genes",
    "holds_whole_numbers",
    "keep_torch_threads",
    "library_sizes",
    "log_normalised",
    "match_genes",
    "row_chunks",
    "stratified_split",
    "user_stacklevel",
    "whole_number_sources",
]
