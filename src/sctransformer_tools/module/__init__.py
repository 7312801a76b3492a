"""The scvi-tools module (torch only, no AnnData): tokenisation, encoder, training objectives."""

from ._objectives import CellTypeClassification, Objective
from ._sctransformer import SCTransformerModule
from ._tokenizer import ExpressedGeneTokenizer, GeneTokens

__all__ = ["CellTypeClassification", "ExpressedGeneTokenizer", "GeneTokens", "Objective", "SCTransformerModule"]
