"""tl (TF programs, attention vs ULM activity, gene-embedding audit) and pl on a tiny pbmc3k model."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

import sctransformer_tools as sct
from sctransformer_tools.pl._utils import save_path

N_PERM = 50


@pytest.fixture(scope="module")
def fitted(pbmc3k_full):
    """A 1-layer, d_model=16 model trained 2 epochs on ~600 pbmc3k cells (CollecTRI), with attention and predictions."""
    rng = np.random.default_rng(0)
    labels = pbmc3k_full.obs["cell_type"]
    idx = np.concatenate([rng.permutation(np.flatnonzero(labels == ct))[:80] for ct in labels.cat.categories])
    adata = pbmc3k_full[np.sort(idx)].copy()
    sct.SCTransformer.setup_anndata(adata, labels_key="cell_type", regulons="collectri")
    # a d_model=16 model gains nothing from intra-op threads, and they stall badly when the cores are shared
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = sct.SCTransformer(adata, d_model=16, n_layers=1, n_heads=2, n_top_genes=0)
        model.train(max_epochs=2, enable_progress_bar=False)
        model.get_attention(adata, groupby="cell_type", batch_size=256)
        model.predict(adata, unknown_threshold=0.15)
        latent = model.get_latent_representation(adata)
    finally:
        torch.set_num_threads(threads)
    adata.obsm["X_umap"] = latent[:, :2]  # stands in for a UMAP: the wrapper is tested, not umap-learn
    return model, adata


@pytest.fixture(scope="module")
def activity(fitted):
    _, adata = fitted
    table = sct.tl.compare_tf_activity(adata, "cell_type", n_top=10, n_permutations=N_PERM)
    return table, adata.uns["sctransformer_tf_activity"]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ------------------------------------------------------------------ tl.tf_programs
def test_tf_programs_ranks_and_specificity(fitted):
    _, adata = fitted
    groups = list(sct.tl.attention_tables(adata)["tf_scores"].columns)
    n_tfs = len(sct.tl.attention_tables(adata)["tf_scores"])
    top = sct.tl.tf_programs(adata, n_top=5)
    assert list(top["group"].cat.categories) == groups and len(top) == 5 * len(groups)
    for _, frame in top.groupby("group", observed=True):
        assert frame["rank"].tolist() == [1, 2, 3, 4, 5]
        assert frame["specificity"].is_monotonic_decreasing
    full = sct.tl.tf_programs(adata, n_top=None)
    assert len(full) == n_tfs * len(groups)
    for _, frame in full.groupby("group", observed=True):
        assert sorted(frame["rank"]) == list(range(1, n_tfs + 1))
    # score minus the mean over the other groups: sums to 0 over groups for every TF; z-scores centre on 0
    wide = full.pivot(index="tf", columns="group", values="specificity")
    np.testing.assert_allclose(wide.sum(1), 0, atol=1e-6)
    np.testing.assert_allclose(full.pivot(index="tf", columns="group", values="zscore").mean(1), 0, atol=1e-9)
    # the score column is the attention mass get_attention wrote
    tf_scores = sct.tl.attention_tables(adata)["tf_scores"]
    row = full.iloc[0]
    assert row["score"] == pytest.approx(tf_scores.loc[row["tf"], row["group"]])
    assert ((full["coverage"] >= 0) & (full["coverage"] <= 1)).all() and (full["n_targets"] >= 1).all()
    by_mass = sct.tl.tf_programs(adata, n_top=3, by="mass")
    for group, frame in by_mass.groupby("group", observed=True):
        assert frame["tf"].tolist() == tf_scores[group].sort_values(ascending=False, kind="stable").index[:3].tolist()


def test_tf_programs_errors(fitted, pbmc_small):
    _, adata = fitted
    with pytest.raises(KeyError, match=r"model.get_attention\(adata, groupby=...\)"):
        sct.tl.tf_programs(pbmc_small)
    with pytest.raises(ValueError, match="by must be one of"):
        sct.tl.tf_programs(adata, by="hubness")
    with pytest.raises(KeyError, match="not groups of"):
        sct.tl.tf_programs(adata, groups=["Neuron"])


# ------------------------------------------------------------------ tl.compare_tf_activity
def test_compare_tf_activity_table(fitted, activity, tmp_path):
    _, adata = fitted
    table, stored = activity
    groups = list(sct.tl.attention_tables(adata)["tf_scores"].columns)
    assert table["group"].tolist() == groups
    assert np.isfinite(table["spearman"]).all() and table["spearman"].between(-1, 1).all()
    assert table["overlap"].between(0, 10).all() and (table["n_tfs"] > 50).all()
    assert table["overlap_pvalue"].between(1 / (N_PERM + 1), 1).all()
    # the null of the overlap of two top-10 lists among n TFs has the hypergeometric mean 100 / n
    np.testing.assert_allclose(table["overlap_null_mean"], table["overlap_expected"], atol=0.15)
    assert stored["table"] is table and stored["params"]["groupby"] == "cell_type"
    assert stored["params"]["n_permutations"] == N_PERM
    # what it stores can be written to h5ad
    ad.AnnData(uns={"sctransformer_tf_activity": stored}).write_h5ad(tmp_path / "stored.h5ad")
    # ULM on the real counts finds the textbook regulators: PAX5 in B cells, CEBPB in monocytes
    act = stored["activity"].pivot(index="tf", columns="group", values="activity")
    assert act.loc["PAX5"].idxmax() == "B"
    assert act.loc["CEBPB"].idxmax() in ("CD14+ Mono", "FCGR3A+ Mono")
    # the user's counts are untouched
    assert float(adata.X.max()) > 100 and np.allclose(adata.X.data, np.round(adata.X.data))


def test_compare_tf_activity_planted_agreement(fitted, activity):
    """Attention scores replaced by the ULM activities themselves: perfect agreement, significant overlap."""
    _, adata = fitted
    _, stored = activity
    planted = dict(adata.uns["sctransformer_attention"])
    act = stored["activity"].pivot(index="tf", columns="group", values="activity")[list(planted["groups"])]
    planted["tfs"] = act.index.to_numpy(dtype=object)
    planted["tf_scores"] = (act - act.to_numpy().min() + 1.0).to_numpy()  # a positive shift: same specificity
    adata.uns["planted_attention"] = planted
    try:
        table = sct.tl.compare_tf_activity(
            adata, "cell_type", key="planted_attention", n_top=10, n_permutations=N_PERM, key_added="planted_cmp"
        )
    finally:
        del adata.uns["planted_attention"]
    np.testing.assert_allclose(table["spearman"], 1.0)
    assert (table["overlap"] == 10).all()
    np.testing.assert_allclose(table["overlap_pvalue"], 1 / (N_PERM + 1))
    assert (table["top_attention"] == table["top_activity"]).all()


def test_compare_tf_activity_errors(fitted):
    _, adata = fitted
    with pytest.raises(KeyError, match="groupby column 'tissue'"):
        sct.tl.compare_tf_activity(adata, "tissue", n_permutations=0)
    with pytest.raises(KeyError, match="get_attention"):
        sct.tl.compare_tf_activity(adata, "cell_type", key="nothing_here")


# ------------------------------------------------------------------ tl.gene_embedding_audit
def test_gene_states_are_token_states_averaged_over_cells(fitted):
    """get_gene_states: at the last depth, each gene's state is the mean of its tokens' final states over the cells
    read that express it (checked against encode(return_hidden=True))."""
    model, adata = fitted
    cells = np.arange(0, adata.n_obs, 7)
    states = model.get_gene_states(adata, indices=cells, batch_size=64)
    assert sorted(states) == [0, 1] and states[0].index.equals(states[1].index)
    module = model.module
    sums = torch.zeros(len(model.panel_), module.cls.numel(), dtype=torch.float64)
    counts = torch.zeros(len(model.panel_), dtype=torch.float64)

    def read(batch):
        out = module.encode(batch, return_hidden=True)
        sums.index_add_(0, out.tokens.gene_ids, out.hidden.double())
        counts.index_add_(0, out.tokens.gene_ids, torch.ones(len(out.tokens.gene_ids), dtype=torch.float64))

    with model.reader.read(adata) as data:
        model.reader.map_batches(data.adata, read, cells, 64)
    seen = (counts > 0).numpy()
    assert len(states[1]) == int(seen.sum())
    expected = (sums[seen] / counts[seen, None]).numpy()
    np.testing.assert_allclose(states[1].to_numpy(), expected, rtol=1e-4, atol=1e-5)
    assert list(states[1].index) == list(model.panel_["symbol"].to_numpy()[seen])
    with pytest.raises(ValueError, match="depths must lie in"):
        model.get_gene_states(adata, depths=[2])


def test_gene_embedding_audit_trained(fitted):
    """The paper's test on the identity table and every depth's contextual states, markers included."""
    model, adata = fitted
    audit = sct.tl.gene_embedding_audit(
        model, adata, n_permutations=20, markers=adata, groupby="cell_type", marker_method="t-test", n_markers=20
    )
    summary = audit["summary"]
    assert list(summary["representation"].unique()) == ["gene_embedding", "input", "block_1"]
    for tests in summary.groupby("representation")["test"].apply(list):
        assert tests == ["tf_vs_target", "marker_clustering"]
    assert summary["auroc"].between(0, 1).all() and (summary["n_permutations"] == 20).all()
    for representation, tests in audit["null"].items():
        for test, null in tests.items():
            assert null.shape == (20,) and ((null >= 0) & (null <= 1)).all(), (representation, test)
            assert abs(null.mean() - 0.5) < 0.1
    assert summary["p_value"].between(1 / 21, 1).all()
    assert audit["coordinates"]["gene_embedding"].shape == (len(model.panel_), 6)
    assert audit["coordinates"]["block_1"].shape[1] == 6
    tf = summary[summary["test"] == "tf_vs_target"]
    assert (tf["n_positive"] > 2).all() and (tf["n_negative"] > tf["n_positive"]).all()
    assert set(audit["markers"]) == set(adata.obs["cell_type"].astype(str))
    # the earlier test, by its own name, on the identity table alone
    old = sct.tl.gene_embedding_audit(model, test="pairwise_proximity", contextual=False, n_permutations=5)
    assert old["summary"]["test"].tolist() == ["tf_target"] and old["coordinates"]["gene_embedding"].shape[1] == 16
    row = old["summary"].iloc[0]
    assert row["n_positive"] == row["n_negative"] == len(model.regulon_edges())


def _synthetic(separable: bool, seed: int = 0):
    """400 genes (40 TFs, 200 targets, 160 others) in 16 dimensions: three tight classes, or white noise."""
    rng = np.random.default_rng(seed)
    n_tf, n_target, n_other = 40, 200, 160
    genes = [f"TF{i}" for i in range(n_tf)] + [f"T{i}" for i in range(n_target)] + [f"G{i}" for i in range(n_other)]
    net = pd.DataFrame(
        {"source": [f"TF{i % n_tf}" for i in range(600)], "target": [f"T{i % n_target}" for i in range(600)]}
    ).drop_duplicates()
    kind = np.r_[np.zeros(n_tf, dtype=int), np.ones(n_target, dtype=int), np.full(n_other, 2)]
    centres = rng.normal(size=(3, 16)) * 3 if separable else np.zeros((3, 16))
    frame = pd.DataFrame(centres[kind] + rng.normal(size=(len(genes), 16)), index=genes)
    markers = {"A": genes[240:250], "B": genes[250:260], "C": genes[260:270]}
    if separable:  # each type's markers at a point of their own
        for names in markers.values():
            frame.loc[names] = rng.normal(size=16) * 3 + 0.1 * rng.normal(size=(len(names), 16))
    return frame, net, markers


def test_gene_embedding_audit_separates_planted_classes():
    """Synthetic representations: TFs separable from their targets give AUROC >= 0.95 (and markers that cluster
    likewise); white noise gives ~0.5. The pairwise test, which asks whether a TF sits near its targets, does not
    see two separated classes (each pair straddles them): the two tests answer different questions."""
    separable, net, markers = _synthetic(True)
    noise, _, _ = _synthetic(False)
    audit = sct.tl.gene_embedding_audit(
        embeddings={"separable": separable, "noise": noise}, regulons=net, markers=markers, n_permutations=50
    )
    summary = audit["summary"].set_index(["representation", "test"])
    assert summary.loc[("separable", "tf_vs_target"), "auroc"] >= 0.95
    assert summary.loc[("separable", "tf_vs_target"), "p_value"] == pytest.approx(1 / 51)
    assert summary.loc[("separable", "marker_clustering"), "auroc"] >= 0.95
    assert summary.loc[("separable", "tf_vs_target"), "n_positive"] == 40
    assert summary.loc[("separable", "tf_vs_target"), "n_negative"] == 200
    for test in ("tf_vs_target", "marker_clustering"):
        assert abs(summary.loc[("noise", test), "auroc"] - 0.5) < 0.12, test
        assert summary.loc[("noise", test), "p_value"] > 0.05
        assert abs(summary.loc[("noise", test), "null_mean"] - 0.5) < 0.05
    # random embeddings over several draws: centred on 0.5
    draws = [
        sct.tl.gene_embedding_audit(
            embeddings={"noise": _synthetic(False, seed)[0]}, regulons=net, n_permutations=0, seed=seed
        )["summary"]["auroc"].iloc[0]
        for seed in range(5)
    ]
    assert abs(np.mean(draws) - 0.5) < 0.06, draws
    pairwise = sct.tl.gene_embedding_audit(
        embeddings={"separable": separable}, regulons=net, test="pairwise_proximity", n_permutations=20
    )
    assert pairwise["summary"]["auroc"].iloc[0] < 0.75


def test_gene_embedding_audit_planted_geometry(fitted):
    """Pairwise proximity: targets given their TF's embedding are found (AUROC ~1); shuffled genes are not (~0.5)."""
    model, _ = fitted
    edges = model.spec_.edge_positions()
    # one TF per target, targets that are not TFs themselves: each TF and its targets share a point
    planted = edges[~edges["target_idx"].isin(edges["source_idx"])].drop_duplicates("target_idx")
    weight = model.module.gene_embedding.weight
    saved = weight.detach().clone()
    gen = torch.Generator().manual_seed(0)
    new = torch.randn(saved.shape, generator=gen)
    src = torch.as_tensor(planted["source_idx"].to_numpy())
    tgt = torch.as_tensor(planted["target_idx"].to_numpy())
    new[tgt] = new[src] + 0.05 * torch.randn(len(tgt), saved.shape[1], generator=gen)
    net = pd.DataFrame({"source": planted["source"], "target": planted["target"]})
    try:
        with torch.no_grad():
            weight.copy_(new)
        for method, negatives in [("spectral", "random"), ("pca", "random"), ("spectral", "tf_matched")]:
            audit = sct.tl.gene_embedding_audit(
                model,
                test="pairwise_proximity",
                contextual=False,
                method=method,
                regulons=net,
                n_permutations=20,
                negatives=negatives,
            )
            row = audit["summary"].iloc[0]
            assert row["n_positive"] == len(planted)
            assert row["auroc"] > 0.95, (method, row["auroc"])
            assert abs(row["null_mean"] - 0.5) < 0.05 and row["p_value"] == pytest.approx(1 / 21)
    finally:
        with torch.no_grad():
            weight.copy_(saved)


