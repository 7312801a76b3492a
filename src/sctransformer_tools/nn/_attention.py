"""Multi-head self-attention restricted to allowed (query, key) pairs: a dense and a sparse path."""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ._layout import TokenLayout


@dataclass(eq=False)
class TokenPairs:
    """Allowed ``(query, key)`` token pairs of a minibatch, as flat token positions.

    Token ``t`` of cell ``b`` in a ``(batch, tokens)`` layout has flat position ``b * tokens + t``.

    Attributes
    ----------
    query
        ``(n_pairs,)`` flat positions of the attending tokens.
    key
        ``(n_pairs,)`` flat positions of the attended tokens (same cell as the query).
    n_tokens
        ``batch * tokens``.
    group
        Optional ``(n_tokens,)`` cell of every token (pairs never join two cells): lets the attention
        work through a minibatch a few cells at a time (:meth:`chunks`).
    """

    query: torch.Tensor
    key: torch.Tensor
    n_tokens: int
    group: torch.Tensor | None = None
    _graphs: dict = field(default_factory=dict, repr=False)

    def graph(self, n_heads: int) -> PairGraph:
        """The :class:`PairGraph` of these pairs for ``n_heads`` heads (built once, shared by layers)."""
        if n_heads not in self._graphs:
            self._graphs[n_heads] = PairGraph(self.query, self.key, self.n_tokens, n_heads)
        return self._graphs[n_heads]

    def chunks(self, max_tokens: int) -> list[PairChunk]:
        """Groups of whole cells of at most ``max_tokens`` tokens each (one cell if it is larger), with
        their pairs: the units that :class:`FusedPairAttention` processes one at a time (built once,
        shared by layers). Without ``group`` every token forms one chunk.
        """
        key = ("chunks", max_tokens)
        if key not in self._graphs:
            self._graphs[key] = _split_chunks(self, max_tokens)
        return self._graphs[key]


def pairs_from_dense(allowed: torch.Tensor) -> TokenPairs:
    """The pairs of a dense ``(batch, tokens, tokens)`` boolean mask.

    Examples
    --------
    >>> import torch
    >>> from sctransformer_tools.nn._attention import pairs_from_dense
    >>> pairs_from_dense(torch.eye(2, dtype=torch.bool)[None]).key.tolist()
    [0, 1]
    """
    b, q, k = allowed.nonzero(as_tuple=True)
    t = allowed.shape[1]
    return TokenPairs(b * t + q, b * t + k, allowed.shape[0] * t)


def segment_softmax(logits: torch.Tensor, segment: torch.Tensor, n_segments: int) -> torch.Tensor:
    """Softmax of ``logits`` ``(n, heads)`` within groups given by ``segment`` ``(n,)``.

    Examples
    --------
    >>> import torch
    >>> from sctransformer_tools.nn._attention import segment_softmax
    >>> w = segment_softmax(torch.zeros(3, 1), torch.tensor([0, 0, 1]), 2)
    >>> w.ravel().tolist()
    [0.5, 0.5, 1.0]
    """
    index = segment[:, None].expand_as(logits)
    peak = torch.full((n_segments, logits.shape[1]), float("-inf"), dtype=logits.dtype, device=logits.device)
    peak = peak.scatter_reduce(0, index, logits.detach(), reduce="amax", include_self=True)
    exp = torch.exp(logits - peak[segment])
    total = torch.zeros_like(peak).index_add_(0, segment, exp)
    return exp / total[segment]


#: Device types whose sparse CSR kernels (SDDMM, SpMM) run the sparse path; others use gather/scatter.
CSR_DEVICE_TYPES = _CSR_DEFAULT = ("cpu", "cuda")


@contextlib.contextmanager
def sparse_kernels(kind: Literal["csr", "gather"]) -> Iterator[None]:
    """The kernels of the sparse attention path inside a ``with`` block, for benchmarks and tests.

    By default the sparse path runs sparse CSR kernels (SDDMM for the logits, SpMM for the values) on CPU and
    CUDA, and gathers and scatters the pairs on other devices. ``"gather"`` runs the gather/scatter path
    everywhere (what devices without sparse CSR kernels run; the fused layer of
    :class:`MaskedMultiheadAttention` is off with it), ``"csr"`` the default. Not thread-safe: it changes a
    module setting for the duration of the block.

    Parameters
    ----------
    kind
        ``"csr"`` or ``"gather"``.

    Examples
    --------
    >>> import torch
    >>> from sctransformer_tools.nn import pair_attention, sparse_kernels
    >>> q = k = torch.zeros(3, 1, 2)
    >>> v = torch.arange(6.0).reshape(3, 1, 2)
    >>> query, key = torch.tensor([0, 0, 1]), torch.tensor([1, 2, 1])
    >>> with sparse_kernels("gather"):
    ...     gathered, _ = pair_attention(q, k, v, query, key)
    >>> torch.equal(gathered, pair_attention(q, k, v, query, key)[0])
    True
    """
    global CSR_DEVICE_TYPES
    if kind not in ("csr", "gather"):
        raise ValueError(f"kind must be 'csr' or 'gather', got {kind!r}.")
    default = CSR_DEVICE_TYPES
    CSR_DEVICE_TYPES = () if kind == "gather" else _CSR_DEFAULT
    try:
        yield
    finally:
        CSR_DEVICE_TYPES = default


