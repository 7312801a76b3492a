"""Novelty scores compared by ``benchmarks/novelty.py``: the package's rank profile and the candidates it beat.

Every candidate is a function ``(reference expression, reference type codes, n_types, seed) -> scorer``, where
the scorer maps a query's log-normalised panel expression (and its predicted type codes, for the candidates
that use them) to a novelty percentile per cell. The package's own method
(:mod:`sctransformer_tools.model._novelty`) is scored through the model's fit by the benchmark itself; the
others live here:

- ``ppca (before)``: the class-conditional probabilistic PCA the package used before (PCA of the standardised
  genes, Mahalanobis distance in the subspace plus a residual term; percentiles from the reference cells'
  in-sample scores, the lowest percentile over the types), copied unchanged;
- ``ppca, subspace only``: the same without the residual term;
- ``ppca, cross-fitted``: the residual kept, the reference scores cross-fitted and the percentile taken for the
  nearest type (what the package's new calibration does, on the old representation);
- ``ppca + query re-centring``: the cross-fitted ppca percentile, lowered to the cell's percentile among the
  query cells nearest the same type (a cell is novel only if it is atypical against the reference *and* against
  the query's cells of its type);
- ``spearman to nearest centroid``: one minus the Spearman correlation with the nearest type centroid on the same
  genes as the rank profile (cross-fitted percentiles);
- ``rank profile + query shift``: the package's rank profile after removing the query's common shift of the
  profile (median offset of its cells from their nearest type's mean).

A depth-matched query (counts thinned to the reference's median depth before normalisation) is scored by the
cross-fitted ppca in the benchmark itself (``ppca, depth-matched query``), since it needs the counts.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.decomposition import PCA

from sctransformer_tools.model import _novelty as nv

LEVELS = np.linspace(0.0, 1.0, nv.N_QUANTILES)
Scorer = Callable[..., np.ndarray]


# ------------------------------------------------------------------ ppca (the package's method before)
def _ppca_fit(x: np.ndarray, y: np.ndarray, n_types: int, k: int = 20, seed: int = 0) -> dict:
    center = x.mean(0)
    scale = x.std(0) + 0.1
    z = (x - center) / scale
    k = int(min(k, z.shape[0] - 1, z.shape[1]))
    components = PCA(k, svd_solver="randomized", random_state=seed).fit(z).components_
    scores = (z @ components.T).astype(np.float64)
    residual = np.square(z - (scores @ components).astype(np.float32)).sum(1).astype(np.float64)
    counts = np.bincount(y, minlength=n_types)
    means = np.full((n_types, k), 1e6)
    for t in np.flatnonzero(counts):
        means[t] = scores[y == t].mean(0)
    centred = scores - means[y]
    covariance = centred.T @ centred / len(centred) + 1e-6 * np.eye(k)
    return {
        "center": center,
        "scale": scale,
        "components": components,
        "type_means": means,
        "precision": np.linalg.inv(covariance),
        "noise": float(residual.mean()) + 1e-12,
    }


def _ppca_scores(fit: dict, x: np.ndarray, residual: bool = True) -> np.ndarray:
    z = (x - fit["center"]) / fit["scale"]
    projected = (z @ fit["components"].T).astype(np.float64)
    diff = projected[:, None, :] - fit["type_means"][None]
    scores = np.einsum("nkd,de,nke->nk", diff, fit["precision"], diff)
    if residual:
        rest = np.square(z - projected @ fit["components"]).sum(1)
        scores = scores + (len(fit["precision"]) * rest / fit["noise"])[:, None]
    return scores


def _quantiles(own: np.ndarray, y: np.ndarray, n_types: int) -> np.ndarray:
    valid = np.isfinite(own)
    pooled = np.quantile(own[valid], LEVELS)
    rows = []
    for t in range(n_types):
        mine = valid & (y == t)
        rows.append(np.quantile(own[mine], LEVELS) if mine.sum() >= nv.MIN_TYPE_CELLS else pooled)
    return np.stack(rows)


def _min_percentile(scores: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """The package's percentile before: the lowest over the types."""
    return np.stack([np.interp(scores[:, t], quantiles[t], LEVELS) for t in range(scores.shape[1])], 1).min(1)


