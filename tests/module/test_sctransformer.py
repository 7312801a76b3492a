"""The scvi-tools module (module/_sctransformer.py): sparse == dense, cell by cell, the attention path, state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sctransformer_tools as sct
from sctransformer_tools.module import CellBatch, SCTransformerModule

TINY = {"d_model": 16, "n_layers": 1, "n_heads": 2, "n_top_genes": 0}


def _module(**kw) -> SCTransformerModule:
    rng = np.random.default_rng(0)
    pairs = np.unique(rng.integers(0, 30, size=(80, 2)), axis=0)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    return SCTransformerModule(40, 4, np.arange(5, 35), pairs, rng.choice([-1.0, 1.0], len(pairs)), dropout=0.0, **kw)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"genes_attend_cls": True},
        {"self_loops": False},
        {"dense_heads": 2},
        {"edge_bias": True},
        {"masked_layers": [1]},
    ],
)
def test_module_sparse_equals_dense(kw):
    torch.manual_seed(0)
    module = _module(**kw).double().eval()
    if module.bias_scale is not None:
        module.bias_scale.data.normal_()
    x = torch.poisson(torch.rand(6, 40) * 2).double()
    x[2] = 0  # a cell without counts
    codes = torch.unique(module.mask_pairs[:, 0] * 30 + module.mask_pairs[:, 1])
    batch = CellBatch(x)
    module.attention_path = "sparse"
    sparse = module.pair_attention(batch, codes)
    sparse_logits = module.classify(module.encode(batch).embedding)
    module.attention_path = "dense"
    dense = module.pair_attention(batch, codes)
    dense_logits = module.classify(module.encode(batch).embedding)
    for key in ("pairs", "cls"):
        assert torch.allclose(sparse[key], dense[key], atol=1e-10), key
    assert torch.allclose(sparse_logits, dense_logits, atol=1e-10)
    assert torch.isfinite(sparse_logits).all()
    assert (sparse["pairs"][sparse["present"] == 0] == 0).all()


def test_module_trains_the_same_cell_by_cell(monkeypatch):
    """The fused layer working through a packed minibatch one cell at a time (the tokens of a cell are
    not contiguous: CLS tokens come first) gives the unfused layer's loss and gradients."""
    from sctransformer_tools.nn import _attention

    torch.manual_seed(0)
    module = _module(edge_bias=True).double().eval()  # eval: no token dropout (gradients still flow)
    module.bias_scale.data.normal_()
    module.attention_path = "sparse"
    x = torch.poisson(torch.rand(6, 40) * 2).double()
    x[2] = 0  # a cell without counts
    tensors = {"X": x, "labels": torch.randint(0, 3, (6, 1)).double()}

    def loss_and_grads():
        module.zero_grad()
        loss = module(tensors)["classification"].loss
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in module.parameters() if p.grad is not None]

    monkeypatch.setattr(_attention, "FUSED_CHUNK_ELEMENTS", 1)  # one cell per chunk
    for block in module.blocks:
        block.attn.fused = True
    fused = loss_and_grads()
    for block in module.blocks:
        block.attn.fused = False
    unfused = loss_and_grads()
    assert torch.allclose(fused[0], unfused[0], atol=1e-12)
    assert len(fused[1]) == len(unfused[1]) > 0
    for a, b in zip(fused[1], unfused[1], strict=True):
        assert torch.allclose(a, b, atol=1e-10)


def test_auto_attention_path_follows_the_cost_model(monkeypatch):
    from sctransformer_tools.module import _sctransformer

    torch.manual_seed(0)
    module = _module().double().eval()
    x = torch.poisson(torch.rand(6, 40) * 2).double()
    calls = []
    original = _sctransformer.sparse_attention_pays
    monkeypatch.setattr(_sctransformer, "sparse_attention_pays", lambda *a: calls.append(original(*a)) or calls[-1])
    outputs = {}
    for path, cost in (("sparse", 1e-9), ("dense", 1e9)):  # cheap pairs -> sparse; costly pairs -> dense
        monkeypatch.setattr(_sctransformer, "SPARSE_PAIR_COST", cost)
        out = module.encode(CellBatch(x), need_weights=True)
        assert (out.attention[0][0] is not None) == (path == "sparse")
        outputs[path] = module.classify(out.embedding)
    assert calls == [True, False]
    assert torch.allclose(outputs["sparse"], outputs["dense"], atol=1e-10)


def test_module_state_roundtrip_restores_mask():
    a, b = _module(), _module()
    b.set_mask(np.array([[0, 1]]))
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.mask_pairs, b.mask_pairs) and torch.equal(a.csr_indices, b.csr_indices)


def test_a_repeated_read_is_the_same_read(pbmc68k):
    """encode(repeat=n): each cell read n times as consecutive cells, with the same tokens and the same result."""
    sct.SCTransformer.setup_anndata(pbmc68k, labels_key="bulk_labels")
    model = sct.SCTransformer(pbmc68k, **TINY)
    module = model.module.eval()
    x = torch.as_tensor(pbmc68k.X[:6].toarray(), dtype=torch.float32)
    batch = CellBatch(x, torch.as_tensor(pbmc68k.obs["n_counts"].to_numpy()[:6], dtype=torch.float32))
    with torch.no_grad():
        once = module.encode(batch, return_hidden=True)
        thrice = module.encode(batch, return_hidden=True, repeat=3)
    assert thrice.tokens.n_cells == 18 and len(thrice.tokens.cell) == 3 * len(once.tokens.cell)
    for r in range(3):
        torch.testing.assert_close(thrice.embedding[r::3], once.embedding, atol=1e-5, rtol=1e-5)
    tokens = thrice.tokens
    first = tokens.cell % 3 == 0
    torch.testing.assert_close(tokens.gene_ids[first], once.tokens.gene_ids)
    torch.testing.assert_close(thrice.hidden[first], once.hidden, atol=1e-5, rtol=1e-5)
    dropped = module.tokenizer(x, batch.library, drop_prob=0.5).repeat(2)  # replicas share their token dropout
    torch.testing.assert_close(dropped.gene_ids[dropped.cell == 0], dropped.gene_ids[dropped.cell == 1])
