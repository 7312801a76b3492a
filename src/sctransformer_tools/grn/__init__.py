"""Regulons -> gene panel -> attention mask (numpy/pandas only: no torch, no model code)."""

from ._mask import DIRECTIONS, MASK_KINDS, GRNMask, build_mask
from ._names import gene_key, looks_like_ensembl, looks_like_mouse, match_gene_names, positions
from ._panel import GenePanel, regulon_edges_in, select_panel
from ._regulons import DATA_ENV, load_regulons, regulon_cache_dir, validate_regulons

__all__ = [
    "DATA_ENV",
    "DIRECTIONS",
    "MASK_KINDS",
    "GRNMask",
    "GenePanel",
    "build_mask",
    "gene_key",
    "load_regulons",
    "looks_like_ensembl",
    "looks_like_mouse",
    "match_gene_names",
    "positions",
    "regulon_cache_dir",
    "regulon_edges_in",
    "select_panel",
    "validate_regulons",
]
