"""sctransformer-tools: GRN-masked Transformers for cell-type annotation in Scanpy workflows.

The subpackages (and :class:`SCTransformer`) are imported on first use, so that ``import sctransformer_tools`` and
the command line's ``--version`` and ``--help`` do not wait for torch, scvi-tools and scanpy.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from . import bm, ds, grn, model, module, nn, pl, pp, tl
    from .model import SCTransformer

from ._constants import PACKAGE_VERSION as __version__

# One line per step that matters (what was trained, where results went), as scvi-tools and scanpy print;
# quieter with logging.getLogger("sctransformer_tools").setLevel("WARNING").
_logger = logging.getLogger(__name__)
if not _logger.handlers:
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("%(message)s"))
    _logger.addHandler(_handler)
    _logger.setLevel(logging.INFO)
    _logger.propagate = False

_SUBPACKAGES = ("bm", "ds", "grn", "model", "module", "nn", "pl", "pp", "tl")
__all__ = ["SCTransformer", "bm", "ds", "grn", "model", "module", "nn", "pl", "pp", "tl"]


def __getattr__(name: str):
    """Import a subpackage, or :class:`SCTransformer`, on first use (PEP 562)."""
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    if name == "SCTransformer":
        return importlib.import_module(f"{__name__}.model").SCTransformer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
