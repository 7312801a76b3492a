"""The study harness behind benchmarks/evaluate.py: datasets, records, study runs, statistics, report, UMAPs.

The harness is a plain package beside the scripts (``benchmarks/harness``), imported here the way
``benchmarks/evaluate.py`` imports it.
"""

from __future__ import annotations

import doctest
import importlib
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
import torch

import sctransformer_tools as sct

from .conftest import SCRNA, _require

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from harness import attention as _attention  # noqa: E402
from harness.attention import attention_vs_regulons, auroc, sample_non_edges  # noqa: E402
from harness.celltypist_compat import celltypist_compat  # noqa: E402
from harness.datasets import PBMC68K_LABEL_MAP, load_split, map_pbmc68k_labels, stratified_subsample  # noqa: E402
from harness.embedding import embedding_metrics, save_umap  # noqa: E402
from harness.records import (  # noqa: E402
    RECORD_KEYS,
    append_record,
    load_records,
    make_record,
    record_identity,
    umap_file,
)
from harness.report import reading, write_report  # noqa: E402
from harness.stats import paired_comparison, pooled_comparison  # noqa: E402
from harness.study import evaluate  # noqa: E402

# ------------------------------------------------------------------------------------------ metrics


def test_embedding_metrics_planted():
    rng = np.random.default_rng(0)
    centers = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 10.0, 0.0]])
    emb = np.concatenate([c + rng.normal(0, 0.2, (40, 3)) for c in centers])
    labels = np.repeat(["x", "y", "z"], 40)
    good = embedding_metrics(emb, labels)
    assert good["silhouette"] > 0.9
    assert good["ari"] == pytest.approx(1.0)
    assert good["nmi"] == pytest.approx(1.0)
    shuffled = embedding_metrics(emb, rng.permutation(labels))
    assert shuffled["silhouette"] < 0.1 and shuffled["ari"] < 0.2
    assert embedding_metrics(emb, np.repeat("x", len(emb)))["silhouette"] is None


def test_auroc_planted():
    assert auroc([5, 6, 7], [1, 2, 3]) == 1.0
    assert auroc([1, 2, 3], [5, 6, 7]) == 0.0
    assert auroc([1, 1], [1, 1]) == 0.5
    assert auroc([np.nan, 3.0], [1.0]) == 1.0
    assert auroc([], [1.0]) is None


class _FakeModel:
    """What attention_vs_regulons reads from a model: the panel and the prior's edges."""

    def __init__(self, n_genes: int, edges: pd.DataFrame):
        self.panel_ = pd.DataFrame(
            {"symbol": [f"g{i}" for i in range(n_genes)]}, index=[f"g{i}" for i in range(n_genes)]
        )
        self._edges = edges

    def regulon_edges(self) -> pd.DataFrame:
        return self._edges


def test_attention_auroc_planted(monkeypatch):
    """Attention planted high on the regulon edges gives AUROC 1 against non-edges and shuffled edges; the null ~0.5."""
    n_genes, rng = 60, np.random.default_rng(0)
    tfs, targets = np.arange(6), np.arange(6, 60)
    rows = {(int(t), int(rng.choice(targets))) for t in tfs for _ in range(8)}
    edges = pd.DataFrame(sorted(rows), columns=["source_idx", "target_idx"]).assign(weight=1.0)
    edges["source"] = [f"g{i}" for i in edges["source_idx"]]
    edges["target"] = [f"g{i}" for i in edges["target_idx"]]
    true = set(zip(edges["target_idx"], edges["source_idx"], strict=True))

    def planted(model, adata, pairs, **kwargs):
        pairs = np.asarray(pairs)
        hit = np.array([(q, k) in true for q, k in pairs])
        score = np.where(hit, 0.9, 0.1) + rng.uniform(0, 0.05, len(pairs))
        return pd.DataFrame(
            {"query": pairs[:, 0], "key": pairs[:, 1], "n_cells": 10, "mean": score, "mean_present": score}
        )

    monkeypatch.setattr(_attention, "pair_attention_scores", planted)
    out = attention_vs_regulons(_FakeModel(n_genes, edges), adata=None, n_shuffles=3, max_cells=None)
    assert out["attention_auroc"] == 1.0
    assert out["attention_auroc_vs_shuffled"] == 1.0
    assert 0.35 < out["attention_auroc_null"] < 0.65
    assert out["attention_edges_scored"] == len(true)


