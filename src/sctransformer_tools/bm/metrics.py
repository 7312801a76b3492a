"""Label metrics of :func:`~sctransformer_tools.bm.run`: a registry of scikit-learn scores plus ``rare_f1``.

Every metric is a function ``(truth, pred, train_labels) -> float`` of the scored test cells' true and predicted
labels and the training cells' labels (which define the rare types). :func:`register_metric` adds one.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

#: A metric: ``(truth, pred, train_labels) -> float``.
Metric = Callable[[np.ndarray, np.ndarray, np.ndarray], float]


def rare_classes(train_labels: Sequence[str], present: Sequence[str], fraction: float = 1 / 3) -> list[str]:
    """The rarest cell types: the ``ceil(fraction * n)`` scorable types with the fewest training cells.

    Parameters
    ----------
    train_labels
        Labels of the training cells (rarity is what the model saw).
    present
        Types that can be scored (present in the test labels); others are skipped.
    fraction
        Share of the scorable types called rare.

    Returns
    -------
    Rare types, rarest first.

    Examples
    --------
    >>> from sctransformer_tools.bm.metrics import rare_classes
    >>> rare_classes(["a"] * 5 + ["b"] * 2 + ["c"], present=["a", "b", "c"])
    ['c']
    """
    counts = pd.Series(np.asarray(train_labels, dtype=str)).value_counts()
    present = [str(p) for p in present]
    counts = counts[counts.index.isin(present)].sort_values(kind="stable")
    n = max(1, math.ceil(fraction * len(counts)))
    return list(counts.index[:n])


def accuracy(truth: np.ndarray, pred: np.ndarray, train_labels: np.ndarray) -> float:
    """Share of cells whose predicted type is the true one (:func:`sklearn.metrics.accuracy_score`).

    Examples
    --------
    >>> from sctransformer_tools.bm.metrics import accuracy
    >>> accuracy(["a", "b", "b", "b"], ["a", "b", "a", "b"], ["a", "b"])
    0.75
    """
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(truth, pred))


def macro_f1(truth: np.ndarray, pred: np.ndarray, train_labels: np.ndarray) -> float:
    """Mean F1 over the types present in ``truth`` (:func:`sklearn.metrics.f1_score`, ``average="macro"``).

    A predicted type absent from ``truth`` counts as an error for the true type, not as a class of its own.

    Examples
    --------
    >>> from sctransformer_tools.bm.metrics import macro_f1
    >>> round(macro_f1(["a", "a"], ["a", "z"], ["a", "z"]), 4)  # F1 of "a" only: 2/3
    0.6667
    """
    from sklearn.metrics import f1_score

    labels = np.unique(np.asarray(truth, dtype=str))
    return float(f1_score(truth, pred, labels=labels, average="macro", zero_division=0))


def balanced_accuracy(truth: np.ndarray, pred: np.ndarray, train_labels: np.ndarray) -> float:
    """Mean recall over the types present in ``truth`` (:func:`sklearn.metrics.balanced_accuracy_score`).

    Examples
    --------
    >>> from sctransformer_tools.bm.metrics import balanced_accuracy
    >>> balanced_accuracy(["a", "a", "b", "b"], ["a", "b", "b", "b"], ["a", "b"])
    0.75
    """
    from sklearn.metrics import balanced_accuracy_score

    with warnings.catch_warnings():  # predicted types absent from the truth: errors of the true types, as intended
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true", category=UserWarning)
        return float(balanced_accuracy_score(truth, pred))


def rare_f1(truth: np.ndarray, pred: np.ndarray, train_labels: np.ndarray) -> float:
    """Mean F1 of the rare types: the third of the scorable types with the fewest training cells (:func:`rare_classes`).

    Returns NaN when no rare type occurs in ``truth``.

    Examples
    --------
    >>> from sctransformer_tools.bm.metrics import rare_f1
    >>> train = ["a"] * 10 + ["b"] * 10 + ["c"] * 2
    >>> rare_f1(["a", "b", "c", "c"], ["a", "b", "c", "a"], train)  # rare: c (recall 1/2, precision 1)
    0.6666666666666666
    """
    from sklearn.metrics import f1_score

    truth = np.asarray(truth, dtype=str)
    rare = rare_classes(train_labels, np.unique(truth))
    if not rare:
        return float("nan")
    return float(np.mean(f1_score(truth, pred, labels=rare, average=None, zero_division=0)))


#: Name -> metric ``(truth, pred, train_labels) -> float``; :func:`~sctransformer_tools.bm.run` reads it.
METRICS: dict[str, Metric] = {
    "accuracy": accuracy,
    "macro_f1": macro_f1,
    "balanced_accuracy": balanced_accuracy,
    "rare_f1": rare_f1,
}


def register_metric(name: str, fn: Metric, *, overwrite: bool = False) -> None:
    """Add a metric to :data:`METRICS`, so that ``run(..., metrics=[..., name])`` reports it.

    Parameters
    ----------
    name
        Column name of the metric in :func:`~sctransformer_tools.bm.run`'s results.
    fn
        ``(truth, pred, train_labels) -> float``: true and predicted labels of the scored test cells (arrays of
        strings) and the labels of the training cells.
    overwrite
        Replace a metric of the same name.

    Examples
    --------
    >>> import numpy as np
    >>> import sctransformer_tools as sct
    >>> def b_recall(truth, pred, train_labels):
    ...     return float(np.mean(pred[truth == "B"] == "B"))
    >>> sct.bm.register_metric("b_recall", b_recall)
    >>> sct.bm.METRICS["b_recall"](np.array(["B", "B", "T"]), np.array(["B", "T", "T"]), np.array(["B", "T"]))
    0.5
    >>> del sct.bm.METRICS["b_recall"]
    """
    if not callable(fn):
        raise TypeError(f"A metric must be callable (truth, pred, train_labels) -> float, got {type(fn).__name__}.")
    if name in METRICS and not overwrite:
        raise ValueError(f"A metric called {name!r} exists already: pass overwrite=True to replace it.")
    METRICS[name] = fn


def score(truth: np.ndarray, pred: np.ndarray, train_labels: np.ndarray, metrics: Sequence[str]) -> dict[str, float]:
    """Every metric of ``metrics`` (names in :data:`METRICS`) on the same cells.

    Examples
    --------
    >>> from sctransformer_tools.bm.metrics import score
    >>> score(["a", "b"], ["a", "a"], ["a", "b"], ["accuracy", "balanced_accuracy"])
    {'accuracy': 0.5, 'balanced_accuracy': 0.5}
    """
    truth = np.asarray(truth, dtype=str)
    pred = np.asarray(pred, dtype=str)
    train_labels = np.asarray(train_labels, dtype=str)
    if truth.shape != pred.shape or truth.size == 0:
        raise ValueError(f"truth and pred must be non-empty and of equal length, got {truth.size} and {pred.size}.")
    return {name: float(METRICS[name](truth, pred, train_labels)) for name in metrics}