def test_gene_embedding_audit_errors(fitted):
    model, _ = fitted
    with pytest.raises(ValueError, match="method must be one of"):
        sct.tl.gene_embedding_audit(model, method="tsne")
    with pytest.raises(ValueError, match="test must be one of"):
        sct.tl.gene_embedding_audit(model, test="pairs")
    with pytest.raises(ValueError, match=">= 2 cell types"):
        sct.tl.gene_embedding_audit(
            model, contextual=False, n_permutations=0, markers={"B": ["NOT_A_GENE", "ALSO_NOT"]}
        )
    with pytest.raises(TypeError, match="trained SCTransformer"):
        sct.tl.gene_embedding_audit(object())
    with pytest.raises(ValueError, match="Give regulons"):
        sct.tl.gene_embedding_audit(embeddings={"x": pd.DataFrame(np.zeros((3, 2)))})


# ------------------------------------------------------------------ pl
@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("attention_heatmap", {"n_top": 3}),
        ("attention_heatmap", {"n_top": 2, "standardize": False, "by": "mass"}),
        ("tf_network", {"group": "B", "n_top_edges": 15}),
        ("top_regulators", {"n_top": 2}),
        ("confidence", {"groupby": "cell_type", "threshold": 0.15}),
        ("confidence", {}),
    ],
)
def test_plots_return_axes_and_save(fitted, tmp_path, name, kwargs):
    _, adata = fitted
    fn = getattr(sct.pl, name)
    ax = fn(adata, show=False, **kwargs)
    assert isinstance(ax, Axes)
    out = tmp_path / "sub" / f"{name}.png"
    assert fn(adata, show=False, save=out, **kwargs) is not None
    assert out.stat().st_size > 1000
    # drawing into a given Axes
    _, given = plt.subplots()
    assert fn(adata, show=False, ax=given, **kwargs) is given


