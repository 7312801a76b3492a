"""Benchmark: scTransformer with its mask controls against annotation peers, on real splits, with a report.

One call runs a split (``evaluate``), records are plain dicts (``RECORD_KEYS`` first) that are stored as a
JSON list (``append_record``), and ``write_report`` turns any list of records into tables, paired
comparisons, a reading generated from the numbers and figures. ``benchmarks/evaluate.py`` is the command
line over these functions.
"""

from ._attention import attention_vs_regulons, pair_attention_scores, sample_non_edges, tf_activity_agreement
from ._datasets import (
    DATASETS,
    PBMC68K_LABEL_MAP,
    Split,
    allen_m1,
    darmanis2015,
    load_split,
    map_pbmc68k_labels,
    pbmc3k,
    pbmc3k_to_pbmc68k,
    scrna_dir,
    stratified_subsample,
)
from ._metrics import auroc, classification_metrics, embedding_metrics, rare_classes
from ._peers import (
    PEERS,
    PeerResult,
    align_genes,
    celltypist_peer,
    highly_variable_genes,
    log_normalize,
    logistic_regression,
    pca_embedding,
    scanvi_peer,
)
from ._records import (
    IDENTITY_KEYS,
    RECORD_KEYS,
    append_invocation,
    append_record,
    load_records,
    make_record,
    merge_records,
    record_identity,
    run_tag,
    save_records,
    umap_file,
)
from ._report import (
    paired_comparison,
    plot_attention_auroc,
    plot_metric_bars,
    plot_umaps,
    reading,
    records_frame,
    summary_table,
    variant_name,
    write_report,
)
from ._resources import ResourceMonitor, current_rss_mb, max_rss_mb
from ._run import MASKS, METHODS, evaluate, parse_mask, regulon_setup

__all__ = [
    "DATASETS",
    "IDENTITY_KEYS",
    "MASKS",
    "METHODS",
    "PBMC68K_LABEL_MAP",
    "PEERS",
    "RECORD_KEYS",
    "PeerResult",
    "ResourceMonitor",
    "Split",
    "align_genes",
    "allen_m1",
    "append_invocation",
    "append_record",
    "attention_vs_regulons",
    "auroc",
    "celltypist_peer",
    "classification_metrics",
    "current_rss_mb",
    "darmanis2015",
    "embedding_metrics",
    "evaluate",
    "highly_variable_genes",
    "load_records",
    "load_split",
    "log_normalize",
    "logistic_regression",
    "make_record",
    "map_pbmc68k_labels",
    "max_rss_mb",
    "merge_records",
    "paired_comparison",
    "parse_mask",
    "pbmc3k",
    "pbmc3k_to_pbmc68k",
    "pca_embedding",
    "plot_attention_auroc",
    "plot_metric_bars",
    "plot_umaps",
    "rare_classes",
    "reading",
    "record_identity",
    "records_frame",
    "regulon_setup",
    "run_tag",
    "sample_non_edges",
    "save_records",
    "scanvi_peer",
    "scrna_dir",
    "stratified_subsample",
    "summary_table",
    "tf_activity_agreement",
    "umap_file",
    "variant_name",
    "write_report",
]
