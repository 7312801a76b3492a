"""Regulons, gene panel and masks on real CollecTRI / DoRothEA and pbmc3k."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sctransformer_tools import grn


def test_load_collectri_from_cache_matches_file(collectri):
    net = grn.load_regulons("collectri")
    assert list(net.columns[:3]) == ["source", "target", "weight"]
    assert len(net) == len(collectri) == 43_178
    assert set(net["weight"].unique()) == {1.0, -1.0}


def test_dorothea_levels_filter(collectri):  # collectri: the real files must be there (the fixture has no B level)
    abc = grn.load_regulons("dorothea")
    a = grn.load_regulons("dorothea", levels="A")
    assert set(abc["confidence"]) == {"A", "B", "C"}
    assert len(abc) == 13_223  # the README's count of levels A-C
    assert set(a["confidence"]) == {"A"} and len(a) < len(abc)
    with pytest.raises(ValueError, match="confidence letters"):
        grn.load_regulons("dorothea", levels="AZ")


def test_regulons_from_dataframe_and_files(tmp_path, collectri):
    sub = collectri.head(50)
    assert grn.load_regulons(sub).shape[0] == 50
    csv, tsv = tmp_path / "net.csv", tmp_path / "net.tsv"
    sub.to_csv(csv, index=False)
    sub.to_csv(tsv, index=False, sep="\t")
    for path in (csv, tsv, str(csv)):
        net = grn.load_regulons(path)
        assert net[["source", "target"]].equals(sub[["source", "target"]].reset_index(drop=True))


def test_regulon_table_errors(tmp_path):
    with pytest.raises(ValueError, match="lacks the column.*'source'.*rename"):
        grn.load_regulons(pd.DataFrame({"tf": ["PAX5"], "target": ["CD19"]}))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        grn.load_regulons(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="neither a known resource"):
        grn.load_regulons("trrustt")
    with pytest.raises(ValueError, match="missing source or target"):
        grn.load_regulons(pd.DataFrame({"source": ["PAX5", None], "target": ["CD19", "CD79A"]}))


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


@pytest.fixture(scope="module")
def panel(pbmc3k_full, collectri):
    return grn.select_panel(pbmc3k_full.var_names, grn.validate_regulons(collectri))


def test_grn_mask_follows_regulons(panel):
    mask = grn.build_mask(len(panel), panel.edges)
    dense = mask.to_dense()
    # a target's query reads its TFs, nothing else besides itself
    assert dense[panel.edges["target_idx"], panel.edges["source_idx"]].all()
    assert dense.sum() == len(panel.edges) + len(panel)
    s = mask.summary()
    assert s["edges"] == 18_542 and s["genes"] == 3_866 and s["tfs"] == 685
    assert s["density"] == pytest.approx(18_542 / (3_866 * 3_865))


@pytest.mark.parametrize("direction", ["tf_to_target", "both"])
def test_controls_have_the_same_density(panel, direction):
    ref = grn.build_mask(len(panel), panel.edges, direction=direction)
    rand = grn.build_mask(len(panel), panel.edges, kind="random", direction=direction, seed=1)
    shuf = grn.build_mask(len(panel), panel.edges, kind="shuffled", direction=direction, seed=1)
    dense = grn.build_mask(len(panel), panel.edges, kind="dense", direction=direction)
    assert rand.n_pairs == ref.n_pairs
    assert abs(shuf.n_pairs - ref.n_pairs) <= 0.02 * ref.n_pairs  # reciprocal regulon edges may differ
    assert dense.density == 1.0
    # controls differ from the prior
    overlap = len({tuple(p) for p in rand.pairs} & {tuple(p) for p in ref.pairs})
    assert overlap < 0.01 * ref.n_pairs
    if direction == "both":
        d = rand.to_dense()
        assert (d == d.T).all()


def test_shuffled_preserves_every_degree(panel):
    ref = grn.build_mask(len(panel), panel.edges).to_dense()
    shuf = grn.build_mask(len(panel), panel.edges, kind="shuffled", seed=7).to_dense()
    assert (ref.sum(0) == shuf.sum(0)).all()  # each TF keeps its number of targets
    assert (ref.sum(1) == shuf.sum(1)).all()  # each target keeps its number of TFs
    assert (ref != shuf).sum() > 0.5 * ref.sum()


def test_random_and_shuffled_are_reproducible(panel):
    for kind in ("random", "shuffled"):
        a = grn.build_mask(len(panel), panel.edges, kind=kind, seed=3)
        b = grn.build_mask(len(panel), panel.edges, kind=kind, seed=3)
        c = grn.build_mask(len(panel), panel.edges, kind=kind, seed=4)
        assert np.array_equal(a.pairs, b.pairs) and not np.array_equal(a.pairs, c.pairs)


def test_unknown_mask_and_direction(panel):
    with pytest.raises(ValueError, match="Unknown mask 'grnn'"):
        grn.build_mask(len(panel), panel.edges, kind="grnn")
    with pytest.raises(ValueError, match="Unknown direction"):
        grn.build_mask(len(panel), panel.edges, direction="target_to_tf")


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No cache (an empty cache folder) and no internet (every download fails), as on a fresh offline machine."""
    from sctransformer_tools.grn import _regulons

    calls = []

    def no_network(resource, organism):
        calls.append((resource, organism))
        raise ConnectionError("Failed to resolve 'zenodo.org'")

    monkeypatch.setenv(grn.DATA_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(_regulons, "_download", no_network)
    monkeypatch.setattr(_regulons, "_UNREACHABLE", {})
    return calls


def test_offline_collectri_falls_back_to_the_shipped_snapshot_in_one_log_line(offline, package_log, tmp_path):
    from sctransformer_tools.grn._snapshot import SNAPSHOT_DATE, read_snapshot

    net = grn.load_regulons("collectri")
    again = grn.load_regulons("collectri")
    lines = [r.getMessage() for r in package_log.records if "regulons" in r.getMessage()]
    assert len(lines) == 1, lines
    assert f"snapshot of {SNAPSHOT_DATE}" in lines[0] and "ConnectionError" in lines[0]
    assert "For the current release, run once with internet access" in lines[0] and grn.DATA_ENV in lines[0]
    assert offline == [("collectri", "human")]  # one try per process: the second call reads the snapshot at once
    expected = grn.validate_regulons(read_snapshot("collectri", "human"))
    pd.testing.assert_frame_equal(net, expected)
    pd.testing.assert_frame_equal(again, expected)
    assert len(net) == 43_178 and list(net.columns) == ["source", "target", "weight"]
    assert not (tmp_path / "cache").exists()  # the snapshot is not cached: online, the current release is fetched


def test_offline_dorothea_says_what_to_do(offline):
    for _ in range(2):  # the first failure and the later calls of the same process say the same
        with pytest.raises(RuntimeError, match=r"does not ship.*GPL-3.*'collectri' works offline.*cached in"):
            grn.load_regulons("dorothea")
    with pytest.raises(RuntimeError, match=r"SCTRANSFORMER_TOOLS_DATA to a folder holding 'collectri_mouse.csv.gz'"):
        grn.load_regulons("collectri", organism="mouse")  # no mouse snapshot ships


def test_online_download_is_cached_and_the_snapshot_left_alone(monkeypatch, tmp_path):
    from sctransformer_tools.grn import _regulons

    current = pd.DataFrame({"source": ["PAX5"], "target": ["CD19"], "weight": [1.0]})
    monkeypatch.setenv(grn.DATA_ENV, str(tmp_path))
    monkeypatch.setattr(_regulons, "_UNREACHABLE", {})
    monkeypatch.setattr(_regulons, "_download", lambda resource, organism: current)
    pd.testing.assert_frame_equal(grn.load_regulons("collectri"), current)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "collectri_human.csv.gz"), current)


