"""MuData input: a reference and queries as MuData, the RNA modality read, the other modalities ignored.

The core tests build the MuData from scanpy's bundled pbmc68k_reduced (runs anywhere); the last one from
pbmc3k's real counts (../shared). The second modality is real data the model must ignore: the cells' PCA
coordinates that scanpy ships with pbmc68k_reduced (a numeric modality with its own features), or, for
pbmc3k, a protein-like panel of the cells' log-normalised marker genes.
"""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import sctransformer_tools as sct

md = pytest.importorskip("mudata")

TINY = {"d_model": 16, "n_layers": 1, "n_heads": 2, "n_top_genes": 0}


def _mudata(rna: ad.AnnData, other: ad.AnnData | None = None, name: str = "pca") -> md.MuData:
    if other is None:  # pbmc68k_reduced's own PCA of the cells, as a second, non-RNA modality
        import scanpy as sc

        bundled = sc.datasets.pbmc68k_reduced()
        pca = bundled.obsm["X_pca"][bundled.obs_names.get_indexer(rna.obs_names), :10]
        other = ad.AnnData(pca.astype(np.float32), obs=pd.DataFrame(index=rna.obs_names))
        other.var_names = [f"PC{i + 1}" for i in range(other.n_vars)]
    with warnings.catch_warnings():  # mudata 0.3 announces a change of its update() defaults
        warnings.filterwarnings("ignore", message=".*will not pull obs/var columns.*", category=FutureWarning)
        return md.MuData({"rna": rna, name: other})


@pytest.fixture(scope="module")
def trained(pbmc68k_full):
    """A small model trained on a MuData whose labels live in the RNA modality's obs."""
    mdata = _mudata(pbmc68k_full.copy())
    sct.SCTransformer.setup_mudata(mdata, modalities={"rna_layer": "rna"}, labels_key="bulk_labels")
    model = sct.SCTransformer(mdata, **TINY)
    model.train(max_epochs=2, enable_progress_bar=False)
    return model, mdata


def test_setup_anndata_on_mudata_points_to_setup_mudata(pbmc68k):
    mdata = _mudata(pbmc68k)
    with pytest.raises(TypeError, match="setup_mudata"):
        sct.SCTransformer.setup_anndata(mdata, labels_key="bulk_labels")
    with pytest.raises(TypeError, match="setup_anndata"):
        sct.SCTransformer.setup_mudata(pbmc68k, labels_key="bulk_labels")


def test_setup_mudata_errors_name_the_fix(pbmc68k):
    mdata = _mudata(pbmc68k)
    with pytest.raises(KeyError, match="no modality 'gex'"):
        sct.SCTransformer.setup_mudata(mdata, modalities={"rna_layer": "gex"}, labels_key="bulk_labels")
    with pytest.raises(KeyError, match="not found in mdata.obs nor in mdata\\['rna'\\].obs"):
        sct.SCTransformer.setup_mudata(mdata, labels_key="no_such_column")
    with pytest.raises(ValueError, match="rna_layer"):
        sct.SCTransformer.setup_mudata(mdata, modalities={"labels_key": "rna"}, labels_key="bulk_labels")


def test_mudata_reference_reads_rna_and_writes_both(trained, pbmc68k_full):
    model, mdata = trained
    other_before = mdata["pca"].copy()
    assert list(model.get_var_names()) == list(pbmc68k_full.var_names)  # the RNA modality's genes
    latent = model.get_latent_representation(mdata)
    assert latent.shape == (mdata.n_obs, 16)
    np.testing.assert_array_equal(mdata.obsm["X_sctransformer"], latent)
    np.testing.assert_array_equal(mdata["rna"].obsm["X_sctransformer"], latent)
    model.predict(mdata)
    for obs in (mdata.obs, mdata["rna"].obs):
        assert {"sctransformer_prediction", "sctransformer_confidence", "sctransformer_novelty"} <= set(obs.columns)
    assert "sctransformer_prediction_colors" in mdata.uns
    attention = model.get_attention(mdata, groupby="bulk_labels")
    assert len(attention) and "sctransformer_attention" in mdata.uns and "sctransformer_attention" in mdata["rna"].uns
    # the MuData is read exactly as its RNA modality alone: same predictions, same embedding
    alone = pbmc68k_full.copy()
    np.testing.assert_allclose(model.get_latent_representation(alone), latent, atol=1e-5)
    model.predict(alone)
    pd.testing.assert_series_equal(
        alone.obs["sctransformer_prediction"].astype(str),
        mdata.obs["sctransformer_prediction"].astype(str),
        check_names=False,
    )
    # the other modality is never touched
    np.testing.assert_array_equal(mdata["pca"].X, other_before.X)
    assert list(mdata["pca"].obs.columns) == list(other_before.obs.columns)
    assert not mdata["pca"].obsm and not mdata["pca"].uns


