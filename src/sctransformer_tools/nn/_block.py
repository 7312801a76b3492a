"""Pre-LayerNorm Transformer block with a SwiGLU feed-forward."""

from __future__ import annotations

import torch
from torch import nn

from ._attention import MaskedMultiheadAttention, TokenPairs, segment_softmax
from ._layout import TokenLayout


class SwiGLU(nn.Module):
    """Gated feed-forward ``W2(silu(W1 x) * W3 x)`` (Shazeer 2020).

    Parameters
    ----------
    d_model
        Token width.
    hidden
        Inner width; defaults to ``8/3 * d_model`` rounded up to a multiple of 8, which keeps the
        parameter count of a 4x GELU feed-forward.
    dropout
        Dropout on the inner activations.

    Examples
    --------
    >>> import torch
    >>> from sctransformer_tools.nn import SwiGLU
    >>> SwiGLU(16)(torch.randn(2, 5, 16)).shape
    torch.Size([2, 5, 16])
    """

    def __init__(self, d_model: int, hidden: int | None = None, dropout: float = 0.0):
        super().__init__()
        hidden = hidden or 8 * ((8 * d_model // 3 + 7) // 8)
        self.gate_up = nn.Linear(d_model, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, d_model, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the feed-forward to every token."""
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(self.dropout(nn.functional.silu(gate) * up))


class TransformerBlock(nn.Module):
    """``x + attn(LN(x))`` then ``x + ffn(LN(x))``, with masked attention.

    Parameters
    ----------
    d_model
        Token width.
    n_heads
        Attention heads.
    dropout
        Dropout on feed-forward activations and residual branches (attention weights are not dropped:
        on the sparse path there are few of them, on the dense path dropping them costs more than the
        attention itself on CPU).
    dense_heads
        Heads of this block that ignore the structural mask (see :class:`MaskedMultiheadAttention`).

    Examples
    --------
    >>> import torch
    >>> from sctransformer_tools.nn import TransformerBlock
    >>> block = TransformerBlock(16, 4)
    >>> block(torch.randn(2, 5, 16), torch.ones(2, 5, 5, dtype=torch.bool))[0].shape
    torch.Size([2, 5, 16])
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.1, dense_heads: int = 0):
        super().__init__()
        self.norm_attn = nn.LayerNorm(d_model)
        self.attn = MaskedMultiheadAttention(d_model, n_heads, dense_heads=dense_heads)
        self.norm_ffn = nn.LayerNorm(d_model)
        self.ffn = SwiGLU(d_model, dropout=dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        allowed: torch.Tensor | None = None,
        *,
        pairs: TokenPairs | None = None,
        layout: TokenLayout | None = None,
        key_valid: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Update the tokens; see :meth:`MaskedMultiheadAttention.forward` for the arguments."""
        h, weights = self.attn(
            self.norm_attn(x),
            allowed,
            pairs=pairs,
            layout=layout,
            key_valid=key_valid,
            bias=bias,
            need_weights=need_weights,
        )
        x = x + self.dropout(h)
        x = x + self.dropout(self.ffn(self.norm_ffn(x)))
        return x, weights

    def forward_cls(self, x: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
        """The block's update of the CLS tokens alone, each reading every token of its cell.

        Packed ``x`` (``layout``: the ``n_cells`` CLS tokens first) -> the ``(n_cells, d_model)`` CLS rows of
        :meth:`forward`'s output, whatever the mask: a CLS token reads every valid token of its cell under every
        mask, and nothing else reads what a block writes into the gene tokens once it is the last one. The last
        block of an encoder whose gene-token states are not needed is run this way: keys and values for every
        token, queries, attention output and feed-forward for the CLS tokens only.

        Examples
        --------
        >>> import torch
        >>> from sctransformer_tools.nn import TokenLayout, TransformerBlock
        >>> block, layout = TransformerBlock(8, 2, dropout=0.0), TokenLayout.from_counts(torch.tensor([3, 1]))
        >>> x = torch.randn(6, 8)
        >>> full, _ = block(x, layout=layout)
        >>> torch.allclose(block.forward_cls(x, layout), full[:2], atol=1e-6)
        True
        """
        attn, n = self.attn, layout.n_cells
        y = self.norm_attn(x)
        w_q, w_k, w_v = attn.qkv.weight.chunk(3, 0)
        q = torch.nn.functional.linear(y[:n], w_q).view(n, attn.n_heads, attn.d_head)
        k = torch.nn.functional.linear(y, w_k).view(-1, attn.n_heads, attn.d_head)
        v = torch.nn.functional.linear(y, w_v).view(-1, attn.n_heads, attn.d_head)
        acc = torch.promote_types(v.dtype, torch.float32)  # the softmax in float32 at least, as on the other paths
        logits = (q[layout.cell] * k).sum(-1).to(acc) / attn.d_head**0.5  # (tokens, heads): its cell's CLS query
        weights = segment_softmax(logits, layout.cell, n).to(v.dtype)
        heads = torch.zeros(n, attn.n_heads, attn.d_head, dtype=v.dtype, device=v.device)
        heads = heads.index_add(0, layout.cell, weights[..., None] * v)
        cls = x[:n] + self.dropout(attn.out(heads.reshape(n, -1)))
        return cls + self.dropout(self.ffn(self.norm_ffn(cls)))
