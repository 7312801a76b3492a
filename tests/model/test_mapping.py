"""Learning from every cell (model/_training.py, model/_mapping.py, issue 22): unlabelled cells in training and
reference mapping, on scanpy's bundled pbmc68k_reduced (runs anywhere)."""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

import sctransformer_tools as sct
from sctransformer_tools.model._training import SEMI_SUPERVISED


def _quiet_train(model, **kwargs):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Validation macro-F1", category=UserWarning)  # tiny models
        model.train(enable_progress_bar=False, **kwargs)


@pytest.fixture(scope="module")
def reference(pbmc68k_full):
    """A tiny model trained on every other cell of pbmc68k_reduced."""
    ref = pbmc68k_full[::2].copy()
    sct.SCTransformer.setup_anndata(ref, labels_key="bulk_labels")
    model = sct.SCTransformer(ref, d_model=16, n_layers=1, n_heads=2, n_top_genes=0, seed=0)
    _quiet_train(model, max_epochs=4)
    return model


def _query(pbmc68k_full):
    query = pbmc68k_full[1::2].copy()
    truth = query.obs.pop("bulk_labels").astype(str)
    return query, truth


def test_unlabeled_category_marks_unlabelled_cells(pbmc68k, tiny):
    """scANVI's convention: cells of ``unlabeled_category`` (and missing labels) are unlabelled, never a type."""
    labels = pbmc68k.obs["bulk_labels"].astype(str).to_numpy().copy()
    labels[1::3] = "Unknown"
    pbmc68k.obs["cell_type"] = pd.Categorical(labels)
    sct.SCTransformer.setup_anndata(pbmc68k, labels_key="cell_type", unlabeled_category="Unknown")
    model = sct.SCTransformer(pbmc68k, seed=0, **tiny)
    _quiet_train(model, max_epochs=1)
    assert model.training_["n_unlabelled"] == int((labels == "Unknown").sum())
    assert "Unknown" not in list(model.predict(soft=True, inplace=False).columns)
    assert model.training_["objectives"] == {"classification": 1.0, **SEMI_SUPERVISED}
    # an objective that needs no label reads the unlabelled cells; the classifier reads only labelled ones
    model = sct.SCTransformer(pbmc68k, seed=0, **tiny)
    _quiet_train(model, max_epochs=1, objectives={"pseudo_labels": 1.0})
    assert model.training_["unlabelled_read_by_objectives"] and "pseudo_labels" in model.module.objectives


def test_unlabelled_cells_shape_the_expression_profile(pbmc68k_full, tiny):
    """The profile the CLS token starts from is fitted on every cell, labelled or not: adding the query's cells
    unlabelled changes it, and the classifier still trains on the labelled cells only."""
    ref, (query, _) = pbmc68k_full[::2].copy(), _query(pbmc68k_full)
    both = sct.bm.with_unlabelled(ref, query, "bulk_labels")
    assert both.n_obs == ref.n_obs + query.n_obs and both.obs["bulk_labels"].isna().sum() == query.n_obs
    models = []
    for data in (ref, both):
        sct.SCTransformer.setup_anndata(data, labels_key="bulk_labels")
        models.append(sct.SCTransformer(data, seed=0, **tiny))
    alone, joint = (dict(m.module.profile.named_buffers()) for m in models)
    assert alone.keys() == joint.keys()
    assert any(not torch.allclose(alone[k], joint[k]) for k in alone)
    _quiet_train(models[1], max_epochs=1)
    assert models[1].training_["n_labelled"] + models[1].training_["n_validation"] == ref.n_obs


def _digest(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_mapping_adapts_only_the_query_parameters(reference, pbmc68k_full, tmp_path):
    """load_query_data + train: the adapter learns; the reference model and its folder never change."""
    query, truth = _query(pbmc68k_full)
    reference.save(tmp_path / "ref")
    before, files = {k: v.clone() for k, v in reference.module.state_dict().items()}, _digest(tmp_path / "ref")
    reference_calls = np.asarray(reference.predict(query, inplace=False)).astype(str)
    for source in (reference, tmp_path / "ref"):
        query_model = sct.SCTransformer.load_query_data(query, source)
        start = {k: v.clone() for k, v in query_model.module.state_dict().items()}
        # a tiny reference is rarely confident: self-training from every call (threshold 0) moves the adapter
        query_model.add_objective("pseudo_labels", threshold=0.0, align=False)
        query_model.train(max_epochs=3, enable_progress_bar=False)
        after = query_model.module.state_dict()
        moved = {k for k in start if not torch.equal(after[k], start[k])}
        assert moved and all(k.startswith("adapter.") for k in moved), sorted(moved)
        added = set(after) - set(start)  # the adaptation objectives' own state (e.g. pseudo-labels' prior)
        assert all(k.startswith("objectives.") for k in added), sorted(added)
        assert query_model.mapping_["trained"] and query_model.mapping_["objectives"]
        calls = query_model.predict(query)
        assert len(calls) == query.n_obs and "sctransformer_prediction" in query.obs
        # the adapted calls stay those of a cell-type classifier of this reference (most cells agree)
        assert (np.asarray(calls).astype(str) == reference_calls).mean() > 0.5
    assert all(torch.equal(v, reference.module.state_dict()[k]) for k, v in before.items())
    assert reference.module.adapter is None and _digest(tmp_path / "ref") == files


def test_mapping_says_when_no_query_cell_was_confident(reference, pbmc68k_full):
    """Self-training learns from confident calls only; a reference that makes none leaves the adapter unmoved,
    and the user is told."""
    query_model = sct.SCTransformer.load_query_data(_query(pbmc68k_full)[0], reference)
    query_model.add_objective("pseudo_labels", threshold=0.999, align=False)
    with pytest.warns(UserWarning, match="No query cell reached the confidence"):
        query_model.train(max_epochs=1, enable_progress_bar=False)
    assert all(float(p.abs().max()) == 0 for p in query_model.module.adapter.parameters())


def test_mapping_a_query_with_other_genes(reference, pbmc68k_full):
    """The query may lack some of the reference's genes and hold others (the query alignment rules)."""
    import anndata as ad
    import scipy.sparse as sp

    query, _ = _query(pbmc68k_full)
    fewer = query[:, query.var_names[50:]].copy()
    extra = ad.AnnData(
        sp.hstack([fewer.X, sp.csr_matrix((fewer.n_obs, 3))]).tocsr(),
        obs=fewer.obs,
        var=pd.DataFrame(index=[*fewer.var_names, "NEW1", "NEW2", "NEW3"]),
    )
    with pytest.warns(UserWarning, match="lacks 50 of the model's"):
        query_model = sct.SCTransformer.load_query_data(extra, reference)
    assert query_model.adata.n_vars == reference.adata.n_vars
    assert extra.n_vars == fewer.n_vars + 3  # the user's object keeps its genes
    query_model.train(max_epochs=1, enable_progress_bar=False)
    probs = query_model.predict(extra, soft=True, inplace=False)
    assert np.isfinite(probs.to_numpy()).all() and np.allclose(probs.sum(1), 1, atol=1e-4)


def test_mapping_needs_a_trained_reference(pbmc68k_full, tiny):
    ref = pbmc68k_full[::2].copy()
    sct.SCTransformer.setup_anndata(ref, labels_key="bulk_labels")
    untrained = sct.SCTransformer(ref, seed=0, **tiny)
    with pytest.raises(ValueError, match="has not been trained"):
        sct.SCTransformer.load_query_data(_query(pbmc68k_full)[0], untrained)
