"""The gene panel (grn/_panel.py) on pbmc3k and real CollecTRI."""

from __future__ import annotations

import pytest

from sctransformer_tools import grn


def test_panel_on_pbmc3k_keeps_tfs_beyond_hvgs(pbmc3k_full, collectri):
    net = grn.validate_regulons(collectri)
    panel = grn.select_panel(pbmc3k_full.var_names, net)
    # 3,869 genes / 18,812 edges when autoregulation is counted; self-edges are covered by self-loops
    n_self = int((net["source"].eq(net["target"]) & net["source"].isin(pbmc3k_full.var_names)).sum())
    assert panel.summary()["regulon_edges"] == 18_812 - n_self == 18_542
    assert len(panel) == 3_866
    assert panel.is_tf.sum() == 685
    # TFs are rarely highly variable: a panel restricted to HVGs would keep few edges
    import scanpy as sc

    tmp = pbmc3k_full.copy()
    sc.pp.highly_variable_genes(tmp, n_top_genes=2000, flavor="seurat_v3")
    hvg = tmp.var_names[tmp.var["highly_variable"]]
    both_hvg = grn.regulon_edges_in(hvg, net)
    assert len(both_hvg) < 0.1 * panel.summary()["regulon_edges"]
    widened = grn.select_panel(pbmc3k_full.var_names, net, extra_genes=hvg)
    assert set(hvg) <= set(widened.genes) and set(panel.genes) <= set(widened.genes)
    assert widened.summary()["extra_genes"] == len(widened) - 3_866


def test_panel_refuses_data_without_overlap(collectri):
    ensembl = [f"ENSG{i:011d}" for i in range(100)]
    with pytest.raises(ValueError, match="No regulon edge.*Ensembl IDs.*gene_symbols"):
        grn.select_panel(ensembl, grn.validate_regulons(collectri))


def test_panel_matches_case_insensitively(collectri):
    net = grn.validate_regulons(collectri)
    tf = net.loc[net["source"] == "PAX5", "target"].iloc[0]
    genes = ["Pax5", tf.capitalize(), "Zzz9"]  # mouse-style capitalisation of a real PAX5 edge
    panel = grn.select_panel(genes, net)
    assert list(panel.genes) == genes[:2] and panel.edges["source"].tolist() == ["Pax5"]
