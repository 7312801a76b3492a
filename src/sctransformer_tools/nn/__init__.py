"""Torch building blocks: masked multi-head attention (dense and sparse paths), pre-LN block, SwiGLU."""

from ._attention import (
    FusedPairAttention,
    MaskedMultiheadAttention,
    PairChunk,
    PairGraph,
    TokenPairs,
    pair_attention,
    pairs_from_dense,
    segment_softmax,
)
from ._block import SwiGLU, TransformerBlock
from ._layout import TokenLayout

__all__ = [
    "FusedPairAttention",
    "MaskedMultiheadAttention",
    "PairChunk",
    "PairGraph",
    "SwiGLU",
    "TokenLayout",
    "TokenPairs",
    "TransformerBlock",
    "pair_attention",
    "pairs_from_dense",
    "segment_softmax",
]
