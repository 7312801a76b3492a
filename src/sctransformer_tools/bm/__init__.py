"""Benchmark scTransformer on your own labelled cells: masks and peers on one split, scored, compared.

:func:`run` trains scTransformer with each mask (the GRN and its controls) and the peers of :mod:`.peers` on
the training cells of a split (:func:`split`) and scores them on the held-out cells with the metrics of
:data:`METRICS` (add one with :func:`register_metric`); :func:`compare` reads the result as paired
differences by seed. The study behind the package's evaluation lives in the repository's ``benchmarks/``.
"""

from . import metrics, peers
from ._compare import compare
from ._run import run, split
from .metrics import METRICS, register_metric

__all__ = ["METRICS", "compare", "metrics", "peers", "register_metric", "run", "split"]
