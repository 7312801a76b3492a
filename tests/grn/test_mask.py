"""Attention masks (grn/_mask.py): the GRN prior and its controls of the same density, on pbmc3k."""

from __future__ import annotations

import numpy as np
import pytest

from sctransformer_tools import grn


@pytest.fixture(scope="module")
def panel(pbmc3k_full, collectri):
    return grn.select_panel(pbmc3k_full.var_names, grn.validate_regulons(collectri))


def test_grn_mask_follows_regulons(panel):
    mask = grn.build_mask(len(panel), panel.edges)
    dense = mask.to_dense()
    # a target's query reads its TFs, nothing else besides itself
    assert dense[panel.edges["target_idx"], panel.edges["source_idx"]].all()
    assert dense.sum() == len(panel.edges) + len(panel)
    s = mask.summary()
    assert s["edges"] == 18_542 and s["genes"] == 3_866 and s["tfs"] == 685
    assert s["density"] == pytest.approx(18_542 / (3_866 * 3_865))


@pytest.mark.parametrize("direction", ["tf_to_target", "both"])
def test_controls_have_the_same_density(panel, direction):
    ref = grn.build_mask(len(panel), panel.edges, direction=direction)
    rand = grn.build_mask(len(panel), panel.edges, kind="random", direction=direction, seed=1)
    shuf = grn.build_mask(len(panel), panel.edges, kind="shuffled", direction=direction, seed=1)
    dense = grn.build_mask(len(panel), panel.edges, kind="dense", direction=direction)
    assert rand.n_pairs == ref.n_pairs
    assert abs(shuf.n_pairs - ref.n_pairs) <= 0.02 * ref.n_pairs  # reciprocal regulon edges may differ
    assert dense.density == 1.0
    # controls differ from the prior
    overlap = len({tuple(p) for p in rand.pairs} & {tuple(p) for p in ref.pairs})
    assert overlap < 0.01 * ref.n_pairs
    if direction == "both":
        d = rand.to_dense()
        assert (d == d.T).all()


def test_shuffled_preserves_every_degree(panel):
    ref = grn.build_mask(len(panel), panel.edges).to_dense()
    shuf = grn.build_mask(len(panel), panel.edges, kind="shuffled", seed=7).to_dense()
    assert (ref.sum(0) == shuf.sum(0)).all()  # each TF keeps its number of targets
    assert (ref.sum(1) == shuf.sum(1)).all()  # each target keeps its number of TFs
    assert (ref != shuf).sum() > 0.5 * ref.sum()


def test_random_and_shuffled_are_reproducible(panel):
    for kind in ("random", "shuffled"):
        a = grn.build_mask(len(panel), panel.edges, kind=kind, seed=3)
        b = grn.build_mask(len(panel), panel.edges, kind=kind, seed=3)
        c = grn.build_mask(len(panel), panel.edges, kind=kind, seed=4)
        assert np.array_equal(a.pairs, b.pairs) and not np.array_equal(a.pairs, c.pairs)


def test_unknown_mask_and_direction(panel):
    with pytest.raises(ValueError, match="Unknown mask 'grnn'"):
        grn.build_mask(len(panel), panel.edges, kind="grnn")
    with pytest.raises(ValueError, match="Unknown direction"):
        grn.build_mask(len(panel), panel.edges, direction="target_to_tf")
