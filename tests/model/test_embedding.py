"""Contextual gene states (model/_embedding.py) on a tiny pbmc3k model."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch


def test_gene_states_are_token_states_averaged_over_cells(fitted):
    """get_gene_states: at the last depth, each gene's state is the mean of its tokens' final states over the cells
    read that express it (checked against encode(return_hidden=True))."""
    model, adata = fitted
    cells = np.arange(0, adata.n_obs, 7)
    states = model.get_gene_states(adata, indices=cells, batch_size=64)
    assert sorted(states) == [0, 1] and states[0].index.equals(states[1].index)
    module = model.module
    sums = torch.zeros(len(model.panel_), module.cls.numel(), dtype=torch.float64)
    counts = torch.zeros(len(model.panel_), dtype=torch.float64)

    def read(batch):
        out = module.encode(batch, return_hidden=True)
        sums.index_add_(0, out.tokens.gene_ids, out.hidden.double())
        counts.index_add_(0, out.tokens.gene_ids, torch.ones(len(out.tokens.gene_ids), dtype=torch.float64))

    with model.reader.read(adata) as data:
        model.reader.map_batches(data.adata, read, cells, 64)
    seen = (counts > 0).numpy()
    assert len(states[1]) == int(seen.sum())
    expected = (sums[seen] / counts[seen, None]).numpy()
    np.testing.assert_allclose(states[1].to_numpy(), expected, rtol=1e-4, atol=1e-5)
    assert list(states[1].index) == list(model.panel_["symbol"].to_numpy()[seen])
    with pytest.raises(ValueError, match="depths must lie in"):
        model.get_gene_states(adata, depths=[2])
