"""The tokenizer (module/_tokenizer.py): expressed genes only, capped."""

from __future__ import annotations

import torch

from sctransformer_tools.module import ExpressedGeneTokenizer


def test_tokenizer_expressed_genes_only_and_cap():
    tok = ExpressedGeneTokenizer(torch.arange(5), max_tokens=2)
    counts = torch.tensor([[0.0, 3.0, 1.0, 7.0, 0.0], [0.0] * 5, [1.0, 0, 0, 0, 0]])
    out = tok(counts)
    # cell 0 keeps its two most expressed genes (3 and 1); cell 1 has no counts and no tokens
    assert out.cell.tolist() == [0, 0, 2]
    assert out.gene_ids.tolist() == [1, 3, 0]
    assert torch.isfinite(out.values).all()
    expected = torch.log1p(torch.tensor([3.0, 7.0]) / 11 * 1e4)
    assert torch.allclose(out.values[:2], expected)
