"""Scores of one run: labels (accuracy, F1), embeddings (silhouette, Leiden ARI/NMI) and attention (AUROC)."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy as np
import pandas as pd

#: Leiden resolutions tried by :func:`embedding_metrics`; the one with the best NMI is kept (as scib does).
LEIDEN_RESOLUTIONS = (0.25, 0.5, 1.0, 2.0)


def _bench_import(name: str):
    """Import an optional benchmark dependency, with an install hint."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise ImportError(
            f"{name} is needed for this benchmark step: `pip install 'sctransformer-tools[bench]'`."
        ) from err


class _IgraphRandom:
    """A seeded random source for igraph (its Leiden draws from the generator it is given)."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def random(self) -> float:
        return float(self.rng.random())

    def randint(self, a: int, b: int) -> int:
        return int(self.rng.integers(a, b + 1))

    def gauss(self, mu: float, sigma: float) -> float:
        return float(self.rng.normal(mu, sigma))


def rare_classes(train_labels: Sequence[str], present: Sequence[str], fraction: float = 1 / 3) -> list[str]:
    """The rarest cell types: the ``ceil(fraction * n)`` types with the fewest training cells.

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
    >>> from sctransformer_tools.bm import rare_classes
    >>> rare_classes(["a"] * 5 + ["b"] * 2 + ["c"], present=["a", "b", "c"])
    ['c']
    """
    counts = pd.Series(np.asarray(train_labels, dtype=str)).value_counts()
    present = [str(p) for p in present]
    counts = counts[counts.index.isin(present)].sort_values(kind="stable")
    n = max(1, math.ceil(fraction * len(counts)))
    return list(counts.index[:n])


def classification_metrics(
    y_true: Sequence[str], y_pred: Sequence[str], rare: Sequence[str] | None = None
) -> dict[str, float | None]:
    """Accuracy, macro-F1, balanced accuracy and the mean F1 of ``rare`` types.

    Macro-F1 and balanced accuracy average over the types present in ``y_true``; a prediction of a
    type absent from ``y_true`` still counts as an error for the true type.

    Parameters
    ----------
    y_true, y_pred
        True and predicted labels of the same cells.
    rare
        Types whose F1 is averaged into ``rare_f1`` (see :func:`rare_classes`); ``None`` for no ``rare_f1``.

    Returns
    -------
    ``accuracy``, ``macro_f1``, ``balanced_accuracy``, ``rare_f1`` (``None`` without ``rare``).

    Examples
    --------
    >>> from sctransformer_tools.bm import classification_metrics
    >>> classification_metrics(["a", "b", "b"], ["a", "b", "b"], rare=["a"])
    {'accuracy': 1.0, 'macro_f1': 1.0, 'balanced_accuracy': 1.0, 'rare_f1': 1.0}
    """
    from sklearn.metrics import accuracy_score, f1_score, recall_score

    y_true = np.asarray(y_true, dtype=str)
    y_pred = np.asarray(y_pred, dtype=str)
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError(
            f"y_true and y_pred must be non-empty and of equal length, got {y_true.size} and {y_pred.size}."
        )
    labels = np.unique(y_true)
    per_class = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    out: dict[str, float | None] = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(per_class.mean()),
        "balanced_accuracy": float(recall_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "rare_f1": None,
    }
    if rare is not None:
        f1 = dict(zip(labels, per_class, strict=True))
        scored = [f1[r] for r in rare if r in f1]
        out["rare_f1"] = float(np.mean(scored)) if scored else None
    return out


def embedding_metrics(
    embedding: np.ndarray,
    labels: Sequence[str],
    *,
    seed: int = 0,
    n_neighbors: int = 15,
    resolutions: Sequence[float] = LEIDEN_RESOLUTIONS,
    max_cells: int = 10_000,
) -> dict[str, float | None]:
    """How well an embedding separates cell types: silhouette, and ARI/NMI of Leiden clusters.

    The silhouette is sklearn's (euclidean, in [-1, 1]) of the true labels. Leiden clusters (igraph,
    modularity) are computed on the symmetrised, unweighted ``n_neighbors``-nearest-neighbour graph of the
    embedding (scikit-learn; no numba compilation) at each of ``resolutions``; the resolution with the
    best NMI against the labels is kept and its ARI reported with it (scib's convention).

    Parameters
    ----------
    embedding
        ``(cells, dims)`` array.
    labels
        True labels of the cells.
    seed
        Seed of the cell sample (above ``max_cells``) and of Leiden.
    n_neighbors
        Neighbours of the graph.
    resolutions
        Leiden resolutions tried.
    max_cells
        Larger inputs are scored on a seeded random sample of this many cells.

    Returns
    -------
    ``silhouette``, ``ari``, ``nmi``, ``leiden_resolution``; ``None`` values when fewer than two types or
    too few cells.

    Examples
    --------
    >>> import numpy as np
    >>> from sctransformer_tools.bm import embedding_metrics
    >>> rng = np.random.default_rng(0)
    >>> emb = np.concatenate([rng.normal(0, 0.1, (40, 5)), rng.normal(5, 0.1, (40, 5))])
    >>> scores = embedding_metrics(emb, ["a"] * 40 + ["b"] * 40)
    >>> round(scores["silhouette"], 2), scores["ari"], scores["nmi"]
    (0.97, 1.0, 1.0)
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score
    from sklearn.neighbors import kneighbors_graph

    embedding = np.asarray(embedding, dtype=np.float32)
    labels = np.asarray(labels, dtype=str)
    empty = {"silhouette": None, "ari": None, "nmi": None, "leiden_resolution": None}
    if len(labels) != len(embedding):
        raise ValueError(f"{len(embedding)} embedded cells but {len(labels)} labels.")
    if len(labels) > max_cells:
        keep = np.sort(np.random.default_rng(seed).choice(len(labels), max_cells, replace=False))
        embedding, labels = embedding[keep], labels[keep]
    if len(np.unique(labels)) < 2 or len(labels) <= n_neighbors:
        return empty
    out = dict(empty)
    out["silhouette"] = float(silhouette_score(embedding, labels))
    igraph = _bench_import("igraph")
    knn = kneighbors_graph(embedding, n_neighbors, mode="connectivity", include_self=False)
    knn = knn.maximum(knn.T).tocoo()
    upper = knn.row < knn.col
    graph = igraph.Graph(n=len(labels), edges=np.stack([knn.row[upper], knn.col[upper]], 1).tolist())
    best = None
    igraph.set_random_number_generator(_IgraphRandom(np.random.default_rng(seed)))  # reproducible Leiden
    try:
        for res in resolutions:
            partition = graph.community_leiden(objective_function="modularity", resolution=res, n_iterations=2)
            clusters = np.asarray(partition.membership)
            nmi = normalized_mutual_info_score(labels, clusters)
            if best is None or nmi > best[0]:
                best = (nmi, adjusted_rand_score(labels, clusters), res)
    finally:
        igraph.set_random_number_generator(random)
    out["nmi"], out["ari"], out["leiden_resolution"] = float(best[0]), float(best[1]), float(best[2])
    return out


def auroc(positive: Sequence[float], negative: Sequence[float]) -> float | None:
    """Area under the ROC curve of ``positive`` scores against ``negative`` ones (ties count half).

    Parameters
    ----------
    positive, negative
        Scores of the two sets (e.g. attention on regulon edges and on non-edges); NaNs are dropped.

    Returns
    -------
    AUROC in [0, 1]; ``None`` when either set is empty.

    Examples
    --------
    >>> from sctransformer_tools.bm import auroc
    >>> auroc([0.9, 0.8], [0.1, 0.2, 0.3]), auroc([0.5], [0.5])
    (1.0, 0.5)
    """
    from scipy.stats import rankdata

    pos = np.asarray(positive, dtype=float)
    neg = np.asarray(negative, dtype=float)
    pos, neg = pos[~np.isnan(pos)], neg[~np.isnan(neg)]
    if len(pos) == 0 or len(neg) == 0:
        return None
    ranks = rankdata(np.concatenate([pos, neg]))
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))