def test_training_history_plot(fitted, tmp_path):
    model, _ = fitted
    fig = sct.pl.training_history(model, show=False, save=tmp_path / "history.pdf")
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    assert (tmp_path / "history.pdf").stat().st_size > 1000
    assert [len(ax.get_lines()) for ax in fig.axes] == [2, 2, 2]  # train and validation
    with pytest.raises(KeyError, match="not in model.history"):
        sct.pl.training_history(model, metrics=["auprc"], show=False)


def test_umap_confidence_and_scanpy_style_save(fitted, tmp_path):
    import scanpy as sc

    _, adata = fitted
    figdir = sc.settings.figdir
    sc.settings.figdir = tmp_path
    try:
        axes = sct.pl.umap_confidence(adata, show=False, save="_pbmc.png")
        assert len(axes) == 2 and all(isinstance(ax, Axes) for ax in axes)
        assert (tmp_path / "umap_confidence_pbmc.png").exists()
        sct.pl.tf_network(adata, "CD14+ Mono", show=False, save=True)
        assert (tmp_path / f"tf_network_CD14+ Mono.{sc.settings.file_format_figs}").exists()
    finally:
        sc.settings.figdir = figdir


def test_plot_errors(fitted, pbmc_small):
    _, adata = fitted
    with pytest.raises(KeyError, match=r"model.predict\(adata\)"):
        sct.pl.confidence(pbmc_small)
    with pytest.raises(KeyError, match="get_attention"):
        sct.pl.attention_heatmap(pbmc_small)
    with pytest.raises(KeyError, match="not a group"):
        sct.pl.tf_network(adata, "Neuron")
    bare = adata.copy()
    del bare.obsm["X_umap"]
    with pytest.raises(KeyError, match="sc.tl.umap"):
        sct.pl.umap_confidence(bare)


