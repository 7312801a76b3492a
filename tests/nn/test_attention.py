"""Masked attention invariants (nn/_attention.py): zero weight outside the mask, locality, no NaN, sparse == dense."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sctransformer_tools.nn import MaskedMultiheadAttention, TokenLayout, TransformerBlock
from sctransformer_tools.nn._attention import pairs_from_dense, segment_softmax


@pytest.fixture
def masked_input():
    torch.manual_seed(0)
    x = torch.randn(3, 9, 16, dtype=torch.float64)
    allowed = torch.rand(3, 9, 9) < 0.25
    allowed[0, 4] = False  # a query with no allowed key at all
    return x, allowed


def test_weights_outside_mask_are_exactly_zero(masked_input):
    x, allowed = masked_input
    attn = MaskedMultiheadAttention(16, 4).double()
    _, w = attn(x, allowed, need_weights=True)
    assert (w[~allowed[:, None].expand_as(w)] == 0).all()
    rows = allowed.any(-1)[:, None].expand(-1, 4, -1)
    assert torch.allclose(w.sum(-1)[rows], torch.ones(()).double())


def test_empty_rows_give_zero_not_nan(masked_input):
    x, allowed = masked_input
    for dense_heads in (0, 2):
        attn = MaskedMultiheadAttention(16, 4, dense_heads=dense_heads).double()
        for kwargs in ({"allowed": allowed}, {"pairs": pairs_from_dense(allowed)}):
            out, _ = attn(x, **kwargs)
            assert torch.isfinite(out).all()
        out, _ = MaskedMultiheadAttention(16, 4).double()(x, allowed)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("dense_heads", [0, 1])
def test_sparse_path_equals_dense_reference(masked_input, dense_heads):
    x, allowed = masked_input
    attn = MaskedMultiheadAttention(16, 4, dense_heads=dense_heads).double()
    bias = torch.randn(3, 1, 9, 9, dtype=torch.float64) * allowed[:, None]
    out_dense, w_dense = attn(x, allowed, bias=bias, need_weights=True)
    pairs = pairs_from_dense(allowed)
    b, q, k = allowed.nonzero(as_tuple=True)
    out_sparse, w_sparse = attn(x, pairs=pairs, bias=bias[b, 0, q, k], need_weights=True)
    assert torch.allclose(out_dense, out_sparse, atol=1e-12)
    n_masked = 4 - dense_heads
    assert torch.allclose(w_dense[b, :n_masked, q, k], w_sparse, atol=1e-12)


@pytest.mark.parametrize("kernel", ["fused", "fused-cell-chunks", "csr", "gather", "gather-chunked"])
def test_sparse_gradients_equal_dense_reference(masked_input, monkeypatch, kernel):
    """The fused layer (whole minibatch, or one cell at a time), the unfused sparse CSR kernels and the
    gather fallback (other devices, here in chunks of a few pairs)."""
    from sctransformer_tools.nn import _attention

    if kernel.startswith("gather"):
        monkeypatch.setattr(_attention, "CSR_DEVICE_TYPES", ())
    if kernel == "gather-chunked":
        monkeypatch.setattr(_attention, "PAIR_CHUNK_ELEMENTS", 40)
    if kernel == "fused-cell-chunks":
        monkeypatch.setattr(_attention, "FUSED_CHUNK_ELEMENTS", 16 * 9)  # 9 tokens: one cell per chunk
    x, allowed = masked_input
    attn = MaskedMultiheadAttention(16, 4, fused=kernel.startswith("fused")).double()
    b, q, k = allowed.nonzero(as_tuple=True)
    pairs = pairs_from_dense(allowed)
    shuffle = torch.randperm(len(b), generator=torch.Generator().manual_seed(0))  # pairs in any order
    group = torch.arange(pairs.n_tokens) // 9 if kernel == "fused-cell-chunks" else None
    pairs = type(pairs)(pairs.query[shuffle], pairs.key[shuffle], pairs.n_tokens, group=group)
    if group is not None:
        assert len(pairs.chunks(9)) == 3
    b, q, k = b[shuffle], q[shuffle], k[shuffle]
    bias_dense = torch.randn(3, 1, 9, 9, dtype=torch.float64).requires_grad_()
    grads, weights = {}, {}
    for path in ("dense", "sparse"):
        xx = x.clone().requires_grad_()
        attn.zero_grad()
        if path == "dense":
            out, w = attn(xx, allowed, bias=bias_dense * allowed[:, None], need_weights=True)
            weights[path] = w[b, :, q, k]
        else:
            out, w = attn(xx, pairs=pairs, bias=(bias_dense * allowed[:, None])[b, 0, q, k], need_weights=True)
            weights[path] = w
        (out * torch.linspace(-1, 1, out.numel(), dtype=torch.float64).view_as(out)).sum().backward()
        grads[path] = [xx.grad.clone(), attn.qkv.weight.grad.clone(), attn.out.weight.grad.clone()]
        grads[path].append(bias_dense.grad.clone())
        bias_dense.grad = None
        attn.zero_grad()
    assert torch.allclose(weights["dense"], weights["sparse"], atol=1e-12)
    for dense, sparse in zip(grads["dense"], grads["sparse"], strict=True):
        assert torch.allclose(dense, sparse, atol=1e-10)


def test_sparse_path_in_bfloat16_tracks_float32():
    torch.manual_seed(2)
    attn = MaskedMultiheadAttention(32, 4)
    x = torch.randn(2, 50, 32)
    allowed = torch.rand(2, 50, 50) < 0.1
    pairs = pairs_from_dense(allowed)
    ref, _ = attn(x, pairs=pairs)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low, _ = attn(x, pairs=pairs)
    assert low.dtype == torch.bfloat16
    assert (low.float() - ref).abs().max() < 0.05 * ref.abs().max()


def test_perturbing_a_non_neighbour_leaves_one_layer_unchanged():
    torch.manual_seed(1)
    block = TransformerBlock(16, 4, dropout=0.0).double().eval()
    n = 8
    allowed = torch.eye(n, dtype=torch.bool)
    allowed[3, 1] = allowed[5, 1] = allowed[6, 2] = True  # e.g. targets 3, 5 read TF 1; 6 reads TF 2
    x = torch.randn(1, n, 16, dtype=torch.float64)
    for path in ("dense", "sparse"):
        kwargs = {"allowed": allowed[None]} if path == "dense" else {"pairs": pairs_from_dense(allowed[None])}
        base, _ = block(x, **kwargs)
        x2 = x.clone()
        x2[0, 1] += torch.randn(16, dtype=torch.float64)  # perturb gene 1 (not a constant: LayerNorm removes it)
        moved, _ = block(x2, **kwargs)
        changed = (moved - base).abs().amax(-1)[0] > 1e-12
        assert changed.tolist() == [False, True, False, True, False, True, False, False]


def test_segment_softmax_and_layout_roundtrip():
    w = segment_softmax(torch.tensor([[0.0], [float(np.log(3.0))], [5.0]]), torch.tensor([1, 1, 0]), 3)
    assert torch.allclose(w.ravel(), torch.tensor([0.25, 0.75, 1.0]))
    layout = TokenLayout.from_counts(torch.tensor([3, 0, 2]))
    x = torch.arange(layout.n_tokens * 2.0).view(-1, 2)
    assert torch.equal(layout.unpad(layout.pad(x)), x)
    assert layout.valid().sum() == layout.n_tokens
