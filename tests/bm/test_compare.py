"""sct.bm.compare: paired differences by seed."""

from __future__ import annotations

import pandas as pd
import pytest

from sctransformer_tools import bm


def _fabricated() -> pd.DataFrame:
    rows = []
    for seed, noise in zip((0, 1, 2), (0.0, 0.01, -0.01), strict=True):
        for mask, base in (("grn", 0.83), ("shuffled", 0.80), ("dense", 0.81)):
            rows.append(("sctransformer", mask, "collectri", seed, base + noise + 0.01 * seed * (mask == "grn")))
        rows.append(("sctransformer", "grn", "trrust", seed, 0.83 + noise))
        rows.append(("logistic_regression", None, None, seed, 0.85))
    return pd.DataFrame(rows, columns=["method", "mask", "regulons", "seed", "macro_f1"])


def test_compare_pairs_by_seed():
    from scipy import stats

    table = bm.compare(_fabricated(), reference="grn")
    assert table["reference"].unique().tolist() == ["grn (collectri)"]  # several sets: the first one
    row = table.set_index("comparator").loc["shuffled (collectri)"]
    assert row["seeds"] == [0, 1, 2] and row["diffs"] == pytest.approx([0.03, 0.04, 0.05])
    assert row["mean"] == pytest.approx(0.04) and row["sd"] == pytest.approx(0.01)
    assert (row["wins"], row["losses"], row["ties"]) == (3, 0, 0)
    assert row["p_value"] == pytest.approx(stats.ttest_1samp([0.03, 0.04, 0.05], 0).pvalue)
    lr = table.set_index("comparator").loc["logistic_regression"]
    assert lr["losses"] == 2 and lr["mean"] == pytest.approx(-0.01)
    tied = bm.compare(_fabricated(), reference="grn (trrust)").set_index("comparator").loc["grn (collectri)"]
    assert tied["diffs"] == pytest.approx([0.0, -0.01, -0.02]) and tied["ties"] == 1
    # one regulon set: bare mask names; a missing seed is not paired
    one = _fabricated()
    one = one[(one["regulons"] != "trrust") & ~((one["mask"] == "dense") & (one["seed"] == 2))]
    table = bm.compare(one, reference="grn")
    assert table["comparator"].tolist() == ["shuffled", "dense", "logistic_regression"]
    assert table.set_index("comparator").loc["dense", "n_pairs"] == 2
    by_peer = bm.compare(one, reference="logistic_regression")
    assert by_peer.set_index("comparator").loc["grn", "mean"] == pytest.approx(0.01)


def test_compare_rejects_bad_input():
    with pytest.raises(ValueError, match="reference 'random'"):
        bm.compare(_fabricated(), reference="random")
    with pytest.raises(KeyError, match="no column 'ari'"):
        bm.compare(_fabricated(), metric="ari")
    doubled = pd.concat([_fabricated(), _fabricated()])
    with pytest.raises(ValueError, match="several rows"):
        bm.compare(doubled)
