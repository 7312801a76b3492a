"""Plots (matplotlib, scanpy style: ``ax=``, ``show=``, ``save=``)."""

from sctransformer_tools._deprecated import deprecated_names as _deprecated_names

from ._attention import attention_heatmap, tf_network, top_regulators
from ._confidence import confidence, umap_confidence
from ._labels import label_colors, label_umap
from ._masking import masking_preference
from ._training import training_history

__all__ = [
    "attention_heatmap",
    "confidence",
    "label_colors",
    "label_umap",
    "masking_preference",
    "tf_network",
    "top_regulators",
    "training_history",
    "umap_confidence",
]

__getattr__ = _deprecated_names(__name__, {"save_path": "sctransformer_tools.pl._utils:save_path"})
