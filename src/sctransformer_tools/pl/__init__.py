"""Plots (matplotlib, scanpy style: ``ax=``, ``show=``, ``save=``)."""

from ._attention import attention_heatmap, tf_network, top_regulators
from ._confidence import confidence, umap_confidence
from ._training import training_history
from ._utils import save_path

__all__ = [
    "attention_heatmap",
    "confidence",
    "save_path",
    "tf_network",
    "top_regulators",
    "training_history",
    "umap_confidence",
]