def test_sample_non_edges_avoids_edges_both_ways():
    edges = np.array([[5, 0], [6, 1]])
    pairs = sample_non_edges(100, np.array([0, 1, 5]), np.array([5, 6, 7]), edges, 10, seed=1)
    codes = {tuple(p) for p in pairs.tolist()}
    assert (5, 0) not in codes and (0, 5) not in codes and (6, 1) not in codes
    assert all(q != k for q, k in codes) and len(codes) == len(pairs)


# ----------------------------------------------------------------------------------------- records


def test_make_record_keys_and_nulls():
    rec = make_record(dataset="d", method="scanvi", seed=1, accuracy=np.float64(0.5), silhouette=float("nan"))
    assert list(rec) == list(RECORD_KEYS)
    assert rec["mask"] is None and rec["regulons"] is None and rec["silhouette"] is None
    assert isinstance(rec["accuracy"], float)
    with pytest.raises(ValueError, match="needs"):
        make_record(dataset="d", method="scanvi")


@pytest.fixture(scope="module")
def tiny_records(pbmc3k_full, tmp_path_factory):
    """Every method on a ~300/150-cell pbmc3k split with a tiny model (1 layer, d_model 16, 1 epoch)."""
    labels = pbmc3k_full.obs["cell_type"]
    idx = stratified_subsample(labels, 450, min_per_class=12, seed=0)
    rng = np.random.default_rng(0)
    test_mask = np.zeros(len(idx), dtype=bool)
    test_mask[rng.permutation(len(idx))[:150]] = True
    adata = pbmc3k_full[idx].copy()
    adata.obs["library_size"] = np.asarray(adata.X.sum(1)).ravel()  # over all genes, before the gene subset
    adata = adata[:, np.argsort(-np.asarray(adata.X.sum(0)).ravel())[:3000]].copy()
    train, test = adata[~test_mask].copy(), adata[test_mask].copy()
    methods = ["sctransformer", "logistic_regression", "scanvi"]
    try:
        import celltypist  # noqa: F401

        methods.append("celltypist")
    except ImportError:
        pass
    out = tmp_path_factory.mktemp("bm")
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models gain nothing from threads, and they stall when the cores are shared
    try:
        with threadpool_limits(1):
            records = evaluate(
                train,
                test,
                "cell_type",
                dataset="tiny",
                methods=methods,
                masks=["grn", "dense"],
                regulons="collectri",
                library_size_key="library_size",
                model_kwargs={"d_model": 16, "n_layers": 1, "n_heads": 2, "n_top_genes": 0, "max_tokens": 64},
                train_kwargs={"max_epochs": 1},
                peer_kwargs={
                    "scanvi": {"scvi_epochs": 1, "scanvi_epochs": 1, "n_top_genes": 300},
                    "logistic_regression": {"n_top_genes": 500},
                    "celltypist": {"max_iter": 100},
                },
                attention_kwargs={"n_shuffles": 2, "max_cells": 60},
                embedding_kwargs={"resolutions": (1.0,)},
                profile="test",
                on_record=lambda r: append_record(out / "evaluation.json", r),
            )
    finally:
        torch.set_num_threads(threads)
    return records, out, methods, (train, test)


