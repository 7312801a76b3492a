"""The scvi-tools module (torch only, no AnnData): tokenisation, encoder, classifier, loss."""

from ._sctransformer import SCTransformerModule, ValueEncoder
from ._tokenizer import ExpressedGeneTokenizer, GeneTokens

__all__ = ["ExpressedGeneTokenizer", "GeneTokens", "SCTransformerModule", "ValueEncoder"]