def test_the_snapshot_is_package_data_found_by_importlib_resources():
    from importlib.resources import files

    from sctransformer_tools.grn._snapshot import SNAPSHOTS, snapshot_file

    name = SNAPSHOTS["collectri", "human"]
    data = files("sctransformer_tools.grn").joinpath("data", name)
    assert data.is_file() and snapshot_file("collectri", "human") == data
    assert 100_000 < len(data.read_bytes()) < 400_000  # about 200 KB gzipped


def test_the_snapshot_holds_the_shared_collectri_edges(collectri):  # skipped with a reason without ../shared
    from sctransformer_tools.grn._snapshot import read_snapshot

    snapshot = read_snapshot("collectri", "human")
    pd.testing.assert_frame_equal(snapshot, collectri[["source", "target", "weight"]].astype({"weight": float}))


def test_the_docs_name_the_snapshot_and_its_terms():
    from pathlib import Path

    from sctransformer_tools.grn._snapshot import SNAPSHOT_DATE

    installation = (Path(__file__).resolve().parents[1] / "docs" / "installation.md").read_text()
    for text in (installation, grn.load_regulons.__doc__):
        text = " ".join(text.split())
        for fact in (SNAPSHOT_DATE, "8192729", "Müller-Dott", "CC-BY-4.0", "academic", "GPL-3"):
            assert fact in text, fact
