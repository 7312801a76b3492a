"""How unlike the reference a cell is: its rank-correlation profile against the reference's cell types.

A classifier's confidence cannot flag a cell type that the reference lacks: the network maps such cells
onto the nearest known type and is often sure of it. What does flag them is that their *expression* is
unlike every reference type. The measure must not flag the reference's own types in a new batch,
though: another chemistry detects more genes per cell and shifts many genes, and a model of log-expression
(the class-conditional probabilistic PCA this package used before 0.3.0) reads that as novelty (a pbmc3k model
called 99% of a 10x v3 set's CD14 monocytes novel at 0.95; ``benchmarks/novelty.py`` measures it). This module
scores a cell by how its *within-cell ranks* correlate with the reference's cell types, which depth and
chemistry move far less:

1. the ``n_genes`` panel genes that differ most between the reference's types (one-way ANOVA F on the
   log-normalised expression);
2. each cell's ranks of those genes (ties averaged), centred and scaled to unit length, so that a dot product
   is a Spearman correlation;
3. its **profile**: the correlations with every type's centroid (the mean rank vector of its reference cells);
4. one Gaussian per type on the profiles (type means, a shared covariance): the squared Mahalanobis distance to
   a type is the cell's score against it.

The score is turned into a **novelty percentile** against the type the cell is nearest to (lowest score): the
share of that type's reference cells that are more typical than the cell (0.5 = a typical member, 0.99 = more
atypical than 99% of the reference cells of its type). The reference scores behind the percentiles are
*cross-fitted* (each reference cell scored by a model fitted without it, ``n_folds`` folds), so that a new
cell of a known type from the same batch exceeds a threshold of 0.95 about 5% of the time, as the percentile
says; scores of the cells a model was fitted on are too typical and would make it flag fewer.

A query that does not measure every panel gene (a targeted panel, another platform) must not be scored
with its unmeasured genes read as zeros. The fit therefore keeps a seeded sample of the reference cells'
panel expression (sparse, ``REFERENCE_CELLS`` cells), and :func:`restrict_novelty` refits the model on the
genes such a query measures; :func:`upgrade_novelty` refits a fit of an earlier version from that sample.

What the percentile flags on held-out cell types and on PBMCs of other chemistries is measured by
``benchmarks/novelty.py`` (report: ``docs/results/novelty.md``), not restated here.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import sparse
from scipy.stats import rankdata

logger = logging.getLogger(__name__)

#: At most this many reference cells fit the novelty model (a seeded sample beyond).
MAX_FIT_CELLS = 10_000
#: Cell types with fewer reference cells take their percentiles from all reference cells pooled.
MIN_TYPE_CELLS = 30
#: Quantile levels stored per cell type to turn scores into percentiles.
N_QUANTILES = 201
#: Reference cells kept with the fit (sparse) to refit it on the genes a query measures.
REFERENCE_CELLS = 2_000
#: Panel genes the rank profile reads (those that differ most between the reference's types).
N_GENES = 500
#: Folds of the cross-fitted reference scores behind the percentiles.
N_FOLDS = 5
#: The ``method`` entry of a fit from :func:`fit_novelty` (earlier fits have none).
METHOD = "rank_profile"
#: Ridge added to the profile covariance, relative to its mean variance.
RIDGE = 1e-3


def fit_novelty(
    expression: np.ndarray,
    types: np.ndarray,
    n_types: int,
    n_genes: int = N_GENES,
    n_folds: int = N_FOLDS,
    seed: int = 0,
) -> dict:
    """Fit the reference model of :mod:`~sctransformer_tools.model._novelty` on labelled reference cells.

    Parameters
    ----------
    expression
        ``(cells, genes)`` log-normalised panel expression of reference cells.
    types
        ``(cells,)`` cell-type codes in ``0 .. n_types - 1``.
    n_types
        Number of cell types (a type without cells is never the nearest type).
    n_genes
        Genes the rank profile reads: those with the largest ANOVA F between the types (capped by the genes).
    n_folds
        Folds of the cross-fitted reference scores that the percentiles rest on.
    seed
        Seed of the folds and of the reference sample kept for :func:`restrict_novelty`.

    Returns
    -------
    A dict of numpy arrays and scalars (saved with the model): ``method`` (``"rank_profile"``), ``genes``
    (positions of the genes read, among the columns of ``expression``), ``centroids`` (``n_types x genes``,
    unit-length mean rank vectors), ``type_means`` (``n_types x n_types`` mean profile per type),
    ``precision`` (inverse shared covariance of the profiles), ``quantiles`` (``n_types x N_QUANTILES`` sorted
    cross-fitted reference scores), ``n_cells`` per type, and the reference sample for
    :func:`restrict_novelty` (``reference_data``, ``reference_indices``, ``reference_indptr``,
    ``reference_types``: CSR arrays of at most ``REFERENCE_CELLS`` cells, float16 values).

    Examples
    --------
    >>> import numpy as np
    >>> from sctransformer_tools.model._novelty import fit_novelty, novelty_percentile
    >>> rng = np.random.default_rng(0)
    >>> def cells(n, block):  # counts of 60 genes; each type expresses its own block of 10 marker genes
    ...     markers = rng.poisson(8.0, size=(n, 60)) * (np.arange(60) // 10 == block)
    ...     return np.log1p(rng.poisson(1.0, size=(n, 60)) + markers)
    >>> x = np.concatenate([cells(300, 0), cells(300, 1), cells(300, 2)])
    >>> types = np.repeat([0, 1, 2], 300)
    >>> fit = fit_novelty(x, types, 3, n_genes=40)
    >>> new = np.concatenate([cells(300, 0), cells(300, 1), cells(300, 2)])  # the same types, new cells
    >>> round(float((novelty_percentile(fit, new) > 0.95).mean()), 2)  # about 5%, as the percentile says
    0.07
    >>> float((novelty_percentile(fit, cells(100, 3)) > 0.95).mean())  # a fourth type, another block
    1.0
    """
    expression = np.asarray(expression, dtype=np.float32)
    types = np.asarray(types, dtype=np.int64)
    counts = np.bincount(types, minlength=n_types)
    fit = {"method": METHOD} | _fit_profile(expression, types, n_types, n_genes)
    # cross-fitted reference scores: every cell scored by a model fitted on the other folds (stratified by type)
    order = np.argsort(types, kind="stable")
    folds = np.empty(len(types), dtype=np.int64)
    folds[order] = np.arange(len(types)) % max(n_folds, 2)
    folds = np.random.default_rng(seed).permutation(max(n_folds, 2))[folds]
    own = np.full(len(types), np.nan)
    for fold in np.unique(folds):
        held, rest = folds == fold, folds != fold
        present = np.bincount(types[rest], minlength=n_types) > 0
        scorable = held & present[types]  # a type absent from the other folds has no score to give
        if scorable.any():
            part = _fit_profile(expression[rest], types[rest], n_types, n_genes)
            own[scorable] = _profile_scores(part, expression[scorable])[np.arange(scorable.sum()), types[scorable]]
    valid = np.isfinite(own)
    if not valid.any():  # a single cell per type: the in-sample scores are all there is
        own, valid = _profile_scores(fit, expression)[np.arange(len(types)), types], np.ones(len(types), bool)
    levels = np.linspace(0.0, 1.0, N_QUANTILES)
    pooled = np.quantile(own[valid], levels)
    fit["quantiles"] = np.stack(
        [
            np.quantile(own[valid & (types == t)], levels) if (valid & (types == t)).sum() >= MIN_TYPE_CELLS else pooled
            for t in range(n_types)
        ]
    )
    sample = np.arange(len(types))
    if len(sample) > REFERENCE_CELLS:
        sample = np.sort(np.random.default_rng(seed).choice(len(types), REFERENCE_CELLS, replace=False))
    kept = sparse.csr_matrix(expression[sample])
    fit |= {
        "n_cells": counts,
        "n_panel_genes": int(expression.shape[1]),
        "reference_data": kept.data.astype(np.float16),
        "reference_indices": kept.indices.astype(np.int32),
        "reference_indptr": kept.indptr.astype(np.int64),
        "reference_types": types[sample],
        "n_genes": int(n_genes),
        "n_folds": int(n_folds),
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
    A fit of the same form whose ``genes`` (positions among the panel genes) are all measured. It is fitted on
    the reference sample stored with ``fit``, so it rests on at most ``REFERENCE_CELLS`` reference cells.

    Examples
    --------
    >>> import numpy as np
    >>> from sctransformer_tools.model._novelty import fit_novelty, novelty_percentile, restrict_novelty
    >>> rng = np.random.default_rng(0)
    >>> def cells(n, block):  # counts of 60 genes; each type expresses its own block of 10 marker genes
    ...     markers = rng.poisson(8.0, size=(n, 60)) * (np.arange(60) // 10 == block)
    ...     return np.log1p(rng.poisson(1.0, size=(n, 60)) + markers)
    >>> x = np.concatenate([cells(300, 0), cells(300, 1), cells(300, 2)])
    >>> fit = fit_novelty(x, np.repeat([0, 1, 2], 300), 3, n_genes=40)
    >>> query = np.concatenate([cells(300, 0), cells(300, 1), cells(300, 2)])
    >>> query[:, 30:] = 0  # a query that measures only the first 30 genes
    >>> round(float((novelty_percentile(fit, query) > 0.95).mean()), 2)  # the unmeasured genes read as zeros
    0.92
    >>> restricted = restrict_novelty(fit, np.arange(60) < 30)
    >>> round(float((novelty_percentile(restricted, query) > 0.95).mean()), 2)  # ~5%, as for the reference
    0.05
    """
    measured = np.asarray(measured, dtype=bool)
    if "reference_data" not in fit:
        raise ValueError(
            "This novelty model keeps no reference cells (fitted before queries with missing genes were "
            "supported): retrain the model to score such queries."
        )
    n_panel = _n_panel_genes(fit)
    if measured.shape != (n_panel,):
        raise ValueError(f"measured has {measured.shape[0]} entries for {n_panel} panel genes.")
    if measured.sum() < 2:
        raise ValueError(f"The query measures {int(measured.sum())} panel genes: too few to score novelty.")
    positions = np.flatnonzero(measured)
    restricted = fit_novelty(
        _reference(fit, n_panel)[:, positions].toarray(),
        fit["reference_types"],
        len(fit["n_cells"]),
        n_genes=int(fit.get("n_genes", N_GENES)),
        n_folds=int(fit.get("n_folds", N_FOLDS)),
        seed=int(fit.get("seed", 0)),
    )
    restricted["genes"] = positions[restricted["genes"]]
    restricted["n_panel_genes"] = n_panel  # its genes are positions among the panel's, as the query is read
    return restricted


def upgrade_novelty(fit: dict | None) -> dict | None:
    """A fit of today's form: ``fit`` itself, or one refitted from the reference sample an earlier fit kept.

    Models trained before 0.3.0 hold a class-conditional probabilistic PCA (``components``,
    ``noise``, ...). When it kept its reference sample, the rank profile is refitted on it (at most
    ``REFERENCE_CELLS`` cells); otherwise there is no novelty model (``None``: retrain to get one).

    Parameters
    ----------
    fit
        ``model.novelty_``.

    Returns
    -------
    A fit that :func:`novelty_percentile` reads, or ``None``.
    """
    if fit is None or fit.get("method") == METHOD:
        return fit
    if "reference_data" not in fit:
        logger.warning("This model's novelty model is of an earlier version without reference cells: retrain it.")
        return None
    upgraded = fit_novelty(
        _reference(fit, _n_panel_genes(fit)).toarray(),
        fit["reference_types"],
        len(fit["n_cells"]),
        seed=int(fit.get("seed", 0)),
    )
    logger.info(
        "This model's novelty model is of an earlier version: the rank profile was refitted on the %d reference "
        "cells kept with it (retrain the model to fit it on all of them).",
        len(fit["reference_types"]),
    )
    return upgraded


def novelty_scores(fit: dict, expression: np.ndarray) -> np.ndarray:
    """``(cells, types)`` scores (squared Mahalanobis distances of the rank profile) of log-normalised panel
    ``expression`` against every type.
    """
    return _profile_scores(fit, np.asarray(expression, dtype=np.float32))


def novelty_percentile(fit: dict, expression: np.ndarray) -> np.ndarray:
    """Novelty percentile of each cell: against the reference type it is nearest to, the share of that type's
    (cross-fitted) reference scores below its own (``(cells,)`` in ``[0, 1]``).
    """
    scores = novelty_scores(fit, expression)
    nearest = scores.argmin(1) if len(scores) else np.zeros(0, dtype=np.int64)
    levels = np.linspace(0.0, 1.0, N_QUANTILES)
    percentile = np.zeros(len(scores))
    for t in np.unique(nearest):
        cells = nearest == t
        percentile[cells] = np.interp(scores[cells, t], fit["quantiles"][t], levels)
    return percentile


# ------------------------------------------------------------------ the rank profile
def within_cell_ranks(expression: np.ndarray) -> np.ndarray:
    """Each row's ranks (ties averaged), centred and scaled to unit length: a dot product is a Spearman correlation.

    Examples
    --------
    >>> import numpy as np
    >>> from sctransformer_tools.model._novelty import within_cell_ranks
    >>> r = within_cell_ranks(np.array([[0.0, 0.0, 1.0, 3.0], [5.0, 0.0, 2.0, 9.0]]))
    >>> round(float(r[0] @ r[1]), 3)  # Spearman correlation of the two rows
    0.632
    """
    ranks = rankdata(expression, axis=1).astype(np.float32)
    ranks -= ranks.mean(1, keepdims=True)
    norm = np.linalg.norm(ranks, axis=1, keepdims=True)
    return ranks / np.where(norm > 0, norm, 1.0)


def _select_genes(expression: np.ndarray, types: np.ndarray, n_types: int, n_genes: int) -> np.ndarray:
    """Positions (sorted) of the ``n_genes`` columns with the largest one-way ANOVA F between the types."""
    counts = np.bincount(types, minlength=n_types)
    present = np.flatnonzero(counts)
    means = np.zeros((n_types, expression.shape[1]), dtype=np.float64)
    np.add.at(means, types, expression)
    means[present] /= counts[present, None]
    grand = expression.mean(0, dtype=np.float64)
    between = (counts[present, None] * np.square(means[present] - grand)).sum(0) / max(len(present) - 1, 1)
    within = np.square(expression - means[types]).sum(0, dtype=np.float64) / max(len(types) - len(present), 1)
    f = between / (within + 1e-3)  # a gene constant within the reference's types gets no weight from 0/0
    return np.sort(np.argsort(-f, kind="stable")[: min(n_genes, expression.shape[1])])


def _fit_profile(expression: np.ndarray, types: np.ndarray, n_types: int, n_genes: int) -> dict:
    genes = _select_genes(expression, types, n_types, n_genes)
    ranks = within_cell_ranks(expression[:, genes])
    counts = np.bincount(types, minlength=n_types)
    centroids = np.zeros((n_types, len(genes)), dtype=np.float32)
    np.add.at(centroids, types, ranks)
    norm = np.linalg.norm(centroids, axis=1, keepdims=True)
    centroids /= np.where(norm > 0, norm, 1.0)
    profiles = (ranks @ centroids.T).astype(np.float64)
    means = np.full((n_types, n_types), 1e6)  # a type without cells is never the nearest
    for t in np.flatnonzero(counts):
        means[t] = profiles[types == t].mean(0)
    centred = profiles - means[types]
    covariance = centred.T @ centred / len(centred)
    covariance += RIDGE * max(float(np.trace(covariance)) / n_types, 1e-12) * np.eye(n_types)
    return {"genes": genes, "centroids": centroids, "type_means": means, "precision": np.linalg.inv(covariance)}


def _profile_scores(fit: dict, expression: np.ndarray) -> np.ndarray:
    profiles = (within_cell_ranks(expression[:, fit["genes"]]) @ fit["centroids"].T).astype(np.float64)
    diff = profiles[:, None, :] - fit["type_means"][None]
    return np.einsum("nkd,de,nke->nk", diff, fit["precision"], diff)


def _n_panel_genes(fit: dict) -> int:
    """Panel genes of the expression ``fit`` was fitted on (an earlier fit: its ``center``'s length)."""
    return int(fit["n_panel_genes"]) if "n_panel_genes" in fit else len(fit["center"])


def _reference(fit: dict, n_genes: int) -> sparse.csr_matrix:
    """The reference sample kept with ``fit``, ``(cells, n_genes)``."""
    data = (fit["reference_data"].astype(np.float32), fit["reference_indices"], fit["reference_indptr"])
    return sparse.csr_matrix(data, shape=(len(fit["reference_types"]), n_genes))
