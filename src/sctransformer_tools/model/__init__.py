"""The AnnData-facing model (composed from mixins), its spec, reader, training plan and safe saving."""

from sctransformer_tools._deprecated import deprecated_names as _deprecated_names

from ._model import SCTransformer
from ._precision import choose_precision
from ._quiet import quiet_training
from ._reader import CellReader
from ._spec import ModelSpec
from ._trainingplan import RestoreBestWeights, SCTransformerTrainingPlan

__all__ = [
    "CellReader",
    "ModelSpec",
    "RestoreBestWeights",
    "SCTransformer",
    "SCTransformerTrainingPlan",
    "choose_precision",
    "quiet_training",
]

__getattr__ = _deprecated_names(
    __name__, {"TolerantCategoricalObsField": "sctransformer_tools._data:TolerantCategoricalObsField"}
)