def test_save_path_conventions(tmp_path):
    import scanpy as sc

    figdir = sc.settings.figdir
    sc.settings.figdir = tmp_path
    try:
        ext = sc.settings.file_format_figs
        assert save_path(True, "heatmap") == tmp_path / f"heatmap.{ext}"
        assert save_path("_pbmc", "heatmap") == tmp_path / f"heatmap_pbmc.{ext}"
        assert save_path("_pbmc.pdf", "heatmap") == tmp_path / "heatmap_pbmc.pdf"
        assert save_path(tmp_path / "a" / "x.svg", "heatmap") == tmp_path / "a" / "x.svg"
        assert save_path("out/x.png", "heatmap") == Path("out/x.png")
    finally:
        sc.settings.figdir = figdir


def test_results_with_any_group_name_write_to_h5ad(pbmc68k, tmp_path):
    """Issue 23.5: group names are data, never keys: a name with "/" (Allen's "L2/3 IT") writes without a warning."""
    import warnings

    pbmc68k.obs["group"] = pbmc68k.obs["bulk_labels"].astype(str).str.replace(" ", "/")
    sct.SCTransformer.setup_anndata(pbmc68k, labels_key="bulk_labels")
    model = sct.SCTransformer(pbmc68k, d_model=16, n_layers=1, n_heads=2, n_top_genes=0)
    model.train(max_epochs=1, enable_progress_bar=False)
    model.get_attention(pbmc68k, groupby="group", batch_size=256)
    assert any("/" in g for g in sct.tl.attention_tables(pbmc68k)["scores"].columns)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        pbmc68k.write_h5ad(tmp_path / "attention.h5ad")
    back = ad.read_h5ad(tmp_path / "attention.h5ad")
    pd.testing.assert_frame_equal(
        sct.tl.attention_tables(back)["tf_scores"], sct.tl.attention_tables(pbmc68k)["tf_scores"], check_dtype=False
    )
