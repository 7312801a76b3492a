"""The scvi-tools module (torch only, no AnnData): tokenisation, encoder, training objectives."""

from sctransformer_tools._deprecated import deprecated_names as _deprecated_names

from ._objectives import CellTypeClassification, MaskedExpression, Objective
from ._sctransformer import SCTransformerModule
from ._tokenizer import ExpressedGeneTokenizer, GeneTokens

__all__ = [
    "CellTypeClassification",
    "ExpressedGeneTokenizer",
    "GeneTokens",
    "MaskedExpression",
    "Objective",
    "SCTransformerModule",
]

__getattr__ = _deprecated_names(
    __name__,
    {
        name: f"sctransformer_tools.module._sctransformer:{name}"
        for name in ("SPARSE_PAIR_COST", "ValueEncoder", "sparse_attention_pays")
    },
)