def test_evaluate_records_have_required_keys(tiny_records):
    records, out, methods, (_, test) = tiny_records
    assert len(records) == 2 + len(methods) - 1
    for rec in records:
        assert list(rec)[: len(RECORD_KEYS)] == list(RECORD_KEYS)
        assert rec["dataset"] == "tiny" and rec["seed"] == 0
        for key in ("accuracy", "macro_f1", "balanced_accuracy", "silhouette", "ari", "nmi"):
            assert rec[key] is not None and -1 <= rec[key] <= 1, (rec["method"], key)
        assert rec["train_s"] > 0 and rec["peak_mb"] > 0
        assert rec["n_test_scored"] == 150 and rec["n_test_excluded"] == 0
    by = {(r["method"], r["mask"]): r for r in records}
    for method in methods[1:]:  # peers: no mask, no regulons, no attention
        rec = by[(method, None)]
        assert rec["regulons"] is None and rec["attention_auroc"] is None
    assert by[("logistic_regression", None)]["embedding"] == "pca_hvg"
    assert by[("scanvi", None)]["embedding"] == "scanvi_latent"
    grn, dense = by[("sctransformer", "grn")], by[("sctransformer", "dense")]
    assert grn["regulons"] == "collectri" and grn["attention_auroc"] is None
    assert 0 <= dense["attention_auroc"] <= 1 and 0 <= dense["attention_auroc_null"] <= 1
    assert grn["grn_edges_kept"] > 0 and grn["grn_edges_kept"] <= grn["regulon_edges_total"] == 43178
    assert grn["query_panel_match"] == pytest.approx(1.0)
    # top TFs per true cell type vs decoupler ULM, for the models whose attention can fall on regulon edges
    types = test.obs["cell_type"].value_counts()
    for rec in (grn, dense):
        assert rec["tf_activity_types"] == int((types >= 10).sum()) >= 2
        assert -1 <= rec["tf_activity_spearman"] <= 1 and 0 <= rec["tf_overlap_significant"] <= 1
        assert 0 <= rec["tf_top_overlap"] <= 10 and 0 < rec["tf_top_overlap_null"] < 10
        assert rec["tf_activity_tfs"] > 10
    assert "tf_activity_spearman" not in by[("logistic_regression", None)]
    # appended to the JSON file as runs finished, and JSON-clean
    stored = json.loads((out / "evaluation.json").read_text())
    assert [record_identity(r) for r in stored] == [record_identity(r) for r in records]


def test_evaluate_skip_resumes(tiny_records):
    records, _, _, (train, test) = tiny_records
    done = {record_identity(r) for r in records}
    again = evaluate(
        train,
        test,
        "cell_type",
        dataset="tiny",
        methods=["sctransformer", "logistic_regression"],
        masks=["grn", "dense"],
        profile="test",
        skip=lambda identity: record_identity(identity) in done,
    )
    assert again == []


def test_evaluate_maps_the_reference_onto_the_test_cells(tiny_records):
    """Mode "mapping": the record of a query model (whose own training history is kept apart, ``mapping_history_``)."""
    _, _, _, (train, test) = tiny_records
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        (record,) = evaluate(
            train,
            test,
            "cell_type",
            dataset="tiny",
            methods=["sctransformer"],
            masks=["grn"],
            mode="mapping",
            attention=False,
            regulons="collectri",
            library_size_key="library_size",
            model_kwargs={"d_model": 16, "n_layers": 1, "n_heads": 2, "n_top_genes": 0, "max_tokens": 64},
            train_kwargs={"max_epochs": 1},
            embedding_kwargs={"resolutions": (1.0,)},
            profile="test",
            raise_errors=True,
        )
    finally:
        torch.set_num_threads(threads)
    assert record["mode"] == "mapping" and not record.get("error")
    assert 0 <= record["macro_f1"] <= 1 and record["map_s"] > 0 and record["map_epochs"] >= 1
    assert record["epochs"] is None  # the reference's epochs are not the query model's


def test_evaluate_rejects_bad_input(tiny_records):
    _, _, _, (train, test) = tiny_records
    with pytest.raises(ValueError, match="Unknown methods"):
        evaluate(train, test, "cell_type", methods=["svm"])
    with pytest.raises(ValueError, match="Unknown mask"):
        evaluate(train, test, "cell_type", masks=["sparse"])
    with pytest.raises(KeyError, match="no obs column"):
        evaluate(train, test, "celltype")


# ------------------------------------------------------------------------------------------ report


