"""sctransformer-tools: GRN-masked Transformers for cell-type annotation in Scanpy workflows."""

from importlib.metadata import PackageNotFoundError, version

from . import bm, ds, grn, model, module, nn, pl, tl
from .model import SCTransformer

try:
    __version__ = version("sctransformer-tools")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = ["SCTransformer", "bm", "ds", "grn", "model", "module", "nn", "pl", "tl"]
