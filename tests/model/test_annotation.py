"""Annotating a new dataset as a new user does it (issue 13), on data that ships with scanpy: runs anywhere."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import sctransformer_tools as sct


def test_query_with_counts_in_x_is_read_whatever_layer_the_reference_used(reference_model, reference_and_query):
    """Issue 13.1: the reference trained on layers['counts']; the query has its counts in X."""
    from sklearn.metrics import accuracy_score

    _, query, truth = reference_and_query
    query = query.copy()
    sct.SCTransformer.prepare_query_anndata(query, reference_model)
    assert query.uns["sctransformer_query"]["counts"] == "adata.X"
    pred = reference_model.predict(query)
    assert accuracy_score(truth, pred) > 0.4  # 10 FACS populations, a tiny model trained briefly
    # the query's counts in a layer of its own, named by the user
    named = query.copy()
    named.layers["raw"] = named.X.copy()
    named.X = named.X * 0.5  # not counts
    np.testing.assert_array_equal(reference_model.predict(named, layer="raw"), pred)
    with pytest.raises(KeyError, match=r"Layer 'spliced' not found in the query's layers \(\['raw'\]\)"):
        reference_model.predict(named, layer="spliced")


def test_library_sizes_from_a_usual_column_and_a_warning_without_one(reference_and_query, package_log):
    """Issue 13.2: a model dividing by library sizes (``size_factors="library"``) needs them for a query measuring
    part of the genes; say where they come from, and warn without them. The novelty reads ranks within each cell,
    which a cell's library size does not change (issue 25.5): it is the same either way."""
    reference, query, _ = reference_and_query
    reference = reference.copy()
    sct.SCTransformer.setup_anndata(reference, layer="counts", labels_key="bulk_labels", regulons="collectri")
    model = sct.SCTransformer(reference, n_layers=1, d_model=32, n_heads=2, seed=0, size_factors="library")
    model.train(max_epochs=8, lr=5e-3, enable_progress_bar=False)
    subset = query[:, query.var_names[:300]].copy()  # 300 of the 765 genes: row sums are not library sizes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the 465 missing genes
        model.predict(subset, novelty_threshold="auto")
    assert "Library sizes of the query read from adata.obs['n_counts']" in package_log.text
    without = subset.copy()
    del without.obs["n_counts"], without.uns["sctransformer_query"]
    with pytest.warns(UserWarning, match=r"no library-size column.*shifted predictions.*library_size_key="):
        model.predict(without, novelty_threshold="auto")
    assert without.uns["sctransformer_query"]["library_size"] == "row sums"
    np.testing.assert_allclose(without.obs["sctransformer_novelty"], subset.obs["sctransformer_novelty"], atol=1e-6)
    assert not np.allclose(without.obs["sctransformer_confidence"], subset.obs["sctransformer_confidence"])


def test_panel_size_factors_need_no_library_size_column(reference_model, reference_and_query, package_log):
    """Issue 25.8: the default model divides by each cell's own panel counts, so a gene subset without a column of
    totals is read exactly as with one, and nothing warns about library sizes."""
    _, query, _ = reference_and_query
    assert reference_model.spec_.settings["size_factors"] == "panel"
    subset = query[:, query.var_names[:300]].copy()
    without = subset.copy()
    del without.obs["n_counts"]
    calls = []
    for cells in (subset, without):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            calls.append(reference_model.predict(cells, soft=True, inplace=False).to_numpy())
        assert not [w for w in seen if "library" in str(w.message)], [str(w.message) for w in seen]
        assert cells.uns["sctransformer_query"]["library_size"] == "panel genes"
    assert "Library sizes" not in package_log.text and "Counts of the query" in package_log.text
    np.testing.assert_allclose(calls[0], calls[1], atol=1e-6)


def test_the_users_query_keeps_its_genes_and_columns(reference_model, reference_and_query):
    """Issue 13.3: annotation adds results; it never reshapes the object or leaves internal columns."""
    _, query, _ = reference_and_query
    query = query[:, ::-1].copy()  # another gene order
    query.var["note"] = "kept"
    genes, columns, matrix = query.var_names.copy(), list(query.obs.columns), query.X.copy()
    sct.SCTransformer.prepare_query_anndata(query, reference_model)
    reference_model.predict(query, over_clustering="louvain")
    reference_model.get_latent_representation(query)
    reference_model.get_attention(query, groupby="sctransformer_prediction")
    assert query.var_names.equals(genes) and (query.var["note"] == "kept").all()
    assert (matrix != query.X).nnz == 0
    added = [c for c in query.obs.columns if c not in columns]
    assert added == [
        "sctransformer_prediction",
        "sctransformer_confidence",
        "sctransformer_novelty",
        "sctransformer_majority_voting",
    ]
    assert not [c for c in query.obs.columns if c.startswith(("_scvi", "_sct"))]
    assert "_scvi_uuid" not in query.uns and "_scvi_manager_uuid" not in query.uns
    assert query.obsm["X_sctransformer"].shape == (query.n_obs, 32)


