"""How unlike the reference a cell is: a class-conditional probabilistic PCA of the reference's expression.

A classifier's confidence cannot flag a cell type that the reference lacks: the network maps such cells
onto the nearest known type and is often sure of it. What does flag them is that their *expression* is
unlike every reference type. This module fits, on the reference cells' log-normalised panel expression,

- a PCA of the standardised genes (``n_components``),
- one Gaussian per cell type in that subspace (cell-type means, one shared covariance),
- the residual outside the subspace (probabilistic PCA's isotropic noise),

and scores a cell against a cell type by ``Mahalanobis²(subspace) + n_components x residual / mean
reference residual``. The score is turned into a **novelty percentile**: the share of that type's
reference cells that are more typical than the cell (0.5 = a typical member, 0.99 = more atypical than
99% of the reference cells of its type), taken for the type the cell resembles most, so that it measures
how unlike *every* reference type a cell is, independently of what the classifier predicts. Thresholds
act on the percentile, so one threshold means about the same false-Unknown rate for every type.

A query that does not measure every panel gene (a targeted panel, another platform) must not be scored
with its unmeasured genes read as zeros: every cell would look unlike the reference. The fit therefore
keeps a seeded sample of the reference cells' panel expression (sparse, ``REFERENCE_CELLS`` cells), and
:func:`restrict_novelty` refits the model on the genes such a query measures.

How well the percentile separates a cell type held out of the reference from known ones is tested in
``tests/model/test_model.py`` and reported with the README's measurements, not restated here.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

#: At most this many reference cells fit the novelty model (a seeded sample beyond).
MAX_FIT_CELLS = 10_000
#: Cell types with fewer reference cells take their percentiles from all reference cells pooled.
MIN_TYPE_CELLS = 30
#: Quantile levels stored per cell type to turn scores into percentiles.
N_QUANTILES = 201
#: Reference cells kept with the fit (sparse) to refit it on the genes a query measures.
REFERENCE_CELLS = 2_000


def fit_novelty(expression: np.ndarray, types: np.ndarray, n_types: int, n_components: int = 20, seed: int = 0) -> dict:
    """Fit the reference model of :mod:`~sctransformer_tools.model._novelty` on labelled reference cells.

    Parameters
    ----------
    expression
        ``(cells, genes)`` log-normalised panel expression of reference cells.
    types
        ``(cells,)`` cell-type codes in ``0 .. n_types - 1``.
    n_types
        Number of cell types (a type without cells gets the pooled percentiles and an unreachable mean).
    n_components
        PCA dimensions (capped by cells and genes).
    seed
        Seed of the randomised PCA.

    Returns
    -------
    A dict of numpy arrays (saved with the model): ``center``, ``scale``, ``components``, ``type_means``,
    ``precision``, ``noise``, ``quantiles`` (``n_types x N_QUANTILES`` sorted reference scores),
    ``n_cells`` per type, and the reference sample for :func:`restrict_novelty` (``reference_data``,
    ``reference_indices``, ``reference_indptr``, ``reference_types``: CSR arrays of at most
    ``REFERENCE_CELLS`` cells, float16 values).

    Examples
    --------
    >>> import numpy as np
    >>> from sctransformer_tools.model._novelty import fit_novelty, novelty_percentile
    >>> rng = np.random.default_rng(0)
    >>> types = np.repeat([0, 1], 200)
    >>> x = rng.normal(size=(400, 30)) + 4 * np.eye(30)[types]  # two types, one marker gene each
    >>> fit = fit_novelty(x, types, 2, n_components=5)
    >>> new = rng.normal(size=(50, 30)) + 8 * np.eye(30)[2]  # a third type, another marker
    >>> float((novelty_percentile(fit, new) > 0.95).mean())  # flagged at 0.95
    0.96
    >>> round(float((novelty_percentile(fit, x) > 0.95).mean()), 2)  # reference cells: 5% by construction
    0.05
    """
    from sklearn.decomposition import PCA

    expression = np.asarray(expression, dtype=np.float32)
    types = np.asarray(types, dtype=np.int64)
    center = expression.mean(0)
    scale = expression.std(0) + 0.1  # genes barely expressed in the reference do not blow up
    z = (expression - center) / scale
    k = int(min(n_components, z.shape[0] - 1, z.shape[1]))
    pca = PCA(k, svd_solver="randomized", random_state=seed).fit(z)
    components = pca.components_
    scores = (z @ components.T).astype(np.float64)
    residual = np.square(z - (scores @ components).astype(np.float32)).sum(1).astype(np.float64)
    counts = np.bincount(types, minlength=n_types)
    means = np.full((n_types, k), 1e6)  # unseen types sit far away
    for t in np.flatnonzero(counts):
        means[t] = scores[types == t].mean(0)
    centred = scores - means[types]
    covariance = centred.T @ centred / len(centred) + 1e-6 * np.eye(k)
    fit = {
        "center": center.astype(np.float32),
        "scale": scale.astype(np.float32),
        "components": components.astype(np.float32),
        "type_means": means,
        "precision": np.linalg.inv(covariance),
        "noise": float(residual.mean()) + 1e-12,
        "n_cells": counts,
    }
    own = _scores(fit, scores, residual)[np.arange(len(types)), types]
    levels = np.linspace(0.0, 1.0, N_QUANTILES)
    pooled = np.quantile(own, levels)
    fit["quantiles"] = np.stack(
        [np.quantile(own[types == t], levels) if counts[t] >= MIN_TYPE_CELLS else pooled for t in range(n_types)]
    )
    sample = np.arange(len(types))
    if len(sample) > REFERENCE_CELLS:
        sample = np.sort(np.random.default_rng(seed).choice(len(types), REFERENCE_CELLS, replace=False))
    kept = sparse.csr_matrix(expression[sample])
    fit |= {
        "reference_data": kept.data.astype(np.float16),
        "reference_indices": kept.indices.astype(np.int32),
        "reference_indptr": kept.indptr.astype(np.int64),
        "reference_types": types[sample],
        "n_components": int(n_components),
        "seed": int(seed),
    }
    return fit


def restrict_novelty(fit: dict, measured: np.ndarray) -> dict:
    """The novelty model refitted on the panel genes a query measures.

    Parameters
    ----------
    fit
        A fit from :func:`fit_novelty`.
    measured
        ``(panel genes,)`` boolean: the genes the query measures.

    Returns
    -------
    A fit of the same form whose ``genes`` entry (positions among the panel genes) makes
    :func:`novelty_percentile` read only those columns. It is fitted on the reference sample stored with
    ``fit``, so it rests on at most ``REFERENCE_CELLS`` reference cells.

    Examples
    --------
    >>> import numpy as np
    >>> from sctransformer_tools.model._novelty import fit_novelty, novelty_percentile, restrict_novelty
    >>> rng = np.random.default_rng(0)
    >>> def cells(n):  # two types, one marker gene each, 30 genes
    ...     types = np.repeat([0, 1], n)
    ...     return np.log1p(rng.poisson(3.0, size=(2 * n, 30)) + 10 * np.eye(30)[types]), types
    >>> x, types = cells(1000)
    >>> fit = fit_novelty(x, types, 2, n_components=5)
    >>> query, _ = cells(1000)
    >>> query[:, 10:] = 0  # a query that measures only the first 10 genes
    >>> float((novelty_percentile(fit, query) > 0.95).mean())  # the unmeasured genes read as zeros
    1.0
    >>> restricted = restrict_novelty(fit, np.arange(30) < 10)
    >>> round(float((novelty_percentile(restricted, query) > 0.95).mean()), 2)  # ~5%, as for the reference
    0.07
    """
    measured = np.asarray(measured, dtype=bool)
    if "reference_data" not in fit:
        raise ValueError(
            "This novelty model keeps no reference cells (fitted before queries with missing genes were "
            "supported): retrain the model to score such queries."
        )
    if measured.shape != fit["center"].shape:
        raise ValueError(f"measured has {measured.shape[0]} entries for {fit['center'].shape[0]} panel genes.")
    if measured.sum() < 2:
        raise ValueError(f"The query measures {int(measured.sum())} panel genes: too few to score novelty.")
    reference = sparse.csr_matrix(
        (fit["reference_data"].astype(np.float32), fit["reference_indices"], fit["reference_indptr"]),
        shape=(len(fit["reference_types"]), len(measured)),
    )
    restricted = fit_novelty(
        reference[:, measured].toarray(),
        fit["reference_types"],
        len(fit["n_cells"]),
        n_components=fit.get("n_components", 20),
        seed=fit.get("seed", 0),
    )
    restricted["genes"] = np.flatnonzero(measured)
    return restricted


def _scores(fit: dict, projected: np.ndarray, residual: np.ndarray) -> np.ndarray:
    """``(cells, types)`` scores from subspace coordinates and residuals."""
    diff = projected[:, None, :] - fit["type_means"][None]
    mahalanobis = np.einsum("nkd,de,nke->nk", diff, fit["precision"], diff)
    return mahalanobis + (len(fit["precision"]) * residual / fit["noise"])[:, None]


def novelty_scores(fit: dict, expression: np.ndarray) -> np.ndarray:
    """``(cells, types)`` novelty scores of log-normalised panel ``expression`` against every type."""
    expression = np.asarray(expression, dtype=np.float32)
    if "genes" in fit:  # a fit restricted to the genes a query measures
        expression = expression[:, fit["genes"]]
    z = (expression - fit["center"]) / fit["scale"]
    projected = z @ fit["components"].T
    residual = np.square(z - projected @ fit["components"]).sum(1)
    return _scores(fit, projected.astype(np.float64), residual.astype(np.float64))


def novelty_percentile(fit: dict, expression: np.ndarray) -> np.ndarray:
    """Novelty percentile of each cell: against the reference type it resembles most, the share of that
    type's reference cells that are more typical than it (``(cells,)`` in ``[0, 1]``).
    """
    scores = novelty_scores(fit, expression)
    levels = np.linspace(0.0, 1.0, N_QUANTILES)
    per_type = np.stack([np.interp(scores[:, t], fit["quantiles"][t], levels) for t in range(scores.shape[1])], 1)
    return per_type.min(1)