#: Pairs handled at once by the gather fallback (devices without sparse CSR kernels) are chosen so that
#: a chunk's gathered ``(pairs, heads, head_dim)`` tensors hold about this many elements.
PAIR_CHUNK_ELEMENTS = 2**22


class PairGraph:
    """The allowed pairs of a minibatch as head-major CSR structures, built once and shared by layers.

    Row ``h * n_tokens + i`` of the block-diagonal ``(heads * n_tokens)²`` matrix holds query token
    ``i``'s pairs in head ``h``. Values are laid out ``(heads, n_pairs)`` in query order (the softmax
    rows); the transposed structure (key order) serves the gradients of keys and values.

    Parameters
    ----------
    query, key
        ``(n_pairs,)`` token positions.
    n_tokens
        Number of tokens.
    n_heads
        Number of heads.
    """

    def __init__(self, query: torch.Tensor, key: torch.Tensor, n_tokens: int, n_heads: int):
        device = query.device
        self.n_pairs, self.n_tokens, self.n_heads = len(query), n_tokens, n_heads
        # int32 indices where they fit (the MKL / cuSPARSE kernels prefer them)
        index_dtype = torch.int32 if n_heads * max(n_tokens, self.n_pairs) < 2**31 - 1 else torch.int64
        heads = torch.arange(n_heads, device=device)

        def structure(rows: torch.Tensor, cols: torch.Tensor):
            order = torch.argsort(rows, stable=True)
            counts = torch.bincount(rows, minlength=n_tokens)
            crow = torch.zeros(n_heads * n_tokens + 1, dtype=torch.int64, device=device)
            crow[1:] = counts.repeat(n_heads).cumsum(0)
            col = (cols[order][None] + heads[:, None] * n_tokens).reshape(-1)
            return order, crow, col.to(index_dtype)

        self.order, self.offsets, self.col = structure(query, key)
        order_t, offsets_t, self.col_t = structure(key, query)
        self.crow, self.crow_t = self.offsets.to(index_dtype), offsets_t.to(index_dtype)
        # for each pair in key order, its position in query order
        rank = torch.empty_like(self.order)
        rank[self.order] = torch.arange(self.n_pairs, device=device)
        self.to_t = rank[order_t]
        # softmax row of every (head, pair) value
        self.row = (query[self.order][None] + heads[:, None] * n_tokens).reshape(-1)

    def matrix(self, values: torch.Tensor, transpose: bool = False) -> torch.Tensor:
        """Sparse CSR matrix with ``(heads, n_pairs)`` values given in query order."""
        size = (self.n_heads * self.n_tokens,) * 2
        crow, col = (self.crow_t, self.col_t) if transpose else (self.crow, self.col)
        if transpose:
            values = values[:, self.to_t]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
            return torch.sparse_csr_tensor(crow, col, values.reshape(-1), size, check_invariants=False)

    def per_row(self, values: torch.Tensor, reduce: str) -> torch.Tensor:
        """``"sum"`` or ``"max"`` of ``(heads, n_pairs)`` values over each softmax row, broadcast back."""
        rows = torch.segment_reduce(values.reshape(-1), reduce, offsets=self.offsets, unsafe=True)
        return rows[self.row].view_as(values)


