"""Regulons -> gene panel -> attention mask (numpy/pandas only: no torch, no model code)."""

# The name helpers gene_key, positions, looks_like_ensembl and looks_like_mouse are importable here for the package's
# own use (model, tl); they are not public API (not in __all__, not in the documentation).
from ._mask import DIRECTIONS, MASK_KINDS, GRNMask, build_mask
from ._names import gene_key, looks_like_ensembl, looks_like_mouse, match_gene_names, positions
from ._panel import GenePanel, regulon_edges_in, select_panel
from ._regulons import DATA_ENV, load_regulons, regulon_cache_dir, regulon_source, validate_regulons

__all__ = [
    "DATA_ENV",
    "DIRECTIONS",
    "MASK_KINDS",
    "GRNMask",
    "GenePanel",
    "build_mask",
    "load_regulons",
    "match_gene_names",
    "regulon_cache_dir",
    "regulon_edges_in",
    "regulon_source",
    "select_panel",
    "validate_regulons",
]
