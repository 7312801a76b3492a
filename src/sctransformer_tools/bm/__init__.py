"""Benchmark scTransformer on your own labelled cells: masks and peers on one split, scored, compared.

:func:`run` trains scTransformer with each mask (the GRN and its controls) and the peers of :mod:`.peers` on
the training cells of a split (:func:`split`) and scores them on the held-out cells with the metrics of
:data:`METRICS` (add one with :func:`register_metric`); :func:`compare` reads the result as paired
differences by seed. The study behind the package's evaluation lives in the repository's ``benchmarks/``.
"""

from sctransformer_tools._deprecated import deprecated_names as _deprecated_names

from . import metrics, peers
from ._compare import compare
from ._run import MODES, parse_mask, run, split, with_unlabelled
from .metrics import METRICS, register_metric

__all__ = [
    "METRICS",
    "MODES",
    "compare",
    "metrics",
    "parse_mask",
    "peers",
    "register_metric",
    "run",
    "split",
    "with_unlabelled",
]

_STUDY = (
    "it belonged to the study harness, which now lives in the repository's benchmarks/harness/ (run "
    "benchmarks/evaluate.py). On your own data use sct.bm.run(...) and sct.bm.compare(...)."
)
__getattr__ = _deprecated_names(
    __name__,
    {
        "logistic_regression": "sctransformer_tools.bm.peers:logistic_regression",
        "celltypist_peer": "sctransformer_tools.bm.peers:celltypist",
        "scanvi_peer": "sctransformer_tools.bm.peers:scanvi",
        "rare_classes": "sctransformer_tools.bm.metrics:rare_classes",
        "highly_variable_genes": "sctransformer_tools.pp:highly_variable_genes",
        "align_genes": "sctransformer_tools.pp:align_genes",
    },
    dict.fromkeys(
        [
            "evaluate",
            "write_report",
            "load_split",
            "pbmc3k",
            "darmanis2015",
            "allen_m1",
            "pbmc3k_to_pbmc68k",
            "load_records",
            "append_record",
            "paired_comparison",
            "pooled_comparison",
            "summary_table",
            "reading",
            "embedding_metrics",
            "attention_vs_regulons",
            "tf_activity_agreement",
            "ResourceMonitor",
        ],
        _STUDY,
    ),
)
