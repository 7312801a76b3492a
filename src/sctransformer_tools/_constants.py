"""Names shared across the package: registry keys and the fields written into AnnData."""

from typing import NamedTuple


class _SCTRegistryKeys(NamedTuple):
    LIBRARY_KEY: str = "library_size"


class _SCTAnnDataKeys(NamedTuple):
    LIBRARY_COLUMN: str = "_sct_library_size"
    PREDICTION: str = "sctransformer_prediction"
    CONFIDENCE: str = "sctransformer_confidence"
    LATENT: str = "X_sctransformer"
    ATTENTION: str = "sctransformer_attention"
    QUERY: str = "sctransformer_query"


SCT_REGISTRY_KEYS = _SCTRegistryKeys()
ADATA_KEYS = _SCTAnnDataKeys()
UNLABELED = "Unknown"
