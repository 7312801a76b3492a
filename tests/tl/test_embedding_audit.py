"""The gene-embedding audit (tl/_embedding_audit.py) on a tiny pbmc3k model and planted embeddings."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
import torch

import sctransformer_tools as sct


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


def test_gene_embedding_audit_keeps_the_users_torch_threads():
    """scanpy's marker statistics run on numba, whose OpenMP layer sets the thread count torch shares when it
    starts: the audit gives torch back the user's setting. A fresh process, where numba's layer has not started."""
    import subprocess
    import sys

    code = (
        "import torch; torch.set_num_threads(1)\n"
        "import sctransformer_tools as sct\n"
        "model, adata = sct.ds.toy_model()\n"
        "sct.tl.gene_embedding_audit(model, adata, contextual=False, n_permutations=2, markers=adata, "
        "groupby='bulk_labels')\n"
        "print('threads', torch.get_num_threads())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "threads 1" in out.stdout, out.stdout


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
