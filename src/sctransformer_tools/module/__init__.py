"""The scvi-tools module (torch only, no AnnData): tokenisation, encoder, training objectives."""

from sctransformer_tools._deprecated import deprecated_names as _deprecated_names

from ._adapter import QueryAdapter
from ._batch import CellBatch
from ._classification import CellTypeClassification
from ._masked_expression import MaskedExpression
from ._objective import EncoderOutput, EncoderViews, Objective
from ._profile import ExpressionProfile, fit_profile
from ._sctransformer import SCTransformerModule
from ._self_training import Consistency, PseudoLabels
from ._tokenizer import ExpressedGeneTokenizer, GeneTokens

__all__ = [
    "CellBatch",
    "CellTypeClassification",
    "Consistency",
    "EncoderOutput",
    "EncoderViews",
    "ExpressedGeneTokenizer",
    "ExpressionProfile",
    "GeneTokens",
    "MaskedExpression",
    "Objective",
    "PseudoLabels",
    "QueryAdapter",
    "SCTransformerModule",
    "fit_profile",
]

__getattr__ = _deprecated_names(
    __name__,
    {
        name: f"sctransformer_tools.module._sctransformer:{name}"
        for name in ("SPARSE_PAIR_COST", "ValueEncoder", "sparse_attention_pays")
    },
)
