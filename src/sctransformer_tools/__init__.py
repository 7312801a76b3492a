"""sctransformer-tools: GRN-masked Transformers for cell-type annotation in Scanpy workflows."""

import logging
from importlib.metadata import PackageNotFoundError, version

from . import bm, ds, grn, model, module, nn, pl, tl
from .model import SCTransformer

try:
    __version__ = version("sctransformer-tools")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

# One line per step that matters (what was trained, where results went), as scvi-tools and scanpy print;
# quieter with logging.getLogger("sctransformer_tools").setLevel("WARNING").
_logger = logging.getLogger(__name__)
if not _logger.handlers:
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("%(message)s"))
    _logger.addHandler(_handler)
    _logger.setLevel(logging.INFO)
    _logger.propagate = False

__all__ = ["SCTransformer", "bm", "ds", "grn", "model", "module", "nn", "pl", "tl"]