def nearest_percentile(scores: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """Percentile against the nearest type (lowest score), as the package's percentile now."""
    nearest = scores.argmin(1)
    out = np.zeros(len(scores))
    for t in np.unique(nearest):
        cells = nearest == t
        out[cells] = np.interp(scores[cells, t], quantiles[t], LEVELS)
    return out


def _folds(y: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    order = np.argsort(y, kind="stable")
    folds = np.empty(len(y), dtype=np.int64)
    folds[order] = np.arange(len(y)) % n_folds
    return np.random.default_rng(seed).permutation(n_folds)[folds]


def _cross_fitted(fit_fn, score_fn, x, y, n_types, seed, n_folds: int = nv.N_FOLDS) -> np.ndarray:
    own = np.full(len(y), np.nan)
    folds = _folds(y, n_folds, seed)
    for fold in range(n_folds):
        held, rest = folds == fold, folds != fold
        present = np.bincount(y[rest], minlength=n_types) > 0
        scorable = held & present[y]
        if scorable.any():
            part = fit_fn(x[rest], y[rest])
            own[scorable] = score_fn(part, x[scorable])[np.arange(scorable.sum()), y[scorable]]
    return own


_MEMO: dict = {}


def _ppca_parts(x: np.ndarray, y: np.ndarray, n_types: int, seed: int, cross_fitted: bool) -> tuple:
    """The ppca fit (and its cross-fitted reference scores), shared by the ppca candidates of one reference."""
    key = (id(x), id(y), n_types, seed)
    if _MEMO.get("key") != key:
        _MEMO.clear()
        _MEMO.update(key=key, arrays=(x, y), fit=_ppca_fit(x, y, n_types, seed=seed))  # arrays: keep their ids
    if cross_fitted and "own" not in _MEMO:
        fit_fn = lambda a, b: _ppca_fit(a, b, n_types, seed=seed)  # noqa: E731
        _MEMO["own"] = _cross_fitted(fit_fn, _ppca_scores, x, y, n_types, seed)
    return _MEMO["fit"], _MEMO.get("own")


def ppca_before(x: np.ndarray, y: np.ndarray, n_types: int, seed: int = 0, residual: bool = True) -> Scorer:
    """The package's novelty before this benchmark (``residual=False``: the subspace term only)."""
    fit, _ = _ppca_parts(x, y, n_types, seed, cross_fitted=False)
    own = _ppca_scores(fit, x, residual)[np.arange(len(y)), y]
    quantiles = _quantiles(own, y, n_types)
    return lambda q, predicted=None: _min_percentile(_ppca_scores(fit, q, residual), quantiles)


def ppca_subspace(x, y, n_types, seed=0) -> Scorer:
    """``ppca (before)`` without its residual term."""
    return ppca_before(x, y, n_types, seed, residual=False)


def ppca_cross_fitted(x, y, n_types, seed=0) -> Scorer:
    """The ppca scores with cross-fitted reference quantiles and the nearest type's percentile."""
    fit, own = _ppca_parts(x, y, n_types, seed, cross_fitted=True)
    quantiles = _quantiles(own, y, n_types)
    return lambda q, predicted=None: nearest_percentile(_ppca_scores(fit, q), quantiles)


def within_query_percentile(scores: np.ndarray) -> np.ndarray:
    """Each cell's percentile among the query cells nearest the same type (by its score against that type)."""
    nearest = scores.argmin(1)
    out = np.zeros(len(scores))
    for t in np.unique(nearest):
        cells = np.flatnonzero(nearest == t)
        own = scores[cells, t]
        out[cells] = (np.argsort(np.argsort(own, kind="stable"), kind="stable") + 0.5) / len(cells)
    return out


def ppca_query_recentred(x, y, n_types, seed=0) -> Scorer:
    """Cross-fitted ppca percentile, lowered to the cell's percentile among the query's cells of its type."""
    fit, own = _ppca_parts(x, y, n_types, seed, cross_fitted=True)
    quantiles = _quantiles(own, y, n_types)

    def score(q, predicted=None):
        scores = _ppca_scores(fit, q)
        return np.minimum(nearest_percentile(scores, quantiles), within_query_percentile(scores))

    return score


# ------------------------------------------------------------------ rank-based candidates
def _spearman_fit(x, y, n_types):
    genes = nv._select_genes(x, y, n_types, nv.N_GENES)
    ranks = nv.within_cell_ranks(x[:, genes])
    centroids = np.zeros((n_types, len(genes)), dtype=np.float32)
    np.add.at(centroids, y, ranks)
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    absent = np.bincount(y, minlength=n_types) == 0
    return {"genes": genes, "centroids": centroids, "absent": absent}


def _spearman_scores(fit, q):
    scores = 1.0 - nv.within_cell_ranks(q[:, fit["genes"]]) @ fit["centroids"].T
    scores[:, fit["absent"]] = np.inf
    return scores


def spearman_centroid(x, y, n_types, seed=0) -> Scorer:
    """One minus the Spearman correlation with the nearest type centroid (cross-fitted percentiles)."""
    fit = _spearman_fit(x, y, n_types)
    own = _cross_fitted(lambda a, b: _spearman_fit(a, b, n_types), _spearman_scores, x, y, n_types, seed)
    quantiles = _quantiles(own, y, n_types)
    return lambda q, predicted=None: nearest_percentile(_spearman_scores(fit, q), quantiles)


def rank_profile_query_shift(x, y, n_types, seed=0) -> Scorer:
    """The package's rank profile after removing the query's median offset from its cells' nearest type means."""
    fit = nv.fit_novelty(x, y, n_types, seed=seed)

    def score(q, predicted=None):
        profiles = (nv.within_cell_ranks(q[:, fit["genes"]]) @ fit["centroids"].T).astype(np.float64)
        shift = np.zeros(profiles.shape[1])
        for _ in range(2):
            diff = (profiles - shift)[:, None, :] - fit["type_means"][None]
            nearest = np.einsum("nkd,de,nke->nk", diff, fit["precision"], diff).argmin(1)
            shift = np.median(profiles - fit["type_means"][nearest], 0)
        diff = (profiles - shift)[:, None, :] - fit["type_means"][None]
        return nearest_percentile(np.einsum("nkd,de,nke->nk", diff, fit["precision"], diff), fit["quantiles"])

    return score


#: Candidates scored from the reference's expression, in report order (the package's own method and the
#: depth-matched query are added by the benchmark).
CANDIDATES: dict[str, Callable[..., Scorer]] = {
    "ppca (before)": ppca_before,
    "ppca, subspace only": ppca_subspace,
    "ppca, cross-fitted": ppca_cross_fitted,
    "ppca + query re-centring": ppca_query_recentred,
    "spearman to nearest centroid": spearman_centroid,
    "rank profile + query shift": rank_profile_query_shift,
}
