"""The AnnData-facing model (composed from mixins), its training plan, query reading and safe saving."""

from sctransformer_tools._deprecated import deprecated_names as _deprecated_names

from ._model import SCTransformer
from ._trainingplan import RestoreBestWeights, SCTransformerTrainingPlan

__all__ = ["RestoreBestWeights", "SCTransformer", "SCTransformerTrainingPlan"]

__getattr__ = _deprecated_names(
    __name__, {"TolerantCategoricalObsField": "sctransformer_tools._data:TolerantCategoricalObsField"}
)
