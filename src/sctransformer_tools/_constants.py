"""Names shared across the package: registry keys, the fields written into AnnData, sentinels."""

from importlib.metadata import PackageNotFoundError, version
from typing import NamedTuple

try:
    #: The installed package's version (what ``sctransformer_tools.__version__`` says and model folders record).
    PACKAGE_VERSION = version("sctransformer-tools")
except PackageNotFoundError:  # running from a source tree without installation
    PACKAGE_VERSION = "0.0.0"


class _SCTRegistryKeys(NamedTuple):
    LIBRARY_KEY: str = "library_size"


class _SCTAnnDataKeys(NamedTuple):
    LIBRARY_COLUMN: str = "_sct_library_size"
    PREFIX: str = "sctransformer"
    PREDICTION: str = "sctransformer_prediction"
    CONFIDENCE: str = "sctransformer_confidence"
    NOVELTY: str = "sctransformer_novelty"
    LATENT: str = "X_sctransformer"
    ATTENTION: str = "sctransformer_attention"
    QUERY: str = "sctransformer_query"


SCT_REGISTRY_KEYS = _SCTRegistryKeys()
ADATA_KEYS = _SCTAnnDataKeys()

#: The attention masks: the GRN prior and its controls of the same density (:func:`~sctransformer_tools.grn.build_mask`).
MASK_KINDS: tuple[str, ...] = ("grn", "dense", "random", "shuffled")

#: The label of cells the model does not call: low confidence or unlike every reference type.
UNKNOWN = "Unknown"


#: Default of ``layer=`` on methods that read a query: the reference's layer if the query has it, else ``X``.
AUTO = "auto"
#: The threshold ``predict(novelty_threshold="auto")`` applies (``--novelty-threshold`` alone in the CLI): chosen by
#: ``benchmarks/novelty.py`` on its validation split (held-out pbmc3k types, PBMC sets of other chemistries) and
#: recorded in ``benchmarks/results/novelty.json`` (report: ``docs/results/novelty.md``).
NOVELTY_THRESHOLD = 0.98

#: Gene tokens a minibatch of reading holds on CPU when a method reading cells is given ``batch_size=None``: the
#: cell count is chosen from the data (:meth:`~sctransformer_tools.model._reader.CellReader.cells_per_minibatch`),
#: so that a layer's intermediates stay in the CPU's caches. Chosen by ``benchmarks/annotation_speed.py`` (part
#: "minibatch": ``predict`` throughput at several budgets and at a fixed 256 cells, pbmc3k and a 10x v3 query;
#: records in ``benchmarks/results/annotation_speed.json``).
READ_TOKENS_CPU = 16_384
#: Most cells per minibatch of reading with ``batch_size=None`` (and the count on GPUs, where larger minibatches
#: do not spill out of a cache).
READ_MAX_CELLS = 256
