"""The AnnData-facing model, its training plan and query preparation."""

from ._fields import TolerantCategoricalObsField
from ._model import SCTransformer
from ._trainingplan import RestoreBestWeights, SCTransformerTrainingPlan

__all__ = ["RestoreBestWeights", "SCTransformer", "SCTransformerTrainingPlan", "TolerantCategoricalObsField"]
