"""The AnnData-facing model (composed from mixins), its training plan, query reading and safe saving."""

from ._model import SCTransformer
from ._trainingplan import RestoreBestWeights, SCTransformerTrainingPlan

__all__ = ["RestoreBestWeights", "SCTransformer", "SCTransformerTrainingPlan"]
