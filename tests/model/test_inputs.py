"""Every bad input of DESIGN.md 'Data and inputs' gets a clear error or warning; nothing is dropped."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import sparse

import sctransformer_tools as sct


def _setup(adata, **kw):
    kw.setdefault("labels_key", "cell_type")
    sct.SCTransformer.setup_anndata(adata, **kw)


def test_negative_counts(pbmc_small):
    pbmc_small.X.data[5] = -1.0
    with pytest.raises(ValueError, match="1 negative values.*scaled"):
        _setup(pbmc_small)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_counts(pbmc_small, bad):
    pbmc_small.X.data[3] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        _setup(pbmc_small)


def test_non_integer_counts_warn(pbmc_small):
    pbmc_small.X.data[:10] += 0.5
    with pytest.warns(UserWarning, match="10 non-integer values.*log_normalized=True"):
        _setup(pbmc_small)


def test_log_normalized_flag_accepts_fractional_values(pbmc_small, tiny):
    import scanpy as sc

    sc.pp.normalize_total(pbmc_small, target_sum=1e4)
    sc.pp.log1p(pbmc_small)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        _setup(pbmc_small, log_normalized=True)
    model = sct.SCTransformer(pbmc_small, **tiny)
    assert model.module.tokenizer.log_normalized


def test_missing_layer(pbmc_small):
    with pytest.raises(KeyError, match="Layer 'counts' not found.*adata.layers\\['counts'\\] = adata.X.copy"):
        _setup(pbmc_small, layer="counts")


def test_counts_in_a_layer(pbmc_small, tiny):
    pbmc_small.layers["counts"] = pbmc_small.X.copy()
    pbmc_small.X = sparse.csr_matrix(pbmc_small.X.multiply(0.37))
    _setup(pbmc_small, layer="counts")  # X is not counts, the layer is: no warning needed
    model = sct.SCTransformer(pbmc_small, **tiny)
    assert model.adata_manager.registry["setup_args"]["layer"] == "counts"


def test_missing_labels_column(pbmc_small):
    with pytest.raises(KeyError, match="Labels column 'celltype' not found"):
        _setup(pbmc_small, labels_key="celltype")
    with pytest.raises(ValueError, match="labels_key is required"):
        _setup(pbmc_small, labels_key=None)


def test_duplicated_gene_names(pbmc_small):
    names = pbmc_small.var_names.tolist()
    names[1] = names[0]
    pbmc_small.var_names = names
    with pytest.raises(ValueError, match="duplicated gene name.*var_names_make_unique"):
        _setup(pbmc_small)


def test_no_overlap_with_regulons(pbmc_small):
    pbmc_small.var_names = [f"ENSG{i:011d}" for i in range(pbmc_small.n_vars)]
    with pytest.raises(ValueError, match="No regulon edge.*gene_symbols"):
        _setup(pbmc_small)


def test_gene_symbols_column_rescues_ensembl_ids(pbmc_small, tiny):
    pbmc_small.var["symbol"] = pbmc_small.var_names
    pbmc_small.var_names = [f"ENSG{i:011d}" for i in range(pbmc_small.n_vars)]
    _setup(pbmc_small, gene_symbols="symbol")
    model = sct.SCTransformer(pbmc_small, **tiny)
    assert model.mask_summary()["regulon_edges"] > 1000
    assert model.panel_["symbol"].isin(pbmc_small.var["symbol"]).all()


def test_regulon_table_without_columns(pbmc_small):
    with pytest.raises(ValueError, match="lacks the column"):
        _setup(pbmc_small, regulons=pd.DataFrame({"tf": ["PAX5"], "gene": ["CD19"]}))


def test_missing_regulon_file(pbmc_small, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _setup(pbmc_small, regulons=tmp_path / "nope.tsv")


def test_single_class(pbmc_small):
    pbmc_small.obs["cell_type"] = "B"
    with pytest.raises(ValueError, match="1 cell type"):
        _setup(pbmc_small)


def test_unknown_mask_name(pbmc_small):
    _setup(pbmc_small)
    with pytest.raises(ValueError, match="Unknown mask 'sparse'.*'grn', 'dense', 'random', 'shuffled'"):
        sct.SCTransformer(pbmc_small, mask="sparse")


def test_empty_or_foreign_model_directory(pbmc_small, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        sct.SCTransformer.load(tmp_path / "none", adata=pbmc_small)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no saved SCTransformer"):
        sct.SCTransformer.load(tmp_path / "empty", adata=pbmc_small)
    with pytest.raises(ValueError, match="holds no saved SCTransformer"):
        sct.SCTransformer.prepare_query_anndata(pbmc_small, tmp_path / "empty")
    # a model folder of another scvi-tools class: a pickle, opened only when allowed, then named
    import scvi

    other = pbmc_small[:, :200].copy()
    scvi.model.SCVI.setup_anndata(other)
    scvi.model.SCVI(other, n_latent=2, n_hidden=8).save(tmp_path / "scvi")
    with pytest.raises(ValueError, match="allow_pickle=True"):
        sct.SCTransformer.load(tmp_path / "scvi", adata=other)
    with pytest.raises(ValueError, match="holds a saved SCVI model, not an SCTransformer"):
        sct.SCTransformer.load(tmp_path / "scvi", adata=other, allow_pickle=True)


def test_query_sharing_no_panel_gene(pbmc_small, tmp_path, tiny):
    _setup(pbmc_small)
    model = sct.SCTransformer(pbmc_small, **tiny)
    query = pbmc_small.copy()
    query.var_names = [f"gene{i}" for i in range(query.n_vars)]
    with pytest.raises(ValueError, match=r"measures 0 of the model's .* panel genes \(0.0%.*expects gene symbols"):
        sct.SCTransformer.prepare_query_anndata(query, model)


def test_query_with_ensembl_ids_is_pointed_to_its_symbol_column(pbmc_small, tiny):
    """The CellTypist pitfall: Ensembl IDs in var_names, symbols in a column. The error names the column."""
    _setup(pbmc_small)
    model = sct.SCTransformer(pbmc_small, **tiny)
    query = pbmc_small.copy()
    del query.obs["cell_type"]
    query.var["feature_name"] = query.var_names.astype(str)
    query.var_names = [f"ENSG{i:011d}.{i % 7 + 1}" for i in range(query.n_vars)]
    with pytest.raises(ValueError, match=r"query has Ensembl IDs.*adata.var\['feature_name'\] matches 100%"):
        sct.SCTransformer.prepare_query_anndata(query, model)
    aligned = sct.SCTransformer.prepare_query_anndata(query, model, gene_symbols="feature_name", inplace=False)
    assert list(aligned.var_names) == list(model.get_var_names())
    assert aligned.uns["sctransformer_query"]["panel_match_ratio"] == 1.0
    np.testing.assert_array_equal(aligned.X.toarray(), pbmc_small[:, model.get_var_names()].X.toarray())
    with pytest.raises(KeyError, match="gene_symbols='symbols' is not a column"):
        sct.SCTransformer.prepare_query_anndata(query, model, gene_symbols="symbols")


def test_query_names_matched_across_case_and_ensembl_versions(pbmc_small, tiny):
    _setup(pbmc_small)
    model = sct.SCTransformer(pbmc_small, **tiny)
    query = pbmc_small.copy()
    names = query.var_names.to_numpy(dtype=object).copy()
    names[:50] = [n.lower() for n in names[:50]]  # e.g. a pipeline that lower-cased some symbols
    query.var_names = names
    with pytest.warns(UserWarning, match="match the model's only after ignoring case"):
        aligned = sct.SCTransformer.prepare_query_anndata(query, model, inplace=False)
    info = aligned.uns["sctransformer_query"]
    assert info["n_matched_by_case_or_version"] == int((names[:50] != pbmc_small.var_names[:50]).sum()) > 0
    np.testing.assert_array_equal(aligned.X.toarray(), pbmc_small[:, model.get_var_names()].X.toarray())

    from sctransformer_tools.grn import match_gene_names

    renamed, report = match_gene_names(
        pd.Index(["ENSG00000075624.17", "actb", "Cd3e", "CD3E", "xyz"]),
        pd.Index(["ENSG00000075624", "ACTB", "CD3E", "Foo", "FOO"]),
    )
    # exact CD3E wins over Cd3e; "xyz" matches nothing
    assert renamed.tolist() == ["ENSG00000075624", "ACTB", "Cd3e", "CD3E", "xyz"]
    assert report == {"n_exact": 1, "n_case_or_version": 2, "n_ambiguous": 1}


def test_query_below_min_panel_match_is_refused_and_can_be_allowed(pbmc_small, tiny):
    _setup(pbmc_small)
    model = sct.SCTransformer(pbmc_small, **tiny)
    keep = pbmc_small.var_names[::40]  # a query measuring few of the model's genes
    query = pbmc_small[:, keep].copy()
    ratio = float(model.spec_.genes.isin(keep).mean())
    assert ratio < 0.05
    with pytest.raises(ValueError, match="below min_panel_match=5%.*lower min_panel_match"):
        sct.SCTransformer.prepare_query_anndata(query, model)
    with pytest.warns(UserWarning, match="read as not expressed"):
        aligned = sct.SCTransformer.prepare_query_anndata(query, model, min_panel_match=0.0, inplace=False)
    assert aligned.uns["sctransformer_query"]["panel_match_ratio"] == pytest.approx(ratio)


def test_query_duplicated_model_genes_are_an_error(pbmc_small, tiny):
    _setup(pbmc_small)
    model = sct.SCTransformer(pbmc_small, **tiny)
    query = pbmc_small.copy()
    symbols = query.var_names.to_numpy(dtype=object).copy()
    symbols[1] = symbols[0]
    query.var["symbol"] = symbols
    with pytest.raises(ValueError, match=r"appear more than once in adata.var\['symbol'\]"):
        sct.SCTransformer.prepare_query_anndata(query, model, gene_symbols="symbol")


def test_predict_aligns_a_query_itself(pbmc_small, tiny):
    _setup(pbmc_small)
    model = sct.SCTransformer(pbmc_small, **tiny)
    model.train(max_epochs=1, enable_progress_bar=False)
    other = pbmc_small[:, ::-1].copy()
    np.testing.assert_array_equal(model.predict(other), model.predict(pbmc_small))
    assert other.var_names.equals(pbmc_small.var_names[::-1])


def test_zero_count_cells_and_missing_labels_are_kept(pbmc_small, tiny):
    counts = pbmc_small.X.tolil()
    counts[:3] = 0  # three cells without counts
    pbmc_small.X = counts.tocsr()
    labels = pbmc_small.obs["cell_type"].astype(object)
    labels.iloc[3:40] = np.nan  # unlabelled cells
    pbmc_small.obs["cell_type"] = labels
    n_obs = pbmc_small.n_obs
    _setup(pbmc_small)
    model = sct.SCTransformer(pbmc_small, **tiny)
    model.train(max_epochs=2, enable_progress_bar=False)
    assert np.isfinite(model.history["train_loss"].to_numpy(dtype=float)).all()
    pred = model.predict(pbmc_small)
    latent = model.get_latent_representation(pbmc_small)
    assert len(pred) == n_obs == pbmc_small.n_obs and np.isfinite(latent).all()
    assert np.isfinite(pbmc_small.obs["sctransformer_confidence"]).all()
    # unlabelled cells shape the expression profile and never validate; with the default objectives (none added
    # to the classifier) no minibatch reads them, with an objective that needs no label every epoch does
    labelled = np.flatnonzero(pbmc_small.obs["cell_type"].notna())
    assert set(model.validation_indices) <= set(labelled)
    assert model.training_["n_unlabelled"] == 37 and set(model.train_indices).isdisjoint(range(3, 40))
    model = sct.SCTransformer(pbmc_small, **tiny)
    model.train(max_epochs=1, objectives={"consistency": 1.0}, enable_progress_bar=False)
    assert set(model.train_indices) >= set(range(3, 40)) and set(model.validation_indices) <= set(labelled)


def test_unlabelled_only_minibatch_has_zero_loss(pbmc_small, tiny):
    _setup(pbmc_small)
    model = sct.SCTransformer(pbmc_small, **tiny)
    module = model.module
    x = torch.as_tensor(pbmc_small.X[:4].toarray())
    tensors = {"X": x, "labels": torch.full((4, 1), module.n_labels), "library_size": x.sum(1, keepdim=True)}
    loss = module(tensors)["classification"]
    assert loss.loss.item() == 0.0 and loss.loss.requires_grad


def test_user_counts_are_never_modified(pbmc_small, tiny):
    before = pbmc_small.X.copy()
    _setup(pbmc_small)
    model = sct.SCTransformer(pbmc_small, **(tiny | {"n_top_genes": 200}))  # HVG selection on these counts
    model.train(max_epochs=1, enable_progress_bar=False)
    model.predict(pbmc_small)
    assert (before != pbmc_small.X).nnz == 0
    assert model.mask_summary()["extra_genes"] > 0


def test_batch_key_and_a_query_from_an_unseen_batch(pbmc_small, tiny):
    pbmc_small.obs["donor"] = np.where(np.arange(pbmc_small.n_obs) % 2, "d1", "d2")
    _setup(pbmc_small, batch_key="donor")
    model = sct.SCTransformer(pbmc_small, **tiny)
    assert model.module.batch_embedding is not None
    model.train(max_epochs=1, enable_progress_bar=False)
    query = pbmc_small[:30].copy()
    query.obs["donor"] = "d3"
    del query.obs["cell_type"]
    with pytest.warns(UserWarning, match="30 cells have values of obs\\['donor'\\] the model has not seen"):
        model.predict(query)
    assert query.obs["sctransformer_prediction"].notna().all()


def test_early_stopping_stops_and_restores_the_best_epoch(pbmc_small, tiny):
    _setup(pbmc_small)
    model = sct.SCTransformer(pbmc_small, **tiny)
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    # with a zero learning rate the validation loss never improves: stop after `patience` epochs
    model.train(max_epochs=10, lr=0.0, early_stopping=True, early_stopping_patience=1, enable_progress_bar=False)
    assert len(model.history["validation_loss"]) == 2
    after = model.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_weight_averaging_ends_with_the_averaged_weights(pbmc_small, tiny, request):
    _setup(pbmc_small)
    runs = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one reduction order for every run
    request.addfinalizer(lambda: torch.set_num_threads(threads))
    for averaging in (False, False, True):
        model = sct.SCTransformer(pbmc_small, seed=3, **tiny)
        # a fixed precision: "auto" times float32 against bfloat16, and on busy cores the faster one can change
        model.train(max_epochs=3, weight_averaging=averaging, seed=3, precision="32-true", enable_progress_bar=False)
        runs.append(model.module.state_dict()["objectives.classification.linear.weight"])
    # training is reproducible, so the averaging alone changes the final weights
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2]) and torch.isfinite(runs[2]).all()


def test_predictions_do_not_depend_on_genes_outside_the_panel(pbmc68k):
    """Issue 25.8: size factors over the panel genes: a query file holding more or fewer non-panel genes (and no
    library-size column) gives the same embedding and probabilities."""
    import anndata as ad
    import scipy.sparse as sp

    sct.SCTransformer.setup_anndata(pbmc68k, labels_key="bulk_labels")
    model = sct.SCTransformer(pbmc68k, d_model=16, n_layers=1, n_heads=2, n_top_genes=0, seed=0)
    model.train(max_epochs=2, enable_progress_bar=False)
    assert model.spec_.settings["size_factors"] == "panel"
    query = ad.AnnData(pbmc68k.X.copy(), var=pbmc68k.var[[]].copy())  # no obs column of totals: row sums
    outside = query.var_names[~query.var_names.isin(model.spec_.genes)]
    fewer = query[:, ~query.var_names.isin(outside[:300])].copy()
    extra = ad.AnnData(
        sp.hstack([query.X, sp.random(query.n_obs, 50, density=0.3, format="csr", random_state=0).ceil() * 20]).tocsr(),
        var=pd.DataFrame(index=[*query.var_names, *(f"other{i}" for i in range(50))]),
    )
    probs = [model.predict(q, soft=True, inplace=False).to_numpy() for q in (query, fewer, extra)]
    np.testing.assert_allclose(probs[1], probs[0], atol=1e-5)
    np.testing.assert_allclose(probs[2], probs[0], atol=1e-5)
    latent = [model.get_latent_representation(q, inplace=False) for q in (query, fewer, extra)]
    np.testing.assert_allclose(latent[1], latent[0], atol=1e-5)
    np.testing.assert_allclose(latent[2], latent[0], atol=1e-5)


@pytest.fixture(scope="module")
def counts_model(pbmc68k_full):
    """A tiny model trained (one epoch) on the counts of half of pbmc68k_reduced."""
    reference = pbmc68k_full[::2].copy()
    sct.SCTransformer.setup_anndata(reference, labels_key="bulk_labels")
    model = sct.SCTransformer(reference, d_model=16, n_layers=1, n_heads=2, n_top_genes=0, seed=0)
    model.train(max_epochs=1, enable_progress_bar=False)
    return model


@pytest.fixture
def counts_model_and_query(counts_model, pbmc68k_full):
    """The model trained on counts and a query of the other cells (whole numbers in X), a fresh copy."""
    query = pbmc68k_full[1::2].copy()
    del query.obs["bulk_labels"]
    return counts_model, query


def _log_normalised(adata, keep_counts: bool):
    import scanpy as sc

    out = adata.copy()
    if keep_counts:
        out.layers["counts"] = out.X.copy()
    sc.pp.normalize_total(out, target_sum=1e4)
    sc.pp.log1p(out)
    return out


def test_a_counts_model_refuses_a_log_normalised_or_scaled_query(counts_model_and_query):
    """Issue 25.4: log-normalised X given to a model trained on counts was read with a warning and gave confident
    nonsense; it is refused, naming the layer read and the one holding whole numbers."""
    import scanpy as sc

    model, query = counts_model_and_query
    logged = _log_normalised(query, keep_counts=True)
    expected = (
        r"adata.X of the query holds [\d,]+ non-integer values: it looks log-normalised or scaled, not raw counts"
    )
    fix = r"Whole numbers are in adata.layers\['counts'\]: pass layer='counts' \(--query-layer counts on the command"
    for read in (
        lambda: model.predict(logged, layer=None),
        lambda: sct.SCTransformer.prepare_query_anndata(logged, model, layer=None),
    ):
        with pytest.raises(ValueError, match=f"{expected}.*{fix}"):
            read()
    scaled = logged.copy()
    sc.pp.scale(scaled)
    with pytest.raises(ValueError, match=r"adata.X of the query holds [\d,]+ negative values: it looks scaled.*"):
        model.predict(scaled, layer=None)
    alone = _log_normalised(query, keep_counts=False)  # no counts anywhere
    with pytest.raises(ValueError, match=r"No other matrix of the query holds whole numbers \(it has no layers\)"):
        model.predict(alone)  # chosen automatically: X, the only matrix, is refused too
    alone.raw = query  # counts kept in .raw
    with pytest.raises(ValueError, match=r"adata.raw holds whole numbers"):
        model.predict(alone)
    # chosen automatically: the layer of counts is read, and the predictions are those of the counts in X
    np.testing.assert_array_equal(model.predict(logged), model.predict(query))


def test_the_layer_read_is_logged_once_when_chosen_automatically(counts_model_and_query, package_log):
    model, query = counts_model_and_query
    logged = _log_normalised(query, keep_counts=True)
    sct.SCTransformer.prepare_query_anndata(logged, model)
    model.predict(logged)
    model.get_latent_representation(logged)
    lines = [r.getMessage() for r in package_log.records if r.getMessage().startswith("Counts of")]
    assert lines == [
        "Counts of the query read from adata.layers['counts'] (chosen automatically; pass layer= to read another)."
    ]
    package_log.clear()
    model.predict(query.copy(), layer=None)  # named by the user: nothing to say
    assert not [r for r in package_log.records if r.getMessage().startswith("Counts of")]


def test_mouse_like_query_names_are_named_as_matched_to_human_namesakes(counts_model_and_query):
    model, query = counts_model_and_query
    lowered = query.copy()  # some names lower-cased by a pipeline: not mouse, said as before
    query.var_names = [name.capitalize() for name in query.var_names]  # Cd3e, Pax5: written the mouse way
    with pytest.warns(UserWarning, match=r"look like mouse symbols.*mouse genes were matched to their human namesakes"):
        sct.SCTransformer.prepare_query_anndata(query, model)
    assert query.uns["sctransformer_query"]["mouse_like_symbols"]
    lowered.var_names = [n.lower() if i < 20 else n for i, n in enumerate(lowered.var_names)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sct.SCTransformer.prepare_query_anndata(lowered, model)
    messages = [str(w.message) for w in caught]
    assert any("only after ignoring case" in m for m in messages) and not any("mouse" in m for m in messages)


@pytest.mark.parametrize("regulons", ["collectri", "table"])
def test_a_mouse_like_reference_is_named_as_matched_to_human_namesakes(pbmc68k, regulons):
    if regulons == "table":  # a table of human regulons says the same as the resource's name
        regulons = sct.grn.load_regulons("collectri")
    pbmc68k.var_names = [name.capitalize() for name in pbmc68k.var_names]
    with pytest.warns(
        UserWarning, match=r"look like mouse symbols.*[\d,]+ mouse genes were matched .* human namesakes"
    ) as w:
        sct.SCTransformer.setup_anndata(pbmc68k, labels_key="bulk_labels", regulons=regulons)
    assert [r.filename for r in w if "mouse" in str(r.message)] == [__file__]  # points at the user's line
