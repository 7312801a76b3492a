"""The scvi-tools module (torch only, no AnnData): tokenisation, encoder, classifier, loss."""

from ._sctransformer import SPARSE_PAIR_COST, SCTransformerModule, ValueEncoder, sparse_attention_pays
from ._tokenizer import ExpressedGeneTokenizer, GeneTokens

__all__ = [
    "SPARSE_PAIR_COST",
    "ExpressedGeneTokenizer",
    "GeneTokens",
    "SCTransformerModule",
    "ValueEncoder",
    "sparse_attention_pays",
]