def _fabricated(grn_gain: float) -> list[dict]:
    recs = []
    for seed, noise in zip((0, 1, 2), (0.0, 0.01, -0.01), strict=True):
        for mask, base in (("grn", 0.80 + grn_gain), ("shuffled", 0.80), ("random", 0.79), ("dense", 0.81)):
            extra = {"attention_auroc": 0.6 + noise, "attention_auroc_null": 0.52} if mask == "dense" else {}
            if mask == "grn":
                extra = {
                    "tf_activity_spearman": 0.2 + noise,
                    "tf_top_overlap": 3.0 + 100 * noise,  # 3, 4, 2
                    "tf_top_overlap_null": 1.0,
                    "tf_overlap_significant": 0.5,
                    "tf_activity_types": 8,
                }
            recs.append(
                make_record(
                    dataset="toy",
                    method="sctransformer",
                    mask=mask,
                    regulons="collectri",
                    seed=seed,
                    macro_f1=base + noise + (0.01 * seed if mask == "grn" else 0),
                    accuracy=0.9,
                    train_s=10.0 if mask != "dense" else 50.0,
                    peak_mb=900.0,
                    grn_edges_kept=100,
                    regulon_edges_total=1000,
                    grn_tfs_kept=10,
                    regulon_tfs_total=50,
                    panel_genes=300,
                    density=1e-3,
                    profile="full",
                    split="toy split",
                    **extra,
                )
            )
        recs.append(make_record(dataset="toy", method="logistic_regression", seed=seed, macro_f1=0.85, profile="full"))
    return recs


def test_report_renders_and_follows_the_numbers(tmp_path):
    recs = _fabricated(grn_gain=0.03)
    recs.append(make_record(dataset="toy", method="scanvi", seed=0, profile="full", error="RuntimeError: boom"))
    umap = tmp_path / "umap"
    umap.mkdir()
    rng = np.random.default_rng(0)
    for mask in ("grn", "dense"):
        path = umap_file(
            umap,
            {
                "profile": "full",
                "dataset": "toy",
                "method": "sctransformer",
                "mask": mask,
                "regulons": "collectri",
                "seed": 0,
            },
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            path,
            umap=rng.normal(size=(20, 2)),
            labels=np.repeat(["a", "b"], 10),
            predictions=np.repeat(["a", "b"], 10),
        )
    path = write_report(recs, tmp_path, preamble="Preamble here.", umap_dir=umap)
    text = path.read_text()
    assert "Preamble here." in text and "| toy | sctransformer | grn | collectri | 3 |" in text
    # grn - shuffled per seed: 0.03, 0.04, 0.05 -> 0.040 ± 0.010, 3/3 seeds
    assert "grn (collectri) beats shuffled (collectri) by 0.040 ± 0.010 macro-F1 (3/3 seeds" in text
    assert "+0.030, +0.040, +0.050" in text
    assert "grn (collectri) trails logistic_regression" in text
    assert "AUROC 0.600 ± 0.010" in text and "0.520" in text
    assert "keeps 100 of 1,000 regulon edges (10.0%)" in text
    assert "grn (collectri) vs decoupler ULM activity on the same test cells: 3.000 ± 1.000 shared TFs" in text
    assert "(permutation null 1.000), Spearman 0.200 ± 0.010, overlap beyond chance (p < 0.05) in 50.0% of 8" in text
    assert "toy / scanvi / seed 0: RuntimeError: boom" in text
    for png in ("evaluation_full_macro_f1.png", "evaluation_full_attention_auroc.png", "evaluation_full_umap_toy.png"):
        assert (tmp_path / png).stat().st_size > 1000
    # the reading flips with the data
    flipped = write_report(_fabricated(grn_gain=-0.05), tmp_path / "flip").read_text()  # -0.05, -0.04, -0.03
    assert "grn (collectri) trails shuffled (collectri) by 0.040 ± 0.010 macro-F1 (3/3 seeds" in flipped


