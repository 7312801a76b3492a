"""sct.bm.metrics on planted examples and against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest

from sctransformer_tools import bm
from sctransformer_tools.bm.metrics import rare_classes


def _scores(truth, pred, train_labels) -> dict:
    return bm.metrics.score(truth, pred, train_labels, ["accuracy", "macro_f1", "balanced_accuracy", "rare_f1"])


def test_metrics_planted():
    # a and c are the rare types of these training labels (the third with fewest cells: 2 of 4 types -> ceil(4/3))
    train = ["a"] * 2 + ["b"] * 10 + ["c"] * 3 + ["d"] * 10
    perfect = _scores(["a", "b", "b", "c"], ["a", "b", "b", "c"], train)
    assert perfect == {"accuracy": 1.0, "macro_f1": 1.0, "balanced_accuracy": 1.0, "rare_f1": 1.0}
    # a: recall 1/2, precision 1 -> F1 2/3; b: recall 1, precision 2/3 -> F1 0.8
    scores = _scores(["a", "a", "b", "b"], ["a", "b", "b", "b"], ["a"] * 2 + ["b"] * 10)
    assert scores["accuracy"] == pytest.approx(0.75)
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert scores["balanced_accuracy"] == pytest.approx(0.75)
    assert scores["rare_f1"] == pytest.approx(2 / 3)
    # a type predicted but absent from the truth does not enter the macro average
    assert bm.METRICS["macro_f1"](np.array(["a", "a"]), np.array(["a", "z"]), np.array(["a", "z"])) == pytest.approx(
        2 / 3
    )
    assert bm.METRICS["balanced_accuracy"](np.array(["a", "a"]), np.array(["a", "z"]), np.array(["a"])) == 0.5
    # no rare type can be scored: NaN (None in the study's records)
    assert np.isnan(bm.METRICS["rare_f1"](np.array(["a"]), np.array(["a"]), np.array(["b"])))
    with pytest.raises(ValueError, match="equal length"):
        bm.metrics.score(["a"], ["a", "b"], ["a"], ["accuracy"])


def test_metrics_match_scikit_learn_on_random_labels():
    from sklearn.metrics import accuracy_score, f1_score, recall_score

    rng = np.random.default_rng(0)
    truth = rng.choice(list("abcde"), 300)
    pred = np.where(rng.random(300) < 0.7, truth, rng.choice(list("abcdef"), 300))
    scores = _scores(truth, pred, truth)
    labels = np.unique(truth)
    assert scores["accuracy"] == accuracy_score(truth, pred)
    assert scores["macro_f1"] == pytest.approx(f1_score(truth, pred, labels=labels, average=None).mean(), abs=1e-15)
    assert scores["balanced_accuracy"] == pytest.approx(
        recall_score(truth, pred, labels=labels, average="macro"), abs=1e-15
    )
    rare = rare_classes(truth, labels)
    per_class = dict(zip(labels, f1_score(truth, pred, labels=labels, average=None), strict=True))
    assert scores["rare_f1"] == pytest.approx(np.mean([per_class[r] for r in rare]))


def test_rare_classes_by_training_count():
    train = ["big"] * 50 + ["mid"] * 20 + ["small"] * 5 + ["tiny"] * 2
    assert rare_classes(train, present=["big", "mid", "small", "tiny"]) == ["tiny", "small"]
    assert rare_classes(train, present=["big", "mid", "small"]) == ["small"]  # tiny not scorable


def test_register_metric():
    def n_b(truth, pred, train_labels):
        return float((pred == "b").sum())

    bm.register_metric("n_b", n_b)
    try:
        assert bm.metrics.score(["a", "b"], ["b", "b"], ["a", "b"], ["n_b"]) == {"n_b": 2.0}
        with pytest.raises(ValueError, match="exists already"):
            bm.register_metric("n_b", n_b)
        bm.register_metric("n_b", lambda t, p, r: 0.0, overwrite=True)
        assert bm.METRICS["n_b"]([], [], []) == 0.0
        with pytest.raises(TypeError, match="callable"):
            bm.register_metric("bad", 1.0)
    finally:
        bm.METRICS.pop("n_b", None)
