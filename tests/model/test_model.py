"""End to end on pbmc3k + CollecTRI: train, predict held-out cells, embed, attention, save/load, query."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score

import sctransformer_tools as sct
from sctransformer_tools.model._novelty import novelty_percentile


@pytest.fixture(scope="module")
def trained(pbmc3k_full, pbmc3k_split):
    """The default GRN model trained on the 80% split (a few epochs, to keep the suite fast)."""
    train_idx, test_idx = pbmc3k_split
    ref = pbmc3k_full[train_idx].copy()
    test = pbmc3k_full[test_idx].copy()
    sct.SCTransformer.setup_anndata(ref, labels_key="cell_type", regulons="collectri")
    model = sct.SCTransformer(ref, mask="grn")
    model.train(max_epochs=8, enable_progress_bar=False)
    return model, ref, test


def test_held_out_macro_f1_well_above_chance(trained):
    model, _, test = trained
    sct.SCTransformer.prepare_query_anndata(test, model)
    pred = model.predict(test)
    truth = test.obs["cell_type"].astype(str)
    f1 = f1_score(truth, pred, average="macro")
    # 9 cell types: chance macro-F1 is about 0.1; the full default training reaches ~0.9
    assert f1 > 0.7, f1
    assert accuracy_score(truth, pred) > 0.8
    assert test.obs["sctransformer_prediction"].dtype == "category"
    conf = test.obs["sctransformer_confidence"].to_numpy()
    assert ((conf > 1 / 9) & (conf <= 1)).all()
    probs = model.predict(test, soft=True, inplace=False)
    assert list(probs.columns) == sorted(truth.unique())
    np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-5)


def test_history_logs_loss_accuracy_f1(trained):
    model, _, _ = trained
    for split in ("train", "validation"):
        for metric in ("loss", "accuracy", "f1_macro"):
            values = model.history[f"{split}_{metric}"].to_numpy(dtype=float).ravel()
            assert np.isfinite(values).all() and len(values) >= 1
    assert model.history["train_loss"].iloc[-1].item() < model.history["train_loss"].iloc[0].item()


def test_latent_representation_written_for_scanpy(trained):
    import scanpy as sc

    model, ref, _ = trained
    latent = model.get_latent_representation(ref)
    assert latent.shape == (ref.n_obs, 64) and np.isfinite(latent).all()
    assert np.array_equal(ref.obsm["X_sctransformer"], latent)
    sc.pp.neighbors(ref, use_rep="X_sctransformer")
    sc.tl.umap(ref)
    assert ref.obsm["X_umap"].shape == (ref.n_obs, 2)


def test_attention_per_cell_type(trained):
    model, ref, _ = trained
    long = model.get_attention(ref, groupby="cell_type")
    uns = sct.tl.attention_tables(ref)
    n_edges = model.mask_summary()["regulon_edges"]
    assert uns["scores"].shape == (n_edges, 9)
    assert set(long.columns) == {"group", "source", "target", "weight", "score", "coverage"}
    scores = uns["scores"].to_numpy()
    assert np.isfinite(scores).all() and (scores >= 0).all() and (scores <= 1).all()
    # attention on an edge is only possible where both genes are expressed
    assert (scores[uns["coverage"].to_numpy() == 0] == 0).all()
    assert scores.max() > 0
    # the CLS token's attention is a distribution over the cell's genes and itself
    cls_total = uns["cls_attention"].sum(0).to_numpy()
    assert ((cls_total > 0.5) & (cls_total <= 1 + 1e-5)).all()
    assert uns["mask"]["mask"] == "grn" and uns["params"]["groupby"] == "cell_type"
    assert uns["tf_scores"].index.isin(model.panel_["symbol"][model.panel_["is_tf"]]).all()


def test_temperature_scaling_fitted_on_validation_cells(trained):
    model, ref, test = trained
    cal = model.calibration_
    assert cal["n_cells"] > 100  # ~10% of the 2,110 reference cells
    assert 0.05 < cal["temperature"] < 20 and cal["temperature"] == model.temperature
    # fitted to minimise the validation NLL: never worse there
    assert cal["nll_after"] <= cal["nll_before"] + 1e-9
    assert 0 <= cal["ece_after"] <= 1 and 0 <= cal["ece_before"] <= 1
    # temperature changes confidences, not predictions
    sct.SCTransformer.prepare_query_anndata(test, model)
    raw = model.predict(test, soft=True, inplace=False, calibrated=False)
    scaled = model.predict(test, soft=True, inplace=False)
    np.testing.assert_array_equal(raw.to_numpy().argmax(1), scaled.to_numpy().argmax(1))
    logit_ratio = np.log(raw.to_numpy()) - np.log(raw.to_numpy()).max(1, keepdims=True)
    expected = np.exp(logit_ratio / cal["temperature"])
    np.testing.assert_allclose(scaled.to_numpy(), expected / expected.sum(1, keepdims=True), rtol=1e-4, atol=1e-6)


def test_unknown_threshold_and_majority_voting(trained):
    model, _, test = trained
    sct.SCTransformer.prepare_query_anndata(test, model)
    pred = model.predict(test, unknown_threshold=0.0)
    # legends list only types that have cells: no Unknown category when no cell is Unknown
    assert "Unknown" not in set(pred) and "Unknown" not in test.obs["sctransformer_prediction"].cat.categories
    conf = test.obs["sctransformer_confidence"].to_numpy()
    threshold = float(np.quantile(conf, 0.25))
    pred = model.predict(test, unknown_threshold=threshold)
    np.testing.assert_array_equal(pred == "Unknown", conf < threshold)
    # majority voting over the true cell types: one prediction per type
    test.obs["cluster"] = test.obs["cell_type"].astype(str)
    model.predict(test, over_clustering="cluster")
    votes = test.obs.groupby("cluster", observed=True)["sctransformer_majority_voting"].nunique()
    assert (votes == 1).all()
    assert (test.obs["sctransformer_majority_voting"].astype(str) == test.obs["cluster"]).mean() > 0.9
    with pytest.raises(ValueError, match="between 0 and 1"):
        model.predict(test, unknown_threshold=5)
    with pytest.raises(KeyError, match="over_clustering='leiden'"):
        model.predict(test, over_clustering="leiden")


def test_cell_type_absent_from_reference_is_mostly_unknown(pbmc3k_full, pbmc3k_split, tiny):
    """B cells held out of training: the classifier calls them T cells (confidently), the novelty
    percentile calls most of them Unknown and few cells of the known types."""
    train_idx, test_idx = pbmc3k_split
    is_b = (pbmc3k_full.obs["cell_type"] == "B").to_numpy()
    ref = pbmc3k_full[train_idx[~is_b[train_idx]]].copy()
    query = pbmc3k_full[test_idx].copy()
    sct.SCTransformer.setup_anndata(ref, labels_key="cell_type", regulons="collectri")
    model = sct.SCTransformer(ref, **tiny)
    model.train(max_epochs=2, enable_progress_bar=False)
    assert model.novelty_["n_cells"].sum() == ref.n_obs
    sct.SCTransformer.prepare_query_anndata(query, model)
    novel = (query.obs["cell_type"] == "B").to_numpy()
    model.predict(query)
    assert "Unknown" not in query.obs["sctransformer_prediction"].cat.categories
    novelty = query.obs["sctransformer_novelty"].to_numpy()
    assert ((novelty >= 0) & (novelty <= 1)).all()
    assert np.median(novelty[novel]) > 0.95 > np.median(novelty[~novel])
    model.predict(query, novelty_threshold=0.95)
    unknown = (query.obs["sctransformer_prediction"] == "Unknown").to_numpy()
    assert unknown[novel].mean() > 0.5  # measured 0.83 (AUROC 0.996; confidence: 0.56)
    assert unknown[~novel].mean() < 0.1  # measured 0.009
    np.testing.assert_array_equal(unknown, novelty > 0.95)


def test_save_load_identical_predictions(trained, tmp_path):
    model, ref, _ = trained
    before = model.predict(ref, soft=True, inplace=False)
    model.save(tmp_path / "model")
    loaded = sct.SCTransformer.load(tmp_path / "model", adata=ref)
    after = loaded.predict(ref, soft=True, inplace=False)
    np.testing.assert_array_equal(before.to_numpy(), after.to_numpy())
    assert loaded.mask_summary() == model.mask_summary()
    assert loaded.calibration_ == model.calibration_
    model.predict(ref)
    novelty = ref.obs["sctransformer_novelty"].to_numpy()
    loaded.predict(ref)
    np.testing.assert_array_equal(ref.obs["sctransformer_novelty"].to_numpy(), novelty)


def test_query_without_labels_shuffled_and_missing_genes(trained, pbmc3k_split, pbmc3k_full, tmp_path):
    model, _, _ = trained
    model.save(tmp_path / "model")
    rng = np.random.default_rng(0)
    query = pbmc3k_full[pbmc3k_split[1]].copy()
    truth = query.obs.pop("cell_type").astype(str)
    keep = rng.permutation(query.n_vars)[: int(0.7 * query.n_vars)]  # 30% of genes missing, order shuffled
    query = query[:, keep].copy()
    genes = query.var_names.copy()
    with pytest.warns(UserWarning, match=r"lacks 4,115 of the model's 13,714 genes"):
        sct.SCTransformer.prepare_query_anndata(query, tmp_path / "model")
    assert query.var_names.equals(genes)  # the user's object keeps its genes
    assert query.uns["sctransformer_query"]["n_zero_filled_genes"] == 4_115
    loaded = sct.SCTransformer.load(tmp_path / "model", adata=query)  # a query: not registered
    assert loaded.adata is None
    pred = loaded.predict(query)
    assert query.obs["sctransformer_prediction"].notna().all()
    assert accuracy_score(truth, pred) > 0.6  # fewer genes, still far above chance (~0.26 for the largest type)
    assert (query.obs["sctransformer_novelty"] > 0.95).mean() < 0.15  # cells of the reference's types


def test_novelty_scored_on_the_genes_a_query_measures(trained, pbmc3k_split, pbmc3k_full, tmp_path):
    """A query lacking the reference's most expressed panel genes: read as zeros, they would make most cells
    look novel; the novelty model refitted on the measured genes flags about as few as in the reference."""
    model, ref, _ = trained
    query = pbmc3k_full[pbmc3k_split[1]].copy()
    panel = model.spec_.genes
    mean = np.asarray(ref[:, panel].X.mean(0)).ravel()
    dropped = panel[np.argsort(-mean)[:300]]
    query.obs["n_counts"] = np.asarray(query.X.sum(1)).ravel()  # library sizes as measured, over all genes
    query = query[:, ~query.var_names.isin(dropped)].copy()
    with pytest.warns(UserWarning, match="lacks 300 of the model's"):
        sct.SCTransformer.prepare_query_anndata(query, model, library_size_key="n_counts")
    model.predict(query)
    restricted = query.obs["sctransformer_novelty"].to_numpy()
    with model.reader.read(query) as data:
        normalize = model.module.tokenizer.normalize
        expression = torch.cat(model.reader.map_batches(data.adata, lambda b: normalize(b.x, b.library).cpu()))
        expression = expression.numpy()
    naive = novelty_percentile(model.novelty_, expression)
    print(
        f"flagged at 0.95: refitted {(restricted > 0.95).mean():.3f}, zeros read as measured {(naive > 0.95).mean():.3f}"
    )
    assert (restricted > 0.95).mean() < 0.15
    assert (naive > 0.95).mean() > 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the refitted model is cached: no second warning
        model.predict(query)
    np.testing.assert_array_equal(query.obs["sctransformer_novelty"].to_numpy(), restricted)


def test_highly_variable_genes_keep_torch_threads(pbmc3k_path):
    """scanpy's seurat_v3 genes reset torch's thread count on first use in a process; the panel selection
    gives it back (a fresh process, since the reset happens once)."""
    import subprocess
    import sys

    code = (
        "import torch; torch.set_num_threads(1)\n"
        "import anndata as ad\n"
        "from sctransformer_tools._data import highly_variable_genes\n"
        f"adata = ad.read_h5ad({str(pbmc3k_path)!r})[:600].copy()\n"
        "highly_variable_genes(adata, 500)\n"
        "print(torch.get_num_threads())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "1"
