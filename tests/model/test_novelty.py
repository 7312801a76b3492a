"""The novelty percentile (model/_novelty.py): held-out types flagged, new batches of known types not, the threshold.

Numbers come from scanpy's bundled pbmc68k_reduced (counts rebuilt, 765 genes), so they run anywhere in seconds; the
full measurement on pbmc3k and the PBMC sets of other chemistries is ``benchmarks/novelty.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import sparse
from sklearn.metrics import roc_auc_score

import sctransformer_tools as sct
from sctransformer_tools._constants import NOVELTY_THRESHOLD
from sctransformer_tools._data import stratified_split
from sctransformer_tools.model._novelty import METHOD, fit_novelty, novelty_percentile, restrict_novelty

ROOT = Path(__file__).resolve().parents[2]
RELEASED = ROOT / "tests" / "data" / "released_models"


def _log_normalised(counts) -> np.ndarray:
    counts = sparse.csr_matrix(counts, dtype=np.float32)
    total = np.maximum(np.asarray(counts.sum(1)).ravel(), 1.0)
    return np.log1p(counts.multiply(1e4 / total[:, None]).toarray()).astype(np.float32)


@pytest.fixture(scope="module")
def cells(pbmc68k_full):
    """pbmc68k_reduced's counts, labels, and its stratified 80/20 split."""
    labels = pbmc68k_full.obs["bulk_labels"].astype(str).to_numpy()
    train, test = stratified_split(labels, 0.8, seed=0)
    return sparse.csr_matrix(pbmc68k_full.X), labels, train, test


@pytest.fixture(scope="module")
def fitted(cells):
    """The novelty model fitted on every training cell, and its type names."""
    counts, labels, train, _ = cells
    types = np.unique(labels)
    return fit_novelty(_log_normalised(counts[train]), np.searchsorted(types, labels[train]), len(types)), types


def test_held_out_type_scores_higher_than_kept_types(cells):
    """B cells held out of the fit: their test cells score far above the known types' (measured AUROC 0.955,
    median percentile 0.958 against 0.471) and the known types are flagged at about the rate the percentile says."""
    counts, labels, train, test = cells
    kept = np.unique(labels[labels != "CD19+ B"])
    reference = train[labels[train] != "CD19+ B"]
    fit = fit_novelty(_log_normalised(counts[reference]), np.searchsorted(kept, labels[reference]), len(kept))
    assert fit["method"] == METHOD and fit["n_cells"].sum() == len(reference)
    novelty = novelty_percentile(fit, _log_normalised(counts[test]))
    novel = labels[test] == "CD19+ B"
    assert ((novelty >= 0) & (novelty <= 1)).all()
    assert roc_auc_score(novel, novelty) > 0.9
    assert np.median(novelty[novel]) > 0.9 > 0.6 > np.median(novelty[~novel])
    assert (novelty[~novel] > NOVELTY_THRESHOLD).mean() < 0.05  # measured 0.016


def test_a_shallower_batch_of_the_same_cells_is_not_flagged(cells, fitted):
    """The test cells with half their counts (binomial thinning: a shallower chemistry) keep their novelty low:
    ranks within a cell do not depend on depth the way expression does (measured: 2% flagged, thinned 7%)."""
    counts, _, _, test = cells
    fit, _ = fitted
    query = sparse.csr_matrix(counts[test], dtype=np.float32)
    thinned = query.copy()
    thinned.data = np.random.default_rng(0).binomial(thinned.data.astype(np.int64), 0.5).astype(np.float32)
    flagged = [(novelty_percentile(fit, _log_normalised(x)) > NOVELTY_THRESHOLD).mean() for x in (query, thinned)]
    assert flagged[0] < 0.05
    assert flagged[1] < 0.12


def test_a_gene_subset_is_scored_on_the_genes_it_measures(cells, fitted):
    """A batch lacking the reference's 150 most expressed genes (a targeted panel): read with zeros for them many
    cells look novel; the model refitted on the measured genes flags about as few as for the full batch."""
    counts, _, train, test = cells
    fit, _ = fitted
    mean = np.asarray(counts[train].mean(0)).ravel()
    measured = np.ones(counts.shape[1], dtype=bool)
    measured[np.argsort(-mean)[:150]] = False
    expression = np.zeros((len(test), counts.shape[1]), dtype=np.float32)
    expression[:, measured] = _log_normalised(counts[test][:, measured])
    naive = (novelty_percentile(fit, expression) > NOVELTY_THRESHOLD).mean()
    restricted = (novelty_percentile(restrict_novelty(fit, measured), expression) > NOVELTY_THRESHOLD).mean()
    assert naive > 0.5  # measured 1.0
    assert restricted < 0.05  # measured 0.007


def test_the_auto_threshold_is_the_measured_one():
    """``novelty_threshold="auto"`` applies NOVELTY_THRESHOLD, which is what benchmarks/novelty.py chose on its
    validation split and recorded."""
    records = json.loads((ROOT / "benchmarks" / "results" / "novelty.json").read_text())
    assert records["meta"]["recommended_threshold"] == NOVELTY_THRESHOLD
    model, adata = sct.ds.toy_model()
    auto = model.predict(adata, novelty_threshold="auto", inplace=False)
    explicit = model.predict(adata, novelty_threshold=NOVELTY_THRESHOLD, inplace=False)
    np.testing.assert_array_equal(auto, explicit)
    with pytest.raises(ValueError, match="'auto'"):
        model.predict(adata, novelty_threshold="high")
    from sctransformer_tools.cli import _parser

    base = ["annotate", "--model", "m", "--query", "q.h5ad", "--out", "o.h5ad"]
    for given, expected in (
        ([], None),
        (["--novelty-threshold"], NOVELTY_THRESHOLD),
        (["--novelty-threshold", "auto"], NOVELTY_THRESHOLD),
        (["--novelty-threshold", "0.9"], 0.9),
    ):
        assert _parser().parse_args([*base, *given]).novelty_threshold == expected


def test_a_released_folder_gets_todays_novelty():
    """A 0.2.0 folder holds the earlier probabilistic-PCA fit: it is refitted once from the reference cells it kept
    (not saved; the folder's predictions are those of test_save), and scores novelty in [0, 1]."""
    model = sct.SCTransformer.load(RELEASED / "format1")
    assert model.novelty_.get("method") != METHOD
    expected = np.load(RELEASED / "expected.npz")
    query = sct.ds.pbmc68k_reduced()[expected["obs_names"]].copy()
    model.predict(query)
    novelty = query.obs["sctransformer_novelty"].to_numpy()
    assert np.isfinite(novelty).all() and ((novelty >= 0) & (novelty <= 1)).all()
    upgraded = model._novelty_for(np.ones(len(model.spec_.genes), dtype=bool))
    assert upgraded["method"] == METHOD and len(upgraded["reference_types"]) == len(model.novelty_["reference_types"])