def test_paired_comparison_pairs_by_seed():
    recs = _fabricated(grn_gain=0.0)
    recs = [r for r in recs if not (r["mask"] == "shuffled" and r["seed"] == 2)]  # an unpaired seed
    table = paired_comparison(recs)
    row = table[table["comparator"] == "shuffled (collectri)"].iloc[0]
    assert row["seeds"] == [0, 1] and row["n_pairs"] == 2
    assert row["diffs"] == pytest.approx([0.0, 0.01])
    assert set(table["comparator"]) == {
        "shuffled (collectri)",
        "random (collectri)",
        "dense (collectri)",
        "logistic_regression",
    }


def test_merge_records_replaces_same_run(tmp_path):
    path = tmp_path / "r.json"
    append_record(path, make_record(dataset="d", method="scanvi", seed=0, accuracy=0.1))
    append_record(path, make_record(dataset="d", method="scanvi", seed=1, accuracy=0.2))
    records = append_record(path, make_record(dataset="d", method="scanvi", seed=0, accuracy=0.3))
    assert [(r["seed"], r["accuracy"]) for r in records] == [(0, 0.3), (1, 0.2)]
    assert load_records(path) == records


# ------------------------------------------------------------------------------------- datasets


def test_pbmc68k_label_map_covers_intended_labels(pbmc3k_full):
    query = sct.ds.pbmc68k_reduced()
    populations = set(query.obs["bulk_labels"].astype(str))
    assert populations == set(PBMC68K_LABEL_MAP)  # every population decided, none invented
    pbmc3k_types = set(pbmc3k_full.obs["cell_type"].astype(str))
    mapped = {k: v for k, v in PBMC68K_LABEL_MAP.items() if v is not None}
    assert set(mapped.values()) <= pbmc3k_types
    assert {k for k, v in PBMC68K_LABEL_MAP.items() if v is None} == {"CD34+"}
    assert mapped["CD14+ Monocyte"] == "CD14+ Mono" and mapped["CD19+ B"] == "B" and mapped["CD56+ NK"] == "NK"
    assert mapped["CD8+ Cytotoxic T"] == mapped["CD8+/CD45RA+ Naive Cytotoxic"] == "CD8 T"
    assert map_pbmc68k_labels("not a population") is None


def test_cross_study_split(pbmc3k_path):
    split = load_split("pbmc3k_to_pbmc68k", data_dir=SCRNA)
    assert split.train.n_obs == 2638 and split.test.n_obs == 700 - 13  # CD34+ dropped
    assert set(split.test.obs["cell_type"]) <= set(split.train.obs["cell_type"].astype(str))
    assert split.info["query_genes_in_reference"] < split.info["query_genes"] == 765
    assert np.allclose(split.test.obs["library_size"], split.test.obs["n_counts"])
    # both sides on the shared genes; library sizes stay totals over all genes, as the query's n_counts
    assert list(split.train.var_names) == list(split.test.var_names)
    assert split.train.n_vars == split.info["query_genes_in_reference"]
    shared_totals = np.asarray(split.train.X.sum(axis=1)).ravel()
    assert (split.train.obs["library_size"].to_numpy() > shared_totals).all()
    full = load_split("pbmc3k_to_pbmc68k", data_dir=SCRNA, shared_genes=False)
    assert full.train.n_vars == 13714 and full.test.n_vars == 765
    assert np.allclose(full.train.obs["library_size"], split.train.obs["library_size"])


def test_donor_splits_hold_out_whole_donors():
    _require(SCRNA / "darmanis2015_brain.h5ad")
    held = []
    for seed in range(4):
        split = load_split("darmanis2015", seed=seed, data_dir=SCRNA)
        train_donors, test_donors = set(split.train.obs["batch"]), set(split.test.obs["batch"])
        assert not train_donors & test_donors
        held += sorted(test_donors)
    assert len(held) == len(set(held)) == 12  # 4 folds cover the 12 samples once
    _require(SCRNA / "allen_m1_snrna_140genes.h5ad")
    allen = load_split("allen_m1", seed=0, data_dir=SCRNA, max_train_cells=2000, max_test_cells=1000)
    assert set(allen.train.obs["batch"]) == {"H18.30.001"} and set(allen.test.obs["batch"]) == {"H18.30.002"}
    assert (allen.train.obs["cell_type"] == "VLMC").sum() == 23  # rare types kept whole
    assert np.allclose(allen.train.obs["library_size"], allen.train.obs["total_counts_all_genes"])


