"""Small datasets that ship with dependencies, brought to raw counts, and a tiny model trained on one."""

from ._pbmc68k import PBMC68K_TO_PBMC3K, pbmc68k_reduced
from ._toy import toy_model

__all__ = ["PBMC68K_TO_PBMC3K", "pbmc68k_reduced", "toy_model"]
