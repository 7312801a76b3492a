"""Small datasets that ship with dependencies, brought to raw counts."""

from ._pbmc68k import PBMC68K_TO_PBMC3K, pbmc68k_reduced

__all__ = ["PBMC68K_TO_PBMC3K", "pbmc68k_reduced"]
