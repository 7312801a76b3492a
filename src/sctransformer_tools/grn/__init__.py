"""Regulons -> gene panel -> attention mask (numpy/pandas only: no torch, no model code)."""

from ._mask import DIRECTIONS, MASK_KINDS, GRNMask, build_mask
from ._panel import GenePanel, regulon_edges_in, select_panel
from ._regulons import DATA_ENV, load_regulons, regulon_cache_dir, validate_regulons

__all__ = [
    "DATA_ENV",
    "DIRECTIONS",
    "MASK_KINDS",
    "GRNMask",
    "GenePanel",
    "build_mask",
    "load_regulons",
    "regulon_cache_dir",
    "regulon_edges_in",
    "select_panel",
    "validate_regulons",
]