def test_pooled_comparison_pools_dataset_seed_pairs():
    # toy: grn - shuffled = 0.00, 0.01, 0.02 per seed; toy2: the same shifted by +0.03 -> 6 pairs, 5 wins, 1 tie
    recs = _fabricated(grn_gain=0.0)
    recs += [dict(r, dataset="toy2", macro_f1=r["macro_f1"] + 0.03 * (r["mask"] == "grn")) for r in recs]
    recs += [make_record(dataset="toy3", method="logistic_regression", seed=0, macro_f1=0.5, profile="full")]
    pooled = pooled_comparison(recs)
    row = pooled[pooled["comparator"] == "shuffled (collectri)"].iloc[0]
    assert row["datasets"] == ["toy", "toy2"] and row["n_pairs"] == 6
    assert row["dataset_means"] == pytest.approx([0.01, 0.04])
    assert row["mean"] == pytest.approx(0.025)
    assert (row["wins"], row["losses"], row["ties"]) == (5, 0, 1)
    assert row["sign_p"] == pytest.approx(2 * 0.5**5)
    # a comparison made on one dataset only is not pooled
    assert pooled_comparison(_fabricated(grn_gain=0.0)).empty
    text = "\n".join(reading(recs))
    assert "**All datasets pooled** (full)" in text and "(5/6 pairs, paired t-test" in text


def test_umap_of_more_than_4096_cells(tmp_path):
    # scanpy's approximate kNN (used above 4,096 cells) failed on scipy sparse arrays; Allen M1 has 10,245 test cells
    rng = np.random.default_rng(0)
    labels = np.repeat(["a", "b"], 2100)
    emb = rng.normal(size=(len(labels), 8)) + 4 * (labels == "b")[:, None]
    path = tmp_path / "u.npz"
    save_umap(path, emb, labels, labels, seed=0)
    saved = np.load(path)
    assert saved["umap"].shape == (4200, 2) and np.isfinite(saved["umap"]).all()
    assert list(saved["labels"][:2]) == ["a", "a"]


def test_reading_names_runs_at_another_precision():
    recs = [dict(r, precision="32-true") if r["method"] == "sctransformer" else r for r in _fabricated(0.0)]
    odd = next(r for r in recs if r["mask"] == "dense" and r["seed"] == 2)
    odd["precision"] = "bf16-mixed"  # one run made on a machine with native bfloat16
    text = "\n".join(reading(recs))
    assert "trained at 32-true precision except dense (collectri) seed 2 (bf16-mixed)" in text
    assert "precision except" not in "\n".join(reading(_fabricated(grn_gain=0.0)))


# ------------------------------------------------------------------------------ report without CollecTRI


def test_report_names_regulon_sets_from_the_records(tmp_path):
    """No regulon set is written into the prose: it names the sets the records name, whichever they are."""
    recs = [dict(r, regulons="trrust") if r["regulons"] == "collectri" else r for r in _fabricated(grn_gain=0.03)]
    for seed in (0, 1, 2):
        recs.append(
            make_record(
                dataset="toy",
                method="sctransformer",
                mask="grn",
                regulons="dorothea_ABC",
                seed=seed,
                macro_f1=0.8,
                profile="full",
                grn_edges_kept=50,
                regulon_edges_total=500,
                grn_tfs_kept=5,
                regulon_tfs_total=40,
                panel_genes=300,
                density=1e-3,
            )
        )
    text = write_report(recs, tmp_path).read_text()
    assert "collectri" not in text.lower()
    assert "grn (trrust) beats shuffled (trrust) by 0.040 ± 0.010 macro-F1 (3/3 seeds" in text
    assert "grn (trrust) trails logistic_regression" in text  # peers against the main set: most runs
    assert "grn (trrust) − grn (dorothea_ABC)" in text
    assert "Training the dense control took 5.0x the time of the GRN-masked model (50 s vs 10 s)" in text
    # the main set can be named: the peers are then compared with its grn model
    chosen = write_report(recs, tmp_path / "main", main_regulons="dorothea_ABC").read_text()
    assert "grn (dorothea_ABC) − logistic_regression" in chosen and "grn (trrust) − logistic_regression" not in chosen
    table = paired_comparison(recs, main_regulons="dorothea_ABC")
    assert set(table.loc[table["comparator"] == "logistic_regression", "reference"]) == {"grn (dorothea_ABC)"}


