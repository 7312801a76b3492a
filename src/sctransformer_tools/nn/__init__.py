"""Torch building blocks: masked multi-head attention (dense and sparse paths), pre-LN block, SwiGLU.

Internals of the sparse path (the CSR pair graph, the fused memory-lean layer, segment softmax) live in
:mod:`sctransformer_tools.nn._attention`.
"""

from sctransformer_tools._deprecated import deprecated_names as _deprecated_names

from ._attention import MaskedMultiheadAttention, TokenPairs, pair_attention, sparse_kernels
from ._block import SwiGLU, TransformerBlock
from ._layout import TokenLayout

__all__ = [
    "MaskedMultiheadAttention",
    "SwiGLU",
    "TokenLayout",
    "TokenPairs",
    "TransformerBlock",
    "pair_attention",
    "sparse_kernels",
]

__getattr__ = _deprecated_names(
    __name__,
    {
        name: f"sctransformer_tools.nn._attention:{name}"
        for name in ("FusedPairAttention", "PairChunk", "PairGraph", "pairs_from_dense", "segment_softmax")
    },
)
