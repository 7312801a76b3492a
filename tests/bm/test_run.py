"""sct.bm's runner and splits (bm/_run.py) on scanpy's bundled pbmc68k_reduced, and its public surface.

Everything in tests/bm/ runs without ../shared (the regulons come from tests/data/regulons where it is absent);
the study harness behind benchmarks/evaluate.py is tested in tests/test_harness.py.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sctransformer_tools import bm

TINY = {"n_layers": 1, "d_model": 16, "n_heads": 2, "n_top_genes": 0}
QUICK = {"max_epochs": 1, "enable_progress_bar": False}
LABELS = "bulk_labels"


# ------------------------------------------------------------------------------------------ splits


def test_split_stratified_and_seeded(pbmc68k_full):
    train, test = bm.split(pbmc68k_full, LABELS, test_size=0.2, seed=0)
    assert train.n_obs + test.n_obs == pbmc68k_full.n_obs and not set(train.obs_names) & set(test.obs_names)
    counts = pbmc68k_full.obs[LABELS].value_counts()
    held = test.obs[LABELS].value_counts()
    for label, n in counts.items():  # every type on both sides, about a fifth held out
        assert 1 <= held[label] < n and abs(held[label] - 0.2 * n) <= 1
    again, _ = bm.split(pbmc68k_full, LABELS, test_size=0.2, seed=0)
    other, _ = bm.split(pbmc68k_full, LABELS, test_size=0.2, seed=1)
    assert list(again.obs_names) == list(train.obs_names) and list(other.obs_names) != list(train.obs_names)
    assert not train.is_view and not test.is_view  # copies: the user's object is never touched through them


def test_split_by_groups_and_unlabelled(pbmc68k):
    pbmc68k.obs["donor"] = np.repeat(list("abcdefg"), 100)
    pbmc68k.obs.loc[pbmc68k.obs_names[:10], LABELS] = np.nan
    train, test = bm.split(pbmc68k, LABELS, test_size=0.25, seed=3, by="donor")
    assert not set(train.obs["donor"]) & set(test.obs["donor"])
    assert test.obs["donor"].nunique() == 2 and test.n_obs == 200  # groups of 100 until a quarter is held out
    assert train.n_obs + test.n_obs == 690  # the 10 unlabelled cells go to neither part
    with pytest.raises(ValueError, match="at least two"):
        bm.split(pbmc68k[pbmc68k.obs["donor"] == "a"], LABELS, by="donor")
    with pytest.raises(KeyError, match="no obs column"):
        bm.split(pbmc68k, "celltype")


# ------------------------------------------------------------------------------------------ runner


@pytest.fixture(scope="module")
def results(pbmc68k_full):
    """grn and dense (tiny model, 1 epoch) and logistic regression on two seeds, with a callback and a monitor."""
    seen, entered = [], []

    @contextlib.contextmanager
    def monitor():
        entered.append("in")
        yield
        entered.append("out")

    def callback(row, fitted, train, test):
        seen.append((row["method"], type(fitted).__name__, train.n_obs, test.n_obs, LABELS in test.obs))
        row["fitted_class"] = type(fitted).__name__
        if row["method"] == "sctransformer":
            row["panel_genes"] = len(fitted.panel_)

    out = bm.run(
        pbmc68k_full,
        LABELS,
        split=0.2,
        masks=["grn", "dense"],
        seeds=[0, 1],
        model_kwargs=TINY,
        train_kwargs=QUICK,
        peer_kwargs={"logistic_regression": {"n_top_genes": 300}},
        callback=callback,
        monitor=monitor,
    )
    return out, seen, entered


def test_run_rows_and_columns(results):
    out, _, _ = results
    assert list(out.columns[:5]) == ["method", "mask", "regulons", "mode", "seed"]
    assert out["mode"].tolist() == ["labelled", "labelled", None] * 2
    expected = [("sctransformer", "grn"), ("sctransformer", "dense"), ("logistic_regression", None)] * 2
    assert [(m, k) for m, k in zip(out["method"], out["mask"], strict=True)] == expected
    assert out["seed"].tolist() == [0, 0, 0, 1, 1, 1]
    assert out["regulons"].tolist() == ["collectri", "collectri", None] * 2
    for metric in ("accuracy", "macro_f1", "balanced_accuracy", "rare_f1"):
        assert out[metric].between(0, 1).all(), metric
    assert (out["train_s"] > 0).all() and (out["predict_s"] > 0).all()
    assert (out["n_train"] + out["n_test"] == 700).all() and (out["n_test_excluded"] == 0).all()
    assert (out["n_test_scored"] == out["n_test"]).all()
    # logistic regression on 300 HVGs annotates the FACS-sorted populations well, and identically when rerun
    lr = out[out["method"] == "logistic_regression"]
    assert (lr["accuracy"] > 0.7).all()


def test_run_callback_and_monitor(results):
    out, seen, entered = results
    assert entered == ["in", "out"] * 6  # around every training
    assert [s[1] for s in seen] == ["SCTransformer", "SCTransformer", "LogisticRegressionPeer"] * 2
    assert all(s[2] + s[3] == 700 and s[4] for s in seen)  # the callback gets the test labels; methods never do
    assert out["fitted_class"].tolist() == [s[1] for s in seen]
    assert out["panel_genes"].iloc[0] > 0 and np.isnan(out["panel_genes"].iloc[2])


def test_run_each_seed_draws_its_split(results, pbmc68k_full):
    out, _, _ = results
    for seed in (0, 1):
        train, test = bm.split(pbmc68k_full, LABELS, test_size=0.2, seed=seed)
        assert (out.loc[out["seed"] == seed, "n_test"] == test.n_obs).all()
    # the same split and seed give the same logistic regression, through run or by hand
    train, test = bm.split(pbmc68k_full, LABELS, test_size=0.2, seed=1)
    fitted = bm.peers.logistic_regression(train, LABELS, n_top_genes=300, seed=1)
    accuracy = float(np.mean(fitted.predict(test) == test.obs[LABELS].astype(str).to_numpy()))
    assert out.loc[(out["method"] == "logistic_regression") & (out["seed"] == 1), "accuracy"].item() == accuracy


def test_run_split_column_tuple_and_exclusions(pbmc68k):
    rng = np.random.default_rng(0)
    is_test = rng.random(pbmc68k.n_obs) < 0.3
    pbmc68k.obs["part"] = np.where(is_test, "test", "train")
    pbmc68k.obs["held"] = is_test
    lr = {"methods": ["logistic_regression"], "peer_kwargs": {"logistic_regression": {"n_top_genes": 200}}}
    by_name = bm.run(pbmc68k, LABELS, split="part", **lr)
    by_bool = bm.run(pbmc68k, LABELS, split="held", **lr)
    pair = (pbmc68k[~is_test].copy(), pbmc68k[is_test].copy())
    by_pair = bm.run(None, LABELS, split=pair, seeds=[0, 1], **lr)
    assert by_name["n_test"].item() == by_bool["n_test"].item() == int(is_test.sum())
    assert by_name["accuracy"].item() == by_bool["accuracy"].item() == by_pair["accuracy"].iloc[0]
    assert (by_pair["n_test"] == int(is_test.sum())).all()  # a fixed split for every seed
    # a test type absent from training is not scored but counted
    train, test = pair
    train = train[train.obs[LABELS] != "CD34+"].copy()
    out = bm.run(None, LABELS, split=(train, test), **lr)
    n_cd34 = int((test.obs[LABELS] == "CD34+").sum())
    assert n_cd34 > 0 and out["n_test_excluded"].item() == n_cd34
    assert out["n_test_scored"].item() == test.n_obs - n_cd34


def test_run_reads_counts_from_a_layer(pbmc68k):
    lr = {"methods": ["logistic_regression"], "peer_kwargs": {"logistic_regression": {"n_top_genes": 200}}}
    plain = bm.run(pbmc68k, LABELS, **lr)
    layered = pbmc68k.copy()
    layered.layers["counts"] = layered.X.copy()
    layered.X = layered.X * 0  # not counts: only the layer may be read
    from_layer = bm.run(layered, LABELS, layer="counts", **lr)
    pd.testing.assert_frame_equal(
        plain.drop(columns=["train_s", "predict_s"]), from_layer.drop(columns=["train_s", "predict_s"])
    )


def test_run_rejects_bad_input(pbmc68k):
    with pytest.raises(ValueError, match="Unknown methods"):
        bm.run(pbmc68k, LABELS, methods=["svm"])
    with pytest.raises(ValueError, match="Unknown masks"):
        bm.run(pbmc68k, LABELS, masks=["sparse"])
    with pytest.raises(ValueError, match="Unknown metrics"):
        bm.run(pbmc68k, LABELS, metrics=["auprc"])
    with pytest.raises(ValueError, match="Unknown regulon set"):
        bm.run(pbmc68k, LABELS, regulons="no_such_set")
    with pytest.raises(KeyError, match="no obs column"):
        bm.run(pbmc68k, "celltype", methods=["logistic_regression"])
    with pytest.raises(KeyError, match="not an obs column"):
        bm.run(pbmc68k, LABELS, split="part", methods=["logistic_regression"])
    train = pbmc68k[pbmc68k.obs[LABELS] == "CD14+ Monocyte"].copy()
    test = pbmc68k[pbmc68k.obs[LABELS] == "CD19+ B"].copy()
    with pytest.raises(ValueError, match="nothing to score"):
        bm.run(None, LABELS, split=(train, test), methods=["logistic_regression"])


def test_regulon_sets_by_name():
    from sctransformer_tools.bm._run import _regulon_sets

    assert _regulon_sets("collectri") == {"collectri": {"regulons": "collectri"}}
    assert _regulon_sets({"collectri": "collectri", "dorothea_ABC": "dorothea_ABC"})["dorothea_ABC"] == {
        "regulons": "dorothea",
        "regulon_levels": "ABC",
    }
    net = pd.DataFrame({"source": ["A"], "target": ["B"], "weight": [1.0]})
    assert _regulon_sets(net)["custom"]["regulons"] is net
    assert _regulon_sets({"mine": net})["mine"]["regulons"] is net


def test_mask_specs_name_a_mask_and_its_regulon_set():
    assert bm.parse_mask("grn", "collectri") == ("grn", "collectri")
    assert bm.parse_mask("random@dorothea_AB", "collectri") == ("random", "dorothea_AB")
    with pytest.raises(ValueError, match="Unknown mask 'grnn'"):
        bm.parse_mask("grnn@collectri", "collectri")


# ------------------------------------------------------------------------------------------ surface


def test_public_surface_is_small():
    assert sorted(bm.__all__) == [
        "METRICS",
        "MODES",
        "compare",
        "metrics",
        "parse_mask",
        "peers",
        "register_metric",
        "run",
        "split",
        "with_unlabelled",
    ]
    assert set(bm.peers.PEERS) == {
        "logistic_regression",
        "celltypist",
        "celltypist_majority",
        "scanvi",
        "scanvi_surgery",
    }
    source = Path(bm.__file__).parent
    for path in source.glob("*.py"):
        text = path.read_text()
        assert "matplotlib.use" not in text, path.name
        assert not re.search(r"simplefilter\(\s*\"ignore\"", text), path.name  # targeted filters only
        assert "setLevel" not in text, path.name  # no global logger levels
        assert "doctest: +SKIP" not in text, path.name