def test_labels_in_mudata_obs_and_cells_without_rna(pbmc68k):
    """Labels as a global mdata.obs column; a query whose second modality measures more cells than its RNA."""
    rna = pbmc68k.copy()
    labels = rna.obs.pop("bulk_labels")
    other = ad.AnnData(np.ones((rna.n_obs, 2), dtype=np.float32), obs=pd.DataFrame(index=rna.obs_names))
    other.var_names = ["A", "B"]
    mdata = _mudata(rna, other, name="adt")
    mdata.obs["cell_type"] = labels
    sct.SCTransformer.setup_mudata(mdata, labels_key="cell_type")  # modalities default to {"rna_layer": "rna"}
    assert "_scvi_labels" in mdata.obs and "cell_type" not in mdata["rna"].obs
    model = sct.SCTransformer(mdata, **TINY)
    model.train(max_epochs=1, enable_progress_bar=False)
    assert model.summary_stats.n_labels == labels.nunique()
    # a reference must be paired (scvi-tools' rule), and says how to fix it
    unpaired = _mudata(pbmc68k[:600].copy(), other, name="adt")
    with pytest.raises(ValueError, match="unpaired"):
        sct.SCTransformer.setup_mudata(unpaired, labels_key="bulk_labels")
    # a query need not be: cells without RNA get no result (NaN), the others theirs
    query = _mudata(pbmc68k[:600].copy(), other, name="adt")
    assert query.n_obs == 700
    latent = model.get_latent_representation(query)
    assert latent.shape == (600, 16)
    stored = query.obsm["X_sctransformer"]
    assert stored.shape == (700, 16)
    assert np.isnan(stored[600:]).all() and not np.isnan(stored[:600]).any()
    model.predict(query)
    assert query.obs["sctransformer_prediction"].iloc[600:].isna().all()
    assert query.obs["sctransformer_prediction"].iloc[:600].notna().all()


def test_mudata_save_load_and_query(trained, pbmc68k_full, tmp_path):
    model, mdata = trained
    expected = model.predict(mdata, inplace=False)
    model.save(tmp_path / "model", save_anndata=True)
    assert (tmp_path / "model" / "mdata.h5mu").exists()
    loaded = sct.SCTransformer.load(tmp_path / "model", mdata)
    assert loaded.adata is mdata
    np.testing.assert_array_equal(np.asarray(loaded.predict(mdata, inplace=False)), np.asarray(expected))
    from_disk = sct.SCTransformer.load(tmp_path / "model")  # the MuData saved with the model
    assert isinstance(from_disk.adata, md.MuData)
    # a query MuData: its RNA modality has other genes in another order; nothing of it is reshaped
    rna = pbmc68k_full[:120, ::-1].copy()
    rna = rna[:, 10:].copy()
    query = _mudata(rna)
    n_genes = query["rna"].n_vars
    sct.SCTransformer.prepare_query_anndata(query, tmp_path / "model")
    assert query.uns["sctransformer_query"]["n_shared_genes"] == n_genes
    assert "sctransformer_query" in query["rna"].uns
    loaded.predict(query)
    assert query["rna"].n_vars == n_genes and query.obs["sctransformer_prediction"].notna().all()
    assert "_sct_library_size" not in query["rna"].obs  # a query gets results only


@pytest.mark.parametrize("where", ["rna", "global"])
def test_mudata_from_pbmc3k(pbmc_small, where):
    """pbmc3k's real counts as the RNA modality, a protein-like panel of marker genes as a second modality."""
    markers = ["CD3E", "CD14", "MS4A1", "NKG7", "FCGR3A", "PPBP"]
    counts = pbmc_small[:, markers].X
    counts = counts.toarray() if hasattr(counts, "toarray") else np.asarray(counts)
    protein = ad.AnnData(np.log1p(counts).astype(np.float32), obs=pd.DataFrame(index=pbmc_small.obs_names))
    protein.var_names = [f"{g}_protein" for g in markers]
    rna = pbmc_small.copy()
    types = set(rna.obs["cell_type"].astype(str))
    mdata = _mudata(rna, protein, name="prot")
    if where == "global":
        mdata.obs["cell_type"] = rna.obs["cell_type"]
        del mdata["rna"].obs["cell_type"]
        modalities = {"rna_layer": "rna"}
    else:
        modalities = {"rna_layer": "rna", "labels_key": "rna"}
    sct.SCTransformer.setup_mudata(mdata, labels_key="cell_type", modalities=modalities)
    model = sct.SCTransformer(mdata, **TINY)
    assert model.panel_.index.isin(rna.var_names).all() and not model.panel_.index.isin(protein.var_names).any()
    model.train(max_epochs=1, enable_progress_bar=False)
    model.predict(mdata)
    assert set(mdata.obs["sctransformer_prediction"].astype(str)) <= types | {"Unknown"}


def test_docs_mudata_example_runs(tmp_path, monkeypatch):
    """The MuData page's code runs as written, end to end (docs/mudata.md), in one namespace.

    Only the number of training epochs is lowered (``README_EPOCHS``, default 2), as for the README.
    """
    import os
    import re
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    epochs = int(os.environ.get("README_EPOCHS", "2"))
    train = sct.SCTransformer.train

    def fewer_epochs(self, max_epochs=epochs, **kwargs):
        return train(self, max_epochs=min(max_epochs, epochs), **{"enable_progress_bar": False, **kwargs})

    monkeypatch.setattr(sct.SCTransformer, "train", fewer_epochs)
    page = Path(__file__).resolve().parents[2] / "docs" / "mudata.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
    assert len(blocks) == 2
    namespace: dict = {}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"docs/mudata.md block {number}", "exec"), namespace)
    mdata, query = namespace["mdata"], namespace["query"]
    assert mdata.obsm["X_sctransformer"].shape == (700, 64)
    assert "sctransformer_attention" in mdata["rna"].uns
    assert query.obs["sctransformer_prediction"].notna().all() and "sctransformer_query" in query.uns
    assert "X_umap" in mdata["rna"].obsm
