"""The command line and the bundled dataset."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest

import sctransformer_tools as sct
from sctransformer_tools.cli import main


def test_pbmc68k_counts_are_whole_numbers_matching_library_sizes():
    adata = sct.ds.pbmc68k_reduced()
    values = adata.X.data
    assert np.array_equal(values, np.round(values)) and values.min() >= 1
    assert adata.uns["counts_reconstruction"]["within_0.05"] > 0.999
    # only 765 genes are kept: their counts are a part of each cell's library
    assert (np.asarray(adata.X.sum(1)).ravel() <= adata.obs["n_counts"].to_numpy() + 1e-3).all()
    assert set(sct.ds.PBMC68K_TO_PBMC3K) == set(adata.obs["bulk_labels"].cat.categories)


def test_annotate_command_trains_saves_and_annotates(pbmc_small, tmp_path):
    ref_path, query_path, out = tmp_path / "ref.h5ad", tmp_path / "query.h5ad", tmp_path / "out.h5ad"
    pbmc_small.write_h5ad(ref_path)
    query = pbmc_small[::3].copy()
    del query.obs["cell_type"]
    query.write_h5ad(query_path)
    args = ["annotate", "--reference", str(ref_path), "--labels-key", "cell_type", "--query", str(query_path)]
    assert main([*args, "--out", str(out), "--max-epochs", "1", "--save-model", str(tmp_path / "model")]) == 0
    annotated = ad.read_h5ad(out)
    assert annotated.obs["sctransformer_prediction"].notna().all()
    assert annotated.obsm["X_sctransformer"].shape == (query.n_obs, 64)
    # reuse the saved model
    out2 = tmp_path / "out2.h5ad"
    assert main(["annotate", "--model", str(tmp_path / "model"), "--query", str(query_path), "--out", str(out2)]) == 0
    again = ad.read_h5ad(out2)
    assert (again.obs["sctransformer_prediction"] == annotated.obs["sctransformer_prediction"]).all()
    # the same query with Unknown calls: the reference's own cells are typical of it
    out3 = tmp_path / "out3.h5ad"
    args = ["annotate", "--model", str(tmp_path / "model"), "--query", str(query_path), "--out", str(out3)]
    assert main([*args, "--novelty-threshold", "0.99"]) == 0
    flagged = ad.read_h5ad(out3).obs["sctransformer_prediction"].astype(str) == "Unknown"
    assert flagged.mean() < 0.1
    # a query measuring 3% of the panel is refused unless --min-panel-match allows it
    from sctransformer_tools.model._save import read_model_folder

    saved = read_model_folder(tmp_path / "model", "SCTransformer")
    panel = saved.spec.genes
    few = panel[: int(0.03 * len(panel))]
    sparse_query_path = tmp_path / "few_genes.h5ad"
    query[:, query.var_names.isin(few) | ~query.var_names.isin(panel)].copy().write_h5ad(sparse_query_path)
    args = ["annotate", "--model", str(tmp_path / "model"), "--query", str(sparse_query_path)]
    with pytest.raises(ValueError, match=r"below min_panel_match=5%"):
        main([*args, "--out", str(tmp_path / "out4.h5ad")])
    with pytest.warns(UserWarning, match="treat the calls as provisional"):
        assert main([*args, "--out", str(tmp_path / "out4.h5ad"), "--min-panel-match", "0.01"]) == 0
    assert ad.read_h5ad(tmp_path / "out4.h5ad").uns["sctransformer_query"]["panel_match_ratio"] < 0.05