def test_an_untrained_model_and_an_empty_query(reference_and_query, reference_model):
    """Issue 13.4: no confident-looking output from random weights; zero cells give an empty result."""
    reference, query, _ = reference_and_query
    reference = reference.copy()
    sct.SCTransformer.setup_anndata(reference, layer="counts", labels_key="bulk_labels", regulons="collectri")
    untrained = sct.SCTransformer(reference, n_layers=1, d_model=16, n_heads=2, n_top_genes=0)
    for call in (untrained.predict, untrained.get_latent_representation, untrained.get_attention):
        with pytest.raises(RuntimeError, match=r"has not been trained.*model.train\(\)"):
            call(query)
    empty = query[:0].copy()
    assert reference_model.predict(empty).shape == (0,)
    assert reference_model.get_latent_representation(empty).shape == (0, 32)
    assert list(empty.obs.columns[-3:]) == [
        "sctransformer_prediction",
        "sctransformer_confidence",
        "sctransformer_novelty",
    ]
    with pytest.raises(ValueError, match="has no cells"):
        reference_model.get_attention(empty)


def test_training_and_reading_are_quiet(reference_and_query, capsys, caplog):
    """Issue 13.7: no library chatter; one line saying what was trained and how it validates."""
    reference, query, _ = reference_and_query
    reference = reference.copy()
    sct.SCTransformer.setup_anndata(reference, layer="counts", labels_key="bulk_labels", regulons="collectri")
    model = sct.SCTransformer(reference, n_layers=1, d_model=16, n_heads=2, n_top_genes=0)
    with caplog.at_level(logging.INFO):
        model.train(max_epochs=2, enable_progress_bar=False)
        model.save(Path(os.environ.get("TMPDIR", "/tmp")) / "sct_quiet_model", overwrite=True)
        again = sct.SCTransformer.load(Path(os.environ.get("TMPDIR", "/tmp")) / "sct_quiet_model")
        again.predict(query.copy())
    printed = capsys.readouterr()
    text = printed.out + printed.err + caplog.text
    for noise in ("GPU available", "TPU available", "Tip:", "already downloaded", "Input AnnData not setup"):
        assert noise not in text, noise
    trained_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Trained SCTransformer")]
    assert len(trained_lines) == 1 and "validation" in trained_lines[0] and "macro-F1" in trained_lines[0]


def test_a_poor_model_is_reported(reference_and_query):
    """Issue 13.8: a model that has learned nothing says so."""
    reference = reference_and_query[0].copy()
    sct.SCTransformer.setup_anndata(reference, layer="counts", labels_key="bulk_labels", regulons="collectri")
    model = sct.SCTransformer(reference, n_layers=1, d_model=16, n_heads=2, n_top_genes=0)
    with pytest.warns(UserWarning, match=r"Validation macro-F1 is 0\.\d\d.*not to be trusted"):
        model.train(max_epochs=1, lr=0.0, enable_progress_bar=False)


def test_query_warnings_point_at_the_users_line(pbmc68k):
    """A gene-match warning names the line that called predict, not a line inside the package."""
    import warnings

    import sctransformer_tools as sct

    sct.SCTransformer.setup_anndata(pbmc68k, labels_key="bulk_labels")
    model = sct.SCTransformer(pbmc68k, n_layers=1, d_model=16, n_heads=2, n_top_genes=0)
    model.train(max_epochs=1, enable_progress_bar=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.predict(pbmc68k[:, :300].copy())
    match = [w for w in caught if "lacks" in str(w.message)]
    assert match and match[0].filename == __file__


def test_minibatches_of_reading_are_sized_by_gene_tokens_and_change_no_result(
    reference_model, reference_and_query, monkeypatch
):
    """``batch_size=None`` (the default of the methods that read cells) picks as many cells as hold about
    ``READ_TOKENS_CPU`` gene tokens, counted on the data; what is computed for a cell does not depend on it."""
    from sctransformer_tools.model import _reader

    _, query, _ = reference_and_query
    model = reference_model
    soft = model.predict(query, soft=True, inplace=False)
    np.testing.assert_allclose(model.predict(query, soft=True, inplace=False, batch_size=7), soft, atol=1e-5)
    np.testing.assert_allclose(
        model.get_latent_representation(query, inplace=False, batch_size=300),
        model.get_latent_representation(query, inplace=False),
        atol=1e-5,
    )
    with model.reader.read(query) as data:
        tokens = model.reader.map_batches(
            data, lambda b: torch.bincount(model.module.tokenizer(b.x, b.library).cell, minlength=b.n_cells)
        )
        per_cell = float(torch.cat(tokens).float().mean())  # every cell's token count, as the model reads it
        monkeypatch.setattr(_reader, "READ_TOKENS_CPU", 1_000)
        chosen = model.reader.cells_per_minibatch(data.adata)
        assert abs(chosen - 1_000 / per_cell) <= 0.25 * 1_000 / per_cell  # estimated on 64 of the query's cells
        assert model.reader.cells_per_minibatch(data.adata, indices=np.arange(5)) == int(
            1_000 // max(float(torch.cat(tokens)[:5].float().mean()), 1.0)
        )  # all cells counted when there are few
        monkeypatch.setattr(_reader, "READ_TOKENS_CPU", 1)
        assert model.reader.cells_per_minibatch(data.adata) == 1  # at least one cell
        monkeypatch.setattr(_reader, "READ_TOKENS_CPU", 10**9)
        assert model.reader.cells_per_minibatch(data.adata) == _reader.READ_MAX_CELLS