def test_celltypist_needs_the_shim_only_on_new_scikit_learn(pbmc68k_full):
    pytest.importorskip("celltypist", reason="CellTypist is an optional peer")
    from harness.celltypist_compat import needed

    train, test = sct.bm.split(pbmc68k_full, "bulk_labels", test_size=0.3, seed=0)
    if needed():
        with pytest.raises(RuntimeError, match="multi_class"):
            sct.bm.peers.celltypist(train, "bulk_labels", max_iter=100)
    with celltypist_compat():
        fitted = sct.bm.peers.celltypist(train, "bulk_labels", max_iter=100)
    assert sys.modules["celltypist.train"].LogisticRegression.__name__ == "LogisticRegression"  # undone after
    pred = fitted.predict(test)
    assert np.mean(pred == test.obs["bulk_labels"].astype(str).to_numpy()) > 0.6


# ----------------------------------------------------------------------------------- docs and script


@pytest.mark.parametrize(
    "module", ["attention", "celltypist_compat", "datasets", "embedding", "records", "report", "resources", "stats"]
)
def test_harness_docstring_examples(module):
    if module == "datasets":
        _require(SCRNA / "pbmc3k_seurat_labels.h5ad")
    mod = importlib.import_module(f"harness.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0


def test_evaluate_script_renders_a_report(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("evaluate_script", ROOT / "benchmarks" / "evaluate.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.PROFILES["full"]["train_kwargs"] == {
        "max_epochs": 30,
        "lr": 2e-3,
        "batch_size": 64,
        "weight_averaging": True,
    }
    (tmp_path / "evaluation.json").write_text(json.dumps(_fabricated(grn_gain=0.03)))
    monkeypatch.setattr(sys, "argv", ["evaluate.py"])
    script.main(["--report-only", "--out-dir", str(tmp_path)])
    text = (tmp_path / "evaluation.md").read_text()
    assert "grn (collectri) beats shuffled (collectri) by 0.040 ± 0.010" in text
    assert (tmp_path / "evaluation_full_macro_f1.png").stat().st_size > 1000


def test_a_umap_leaves_torch_on_the_threads_it_was_given(tmp_path):
    """numba's OpenMP layer (umap) sets the OpenMP thread count torch shares; ``save_umap`` gives torch its own back.

    Without this, every ``--threads 1`` run after the first UMAP of a benchmark process trained on every core.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rng = np.random.default_rng(0)
        labels = np.array(["a", "b"] * 100)
        save_umap(tmp_path / "umap.npz", rng.normal(size=(200, 8)), labels, labels, seed=0)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)


def test_use_threads_holds_through_numba():
    """``use_threads(1)`` keeps torch on one thread through scanpy's numba-parallel neighbour graph and UMAP."""
    import numba
    import scanpy as sc
    from harness.resources import use_threads

    threads, numba_threads = torch.get_num_threads(), numba.get_num_threads()
    try:
        use_threads(1)
        adata = sct.ds.pbmc68k_reduced()
        adata.obsm["X_emb"] = np.random.default_rng(0).normal(size=(adata.n_obs, 8))
        sc.pp.neighbors(adata, use_rep="X_emb", n_neighbors=10)
        sc.tl.umap(adata, maxiter=10)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
        numba.set_num_threads(numba_threads)