def _head_major(z: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``(n_tokens, heads, d)`` -> contiguous ``(heads * n_tokens, d)``."""
    return z.to(dtype).transpose(0, 1).reshape(-1, z.shape[-1])


class _CSRPairAttention(torch.autograd.Function):
    """Softmax attention over the pairs of a :class:`PairGraph` with sparse CSR kernels.

    Logits are a sampled dense-dense product (SDDMM) at the allowed pairs, the output a sparse-dense
    product (SpMM); the backward pass uses the same two kernels on the structure and its transpose.
    Memory beyond the tokens is ``pairs x heads`` values. Runs in at least float32.
    """

    @staticmethod
    def forward(ctx, q, k, v, graph: PairGraph, bias):
        with torch.autocast(q.device.type, enabled=False):  # the sparse kernels run in float32 / float64
            return _CSRPairAttention._forward(ctx, q, k, v, graph, bias)

    @staticmethod
    def _forward(ctx, q, k, v, graph: PairGraph, bias):
        n, h, d = q.shape
        scale = 1.0 / math.sqrt(d)
        acc = torch.promote_types(q.dtype, torch.float32)
        qh, kh, vh = (_head_major(z, acc) for z in (q, k, v))
        pattern = graph.matrix(torch.zeros(h, graph.n_pairs, dtype=acc, device=q.device))
        logits = torch.sparse.sampled_addmm(pattern, qh, kh.T, beta=0.0, alpha=scale).values().view(h, -1)
        if bias is not None:
            logits = logits + bias[graph.order].T.to(acc)
        exp = torch.exp(logits - graph.per_row(logits, "max"))
        weights = exp / graph.per_row(exp, "sum")
        out = graph.matrix(weights) @ vh  # (h * n, d)
        ctx.save_for_backward(qh, kh, vh, weights, out)
        ctx.graph, ctx.scale, ctx.has_bias, ctx.dtype = graph, scale, bias is not None, q.dtype
        ctx.mark_non_differentiable(weights)
        pair_weights = torch.empty_like(weights.T)
        pair_weights[graph.order] = weights.T
        return out.view(h, n, d).transpose(0, 1).to(q.dtype), pair_weights

    @staticmethod
    def backward(ctx, grad_out, _grad_weights):
        with torch.autocast(grad_out.device.type, enabled=False):
            return _CSRPairAttention._backward(ctx, grad_out)

    @staticmethod
    def _backward(ctx, grad_out):
        qh, kh, vh, weights, out = ctx.saved_tensors
        graph: PairGraph = ctx.graph
        h, (hn, d) = weights.shape[0], qh.shape
        go = _head_major(grad_out, out.dtype)
        # softmax backward: d logit_ij = w_ij (dO_i . v_j - dO_i . out_i)
        delta = torch.empty(h, graph.n_pairs, dtype=out.dtype, device=out.device)
        delta.view(-1)[:] = (go * out).sum(-1)[graph.row]
        pattern = graph.matrix(torch.zeros_like(weights))
        dw = torch.sparse.sampled_addmm(pattern, go, vh.T, beta=0.0).values().view(h, -1)
        dl = weights * (dw - delta)
        grad_v = graph.matrix(weights, transpose=True) @ go
        scaled = dl * ctx.scale
        grad_q = graph.matrix(scaled) @ kh
        grad_k = graph.matrix(scaled, transpose=True) @ qh
        grad_bias = None
        if ctx.has_bias:
            grad_bias = torch.empty_like(dl.T)
            grad_bias[graph.order] = dl.T
        grads = (g.view(h, hn // h, d).transpose(0, 1).to(ctx.dtype) for g in (grad_q, grad_k, grad_v))
        return *grads, None, grad_bias


@dataclass(eq=False)
class PairChunk:
    """Whole cells of a minibatch and their pairs, attended together by :class:`FusedPairAttention`.

    Attributes
    ----------
    tokens
        The chunk's token positions: a ``slice`` when contiguous, an index tensor otherwise.
    pairs
        Positions (into :class:`TokenPairs`) of the chunk's pairs, in the order of ``graph``'s values.
    graph
        One-head :class:`PairGraph` of the pairs in chunk-local token numbering.
    """

    tokens: slice | torch.Tensor
    pairs: torch.Tensor
    graph: PairGraph

    def take(self, x: torch.Tensor) -> torch.Tensor:
        """Rows of ``x`` (``(n_tokens, ...)``) that belong to the chunk."""
        return x[self.tokens] if isinstance(self.tokens, slice) else x.index_select(0, self.tokens)

    def add_to(self, out: torch.Tensor, rows: torch.Tensor) -> None:
        """``out[chunk tokens] += rows``."""
        if isinstance(self.tokens, slice):
            out[self.tokens] += rows
        else:
            out.index_add_(0, self.tokens, rows)


def _split_chunks(pairs: TokenPairs, max_tokens: int) -> list[PairChunk]:
    """Consecutive cells, at most ``max_tokens`` tokens per chunk (a larger cell is a chunk of its own)."""
    query, key, n = pairs.query, pairs.key, pairs.n_tokens
    device = query.device
    if pairs.group is None:
        order = torch.argsort(query, stable=True)
        return [PairChunk(slice(0, n), order, PairGraph(query[order], key[order], n, 1))]
    group = pairs.group
    if bool((group[query] != group[key]).any()):
        raise ValueError("TokenPairs.group: some pairs join tokens of different cells.")
    sizes = torch.bincount(group).tolist()
    bounds, total = [0], 0  # cell boundaries of the chunks
    for cell, size in enumerate(sizes):
        if total and total + size > max_tokens:
            bounds.append(cell)
            total = 0
        total += size
    bounds.append(len(sizes))
    position = torch.argsort(group, stable=True)  # tokens cell by cell
    rank = torch.empty_like(position)
    rank[position] = torch.arange(n, device=device)
    order = torch.argsort(rank[query], stable=True)  # pairs cell by cell, by query within a cell
    cell_start = torch.cumsum(torch.tensor([0, *sizes]), 0).tolist()
    pair_rank = rank[query][order]
    chunks = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        t0, t1 = cell_start[lo], cell_start[hi]
        p0, p1 = torch.searchsorted(pair_rank, torch.tensor([t0, t1], device=device)).tolist()
        index = order[p0:p1]
        tokens = position[t0:t1]
        if t1 > t0 and int(tokens[-1] - tokens[0]) == t1 - t0 - 1 and bool((tokens.diff() == 1).all()):
            tokens = slice(int(tokens[0]), int(tokens[0]) + t1 - t0)
        graph = PairGraph(rank[query[index]] - t0, rank[key[index]] - t0, t1 - t0, 1)
        chunks.append(PairChunk(tokens, index, graph))
    return chunks


#: Elements (tokens x model width) of the activations that :class:`FusedPairAttention` holds at once.
FUSED_CHUNK_ELEMENTS = 2**20


class FusedPairAttention(torch.autograd.Function):
    """A whole sparse attention layer (QKV projection, attention over the allowed pairs, output
    projection) that keeps only its input and the ``pairs x heads`` weights for the backward pass.

    It works through the minibatch a chunk of cells and one head at a time and recomputes the
    projections in the backward pass, so its working memory is a chunk's activations, not the
    minibatch's: q, k, v, the attended values and their head-major copies are never held for the whole
    minibatch (the unfused path keeps about seven ``tokens x d_model`` tensors per layer for backward).
    Under autocast the two projections run in the autocast dtype (as :class:`torch.nn.Linear` would)
    and the output has that dtype; the attention itself and the gradients run in at least float32.

    ``apply(x, w_qkv, w_out, bias, chunks, n_heads)``: ``x`` ``(n_tokens, d_model)``; ``w_qkv``
    ``(3 * d_model, d_model)`` laid out ``(3, heads, head_dim)`` as :class:`MaskedMultiheadAttention`'s
    ``qkv``; ``w_out`` ``(d_model, d_model)``; ``bias`` ``(n_pairs, heads)`` or ``None``; ``chunks`` from
    :meth:`TokenPairs.chunks`. Returns the layer output ``(n_tokens, d_model)`` and the weights
    ``(n_pairs, heads)`` (not differentiable).
    """

    @staticmethod
    def forward(ctx, x, w_qkv, w_out, bias, chunks: list[PairChunk], n_heads: int):
        device = x.device.type
        cast = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
        with torch.autocast(device, enabled=False):
            acc = torch.promote_types(x.dtype, torch.float32)
            x_dtype, w_dtypes = x.dtype, (w_qkv.dtype, w_out.dtype)
            x, w_qkv, w_out = x.to(acc), w_qkv.to(acc), w_out.to(acc)
            n, d_model = x.shape
            d = d_model // n_heads
            n_pairs = sum(len(c.pairs) for c in chunks)
            out = torch.zeros(n, d_model, dtype=acc, device=x.device)
            weights = torch.empty(n_pairs, n_heads, dtype=acc, device=x.device)
            w_heads = w_qkv.view(3, n_heads, d, d_model)
            for chunk in chunks:
                xc = chunk.take(x)
                rows = torch.zeros(xc.shape[0], d_model, dtype=acc, device=x.device)
                for h in range(n_heads):
                    q, k, v = _project(xc, w_heads[:, h], cast)
                    b = None if bias is None else bias[chunk.pairs, h].to(acc)
                    w = _csr_weights(q, k, chunk.graph, b)
                    weights[chunk.pairs, h] = w
                    o, w_o = chunk.graph.matrix(w[None]) @ v, w_out[:, h * d : (h + 1) * d]
                    rows += _matmul(o, w_o.T, cast)
                chunk.add_to(out, rows)
        ctx.save_for_backward(x, w_qkv, w_out, weights)
        ctx.chunks, ctx.has_bias, ctx.cast = chunks, bias is not None, cast
        ctx.dtypes = (x_dtype, w_dtypes[0], w_dtypes[1])
        ctx.mark_non_differentiable(weights)
        return (out if cast is None else out.to(cast)), weights

    @staticmethod
    def backward(ctx, grad_out, _grad_weights):
        x, w_qkv, w_out, weights = ctx.saved_tensors
        with torch.autocast(x.device.type, enabled=False):
            grad_out = grad_out.to(x.dtype)
            n, d_model = x.shape
            n_heads = weights.shape[1]
            d = d_model // n_heads
            scale = 1.0 / math.sqrt(d)
            w_heads = w_qkv.view(3, n_heads, d, d_model)
            grad_x = torch.zeros_like(x)
            grad_qkv = torch.zeros_like(w_heads)
            grad_w_out = torch.zeros_like(w_out)
            grad_bias = torch.empty_like(weights) if ctx.has_bias else None
            for chunk in ctx.chunks:
                xc, go_c = chunk.take(x), chunk.take(grad_out)
                gx = torch.zeros_like(xc)
                graph = chunk.graph
                for h in range(n_heads):
                    cols = slice(h * d, (h + 1) * d)
                    q, k, v = _project(xc, w_heads[:, h], ctx.cast)
                    w = weights[chunk.pairs, h]
                    attn = graph.matrix(w[None])
                    o = attn @ v
                    if ctx.cast is not None:  # the forward pass multiplied the output projection in this dtype
                        o = o.to(ctx.cast).to(o.dtype)
                    grad_w_out[:, cols].addmm_(go_c.T, o)
                    go = go_c @ w_out[:, cols]
                    # softmax backward: d logit_ij = w_ij (dO_i . v_j - dO_i . o_i)
                    delta = (go * o).sum(-1)[graph.row]
                    pattern = graph.matrix(torch.zeros_like(w)[None])
                    dw = torch.sparse.sampled_addmm(pattern, go, v.T, beta=0.0).values()
                    dl = w * (dw - delta)
                    if grad_bias is not None:
                        grad_bias[chunk.pairs, h] = dl
                    scaled = graph.matrix((dl * scale)[None])
                    gq, gk = scaled @ k, graph.matrix((dl * scale)[None], transpose=True) @ q
                    gv = graph.matrix(w[None], transpose=True) @ go
                    g = torch.cat([gq, gk, gv], dim=1)  # (tokens, 3 * d)
                    grad_qkv[:, h].add_((g.T @ xc).view(3, d, d_model))
                    gx.addmm_(g, w_heads[:, h].reshape(3 * d, d_model))
                chunk.add_to(grad_x, gx)
        dx, dqkv, dout = ctx.dtypes
        return grad_x.to(dx), grad_qkv.view_as(w_qkv).to(dqkv), grad_w_out.to(dout), grad_bias, None, None


def _matmul(a: torch.Tensor, b: torch.Tensor, cast: torch.dtype | None) -> torch.Tensor:
    """``a @ b``, multiplied in ``cast`` (an autocast dtype) when given, returned in ``a``'s dtype."""
    if cast is None:
        return a @ b
    return (a.to(cast) @ b.to(cast)).to(a.dtype)


def _project(x: torch.Tensor, w: torch.Tensor, cast: torch.dtype | None) -> tuple[torch.Tensor, ...]:
    """One head's ``q, k, v`` ``(tokens, head_dim)`` from ``x`` and that head's ``(3, head_dim, d_model)`` weights."""
    qkv = _matmul(x, w.reshape(-1, w.shape[-1]).T, cast)
    return tuple(z.contiguous() for z in qkv.chunk(3, dim=1))


def _csr_weights(q: torch.Tensor, k: torch.Tensor, graph: PairGraph, bias: torch.Tensor | None) -> torch.Tensor:
    """Softmax weights ``(n_pairs,)`` of one head over a one-head :class:`PairGraph` (values in its order)."""
    pattern = graph.matrix(torch.zeros(1, graph.n_pairs, dtype=q.dtype, device=q.device))
    logits = torch.sparse.sampled_addmm(pattern, q, k.T, beta=0.0, alpha=1.0 / math.sqrt(q.shape[1])).values()
    if bias is not None:
        logits = logits + bias
    logits = logits[None]
    exp = torch.exp(logits - graph.per_row(logits, "max"))
    return (exp / graph.per_row(exp, "sum"))[0]


class _GatherPairAttention(torch.autograd.Function):
    """Softmax attention over an explicit list of (query, key) pairs, by gather and scatter.

    The fallback for devices without sparse CSR kernels (e.g. Apple MPS). It keeps only q, k, v, the
    output and the ``(pairs, heads)`` weights for the backward pass and processes pairs in chunks of
    about :data:`PAIR_CHUNK_ELEMENTS` gathered elements. Accumulation runs in at least float32.
    """

    @staticmethod
    def forward(ctx, q, k, v, query, key, bias):
        n, h, d = q.shape
        scale = 1.0 / math.sqrt(d)
        chunk = max(1, PAIR_CHUNK_ELEMENTS // (h * d))
        n_pairs = len(query)
        acc = torch.promote_types(q.dtype, torch.float32)  # float32, or float64 for float64 inputs
        logits = torch.empty(n_pairs, h, dtype=acc, device=q.device)
        for start in range(0, n_pairs, chunk):
            sl = slice(start, start + chunk)
            logits[sl] = (q[query[sl]] * k[key[sl]]).sum(-1, dtype=acc)
        logits *= scale
        if bias is not None:
            logits += bias.to(acc)
        weights = segment_softmax(logits, query, n)
        out = torch.zeros(n, h, d, dtype=acc, device=q.device)
        for start in range(0, n_pairs, chunk):
            sl = slice(start, start + chunk)
            out.index_add_(0, query[sl], weights[sl, :, None] * v[key[sl]])
        ctx.save_for_backward(q, k, v, query, key, weights, out)
        ctx.scale, ctx.chunk, ctx.has_bias = scale, chunk, bias is not None
        ctx.mark_non_differentiable(weights)
        return out.to(q.dtype), weights

    @staticmethod
    def backward(ctx, grad_out, _grad_weights):
        q, k, v, query, key, weights, out = ctx.saved_tensors
        grad_out = grad_out.to(out.dtype)
        # softmax backward: d logit_ij = w_ij (dO_i . v_j - dO_i . out_i)
        delta = (grad_out * out).sum(-1)
        grad_q, grad_k, grad_v = (torch.zeros_like(out) for _ in range(3))
        grad_logits = torch.empty_like(weights) if ctx.has_bias else None
        for start in range(0, len(query), ctx.chunk):
            sl = slice(start, start + ctx.chunk)
            qi, kj = query[sl], key[sl]
            go = grad_out[qi]
            w = weights[sl]
            grad_v.index_add_(0, kj, w[:, :, None] * go)
            dl = w * ((go * v[kj]).sum(-1) - delta[qi])
            if grad_logits is not None:
                grad_logits[sl] = dl
            dl = (dl * ctx.scale)[:, :, None]
            grad_q.index_add_(0, qi, dl * k[kj])
            grad_k.index_add_(0, kj, dl * q[qi])
        return grad_q.to(q.dtype), grad_k.to(k.dtype), grad_v.to(v.dtype), None, None, grad_logits


def pair_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    query: torch.Tensor,
    key: torch.Tensor,
    bias: torch.Tensor | None = None,
    graph: PairGraph | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled dot-product attention restricted to explicit ``(query, key)`` pairs.

    Token ``query[p]`` reads token ``key[p]``; a token that is never a query gets zeros. Cost and memory
    grow with the number of pairs, not tokens²: sparse CSR kernels (SDDMM for the logits, SpMM for the
    values) on CPU and CUDA, gather/scatter on other devices.

    Parameters
    ----------
    q, k, v
        ``(n_tokens, heads, head_dim)``.
    query, key
        ``(n_pairs,)`` token positions.
    bias
        Optional additive logit bias ``(n_pairs, heads)``.
    graph
        The :class:`PairGraph` of ``query``, ``key`` (built here when not given).

    Returns
    -------
    The attended values ``(n_tokens, heads, head_dim)`` (dtype of ``q``) and the weights
    ``(n_pairs, heads)`` (float32, float64 for float64 inputs) (summing to one over each query's pairs).
    Differentiable in ``q``, ``k``, ``v`` and ``bias``.

    Examples
    --------
    >>> import torch
    >>> from sctransformer_tools.nn import pair_attention
    >>> q = k = torch.zeros(3, 1, 2)
    >>> v = torch.arange(6.0).reshape(3, 1, 2)
    >>> out, w = pair_attention(q, k, v, torch.tensor([0, 0, 1]), torch.tensor([1, 2, 1]))
    >>> out[:, 0].tolist(), w.ravel().tolist()
    ([[3.0, 4.0], [2.0, 3.0], [0.0, 0.0]], [0.5, 0.5, 1.0])
    """
    if q.device.type not in CSR_DEVICE_TYPES:
        return _GatherPairAttention.apply(q, k, v, query, key, bias)
    if not len(query):  # no pairs: every token gets zeros
        weights = torch.zeros(0, q.shape[1], dtype=torch.promote_types(q.dtype, torch.float32), device=q.device)
        return torch.zeros_like(q), weights
    if graph is None:
        graph = PairGraph(query, key, q.shape[0], q.shape[1])
    return _CSRPairAttention.apply(q, k, v, graph, bias)


class MaskedMultiheadAttention(nn.Module):
    """Multi-head self-attention in which a query reads only the keys it is allowed to.

    Two paths compute the same function:

    - **sparse** (``pairs=``): logits, softmax and values only for the allowed pairs (sparse CSR
      kernels, see :func:`pair_attention`); cost grows with the number of pairs, not tokens². The path
      of GRN masks; optionally fused into one memory-lean function (``fused``).
    - **dense** (``allowed=``): :func:`torch.nn.functional.scaled_dot_product_attention` with a
      boolean mask; cost grows with tokens². The path of the dense control.

    Parameters
    ----------
    d_model
        Token width.
    n_heads
        Number of heads; ``d_model`` must be divisible by it.
    dense_heads
        Number of heads (the last ones) that ignore the structural mask and see every valid token.
    fused
        On the sparse path (CPU / CUDA, no dense heads), run the whole layer as one
        :class:`FusedPairAttention`: a few cells and one head at a time, projections recomputed in the
        backward pass. Same function, less memory (it keeps only the layer input and the pair weights
        for backward: 121 vs 291 MB for one layer at 4,000 genes, batch 8), but many small kernels: in
        the default model on 2 CPU threads it was up to 3x slower per step, so it is off by default.
        Switch it on for a trained model with ``for block in model.module.blocks: block.attn.fused = True``.

    Notes
    -----
    A query with no allowed key (possible with ``self_loops=False``) returns exactly zero, never NaN.

    Examples
    --------
    >>> import torch
    >>> from sctransformer_tools.nn import MaskedMultiheadAttention
    >>> attn = MaskedMultiheadAttention(8, 2)
    >>> x = torch.randn(1, 3, 8)
    >>> allowed = torch.eye(3, dtype=torch.bool)[None]  # each token reads only itself
    >>> out, w = attn(x, allowed, need_weights=True)
    >>> w[0, 0].tolist()
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    """

    def __init__(self, d_model: int, n_heads: int, dense_heads: int = 0, fused: bool = False):
        super().__init__()
        self.fused = fused
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}.")
        if not 0 <= dense_heads <= n_heads:
            raise ValueError(f"dense_heads must be between 0 and n_heads={n_heads}, got {dense_heads}.")
        self.d_model, self.n_heads, self.d_head = d_model, n_heads, d_model // n_heads
        self.dense_heads = dense_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)

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
        """Attend.

        Parameters
        ----------
        x
            Padded ``(batch, tokens, d_model)``, or packed ``(n_tokens, d_model)`` with ``layout``.
        allowed
            Dense path: ``(batch, tokens, tokens)`` boolean, ``[b, query, key]`` in the padded layout.
            ``None`` and no ``pairs``: every token reads every valid token.
        pairs
            Sparse path: the allowed :class:`TokenPairs`, positions into ``x`` flattened to
            ``(-1, d_model)`` (takes precedence over ``allowed``).
        layout
            :class:`TokenLayout` of packed ``x``: how to pad it for the dense path and dense heads.
        key_valid
            ``(batch, tokens)`` boolean, False for padding, for padded ``x`` (from ``layout`` otherwise).
        bias
            Additive logit bias: ``(n_pairs,)`` or ``(n_pairs, masked heads)`` for the sparse path, broadcastable to
            ``(batch, heads, tokens, tokens)`` for the dense path. Not applied to dense heads.
        need_weights
            Also return the attention weights: ``(n_pairs, masked heads)`` for the sparse path,
            ``(batch, heads, tokens, tokens)`` (padded layout) for the dense path.

        Returns
        -------
        The updated tokens (shaped as ``x``) and the weights (``None`` unless ``need_weights``).
        """
        packed = x.dim() == 2
        if packed and layout is None and (pairs is None or self.dense_heads):
            raise ValueError("Packed input needs its `layout` for dense attention.")
        shape = x.shape
        if pairs is not None and self.fused and not self.dense_heads and x.device.type in CSR_DEVICE_TYPES:
            if bias is not None:
                bias = (bias if bias.dim() == 2 else bias[:, None]).expand(len(pairs.query), self.n_heads)
            out, weights = FusedPairAttention.apply(
                x.reshape(-1, self.d_model),
                self.qkv.weight,
                self.out.weight,
                bias,
                pairs.chunks(max(1, FUSED_CHUNK_ELEMENTS // self.d_model)),
                self.n_heads,
            )
            return out.view(shape), (weights if need_weights else None)
        shape = x.shape
        qkv = self.qkv(x).view(*shape[:-1], 3, self.n_heads, self.d_head)
        q, k, v = qkv.unbind(-3)  # (..., h, d)
        if packed:
            key_valid = layout.valid()
        n_masked = self.n_heads - self.dense_heads
        weights = None
        if pairs is not None:
            flat = [z.reshape(-1, self.n_heads, self.d_head) for z in (q, k, v)]
            heads = torch.zeros_like(flat[0])
            if n_masked:
                sparse, weights = self._sparse(*(z[:, :n_masked] for z in flat), pairs, bias)
                heads[:, :n_masked] = sparse
            if self.dense_heads:
                sub = [z[..., n_masked:, :] for z in (q, k, v)]
                if packed:
                    sub = [layout.pad(z) for z in sub]
                dense, _ = self._dense(*sub, self._valid_mask(key_valid), None, False)
                heads[:, n_masked:] = (layout.unpad(dense) if packed else dense).reshape(
                    -1, self.dense_heads, self.d_head
                )
        else:
            if packed:
                q, k, v = (layout.pad(z) for z in (q, k, v))
            b, t = q.shape[:2]
            if allowed is None:
                mask = self._valid_mask(key_valid)
            elif self.dense_heads:
                dense = self._valid_mask(key_valid)
                dense = torch.ones_like(allowed) if dense is None else dense.expand(b, t, t)
                mask = torch.stack([allowed] * n_masked + [dense] * self.dense_heads, dim=1)
                if bias is not None:
                    bias = torch.cat([bias.expand(b, n_masked, t, t), bias.new_zeros(b, self.dense_heads, t, t)], dim=1)
            else:
                mask = allowed
            heads, weights = self._dense(q, k, v, mask, bias, need_weights)
            if packed:
                heads = layout.unpad(heads)
        return self.out(heads.reshape(*shape[:-1], self.d_model)), weights

    @staticmethod
    def _valid_mask(key_valid: torch.Tensor | None) -> torch.Tensor | None:
        """``(b, t)`` valid keys -> ``(b, 1, t)`` mask (every query reads every valid key)."""
        if key_valid is None:
            return None
        return key_valid[:, None, :]

    def _dense(self, q, k, v, mask, bias, need_weights):
        """Scaled dot-product attention over all pairs, masked. Inputs ``(b, t, h, d)``."""
        q, k, v = (z.transpose(1, 2) for z in (q, k, v))  # (b, h, t, d)
        if mask is not None and mask.dim() == 3:
            mask = mask[:, None]
        if mask is not None and mask.shape[-2] == 1:  # key padding only
            mask = mask.expand(-1, -1, q.shape[-2], -1)
        empty = None if mask is None else ~mask.any(-1, keepdim=True)
        if need_weights or bias is not None:
            logits = (q @ k.transpose(-2, -1)) / math.sqrt(self.d_head)
            if bias is not None:
                logits = logits + bias
            if mask is not None:
                logits = logits.masked_fill(~mask, float("-inf")).masked_fill(empty, 0.0)
            weights = torch.softmax(logits, dim=-1)
            if mask is not None:
                weights = weights.masked_fill(~mask, 0.0)
            out = weights @ v
        else:
            weights = None
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        if empty is not None:
            out = out.masked_fill(empty, 0.0)
        return out.transpose(1, 2), (weights if need_weights else None)

    def _sparse(self, q, k, v, pairs: TokenPairs, bias):
        """Attention over the allowed pairs only. Inputs ``(n_tokens, h, d)``; weights ``(n_pairs, h)``."""
        if bias is not None:
            bias = (bias if bias.dim() == 2 else bias[:, None]).expand(len(pairs.query), q.shape[1])
        return pair_attention(q, k, v, pairs.query, pairs.key, bias, graph=pairs.graph(q.shape[1]))
