"""Does self-supervised pretraining help annotation here? No pretraining vs uniform vs MAM masking, with the peers.

Experiments (``--experiments``; records are appended to ``benchmarks/results/pretraining.jsonl`` as runs finish,
and ``docs/results/pretraining.md`` is regenerated from all records):

``label_efficiency``
    pbmc3k, the evaluation's stratified 80/20 split (``random_state=seed``). 1%, 5%, 20% and 100% of the
    training cells keep their labels (stratified, at least :data:`MIN_PER_TYPE` cells of every type); all are
    tested on the same held-out 20%. scTransformer: no pretraining, pretrained with uniform masking, pretrained
    with MAM, and with MAM and the count target (``mam/counts``). The pretraining corpus is every training cell
    (labels unused) plus the four unlabelled 10x PBMC sets (5,798 cells, four chemistries); one backbone per seed
    and arm serves all four label fractions.
    Every scTransformer arm of a seed shares the backbone's gene panel and mask, so arms are paired. Peers:
    logistic regression and CellTypist on the labelled cells; scANVI from an scVI pretrained on the same
    corpus (the same cells, batch = source), then trained with the unlabelled cells as unlabelled.
``cross_study``
    pbmc3k (all labels) -> ``pbmc68k_reduced`` (its FACS-sorted populations mapped to pbmc3k's types), the 763
    genes both measure: no pretraining, pretrained on pbmc3k + the four sets (uniform, MAM), and MAM with the
    query's own cells added (transductive: no query label is read); the GRN mask and its degree-preserving
    shuffle; MAM with the two other reconstruction targets (a count likelihood, bins). Per-type recall.
``darmanis``
    Darmanis 2015 brain, held-out donor groups (the evaluation's folds): the corpus is Darmanis' own cells,
    the held-out ones included (transductive); no other brain data with many genes is available offline.

scTransformer is fine-tuned with ``train()``'s defaults (as a user would); pretraining runs for about
:data:`PRETRAIN_STEPS` optimiser steps. Every scTransformer record carries the gene-embedding audit of its
fine-tuned model (:func:`sctransformer_tools.tl.gene_embedding_audit`) at 100% labels, and every backbone record
the audit of the pretrained encoder alone and (MAM) what the policy prefers to mask.

Usage (from the project root; shared data in ``../shared/data``)::

    python benchmarks/pretraining.py --experiments label_efficiency --methods sctransformer --seeds 0 1 2
    python benchmarks/pretraining.py --experiments label_efficiency --methods peers --seeds 0 1 2
    python benchmarks/pretraining.py --experiments cross_study darmanis --seeds 0 1 2
    python benchmarks/pretraining.py --report-only

``--threads 1`` runs each process on one core, so that two invocations can share a two-core machine.
``--resume`` skips runs already recorded. ``--refresh-masking`` pretrains the MAM backbones of the chosen
experiments and seeds again (nothing is fine-tuned) and rewrites only their masking-preference fields, for records
written before the summary came from :func:`sctransformer_tools.tl.masking_preference_summary`; each refreshed
record keeps the validation MSE of the re-run (``pref_rerun_validation_mse``) to show it reproduced the backbone.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
os.environ.setdefault("SCTRANSFORMER_TOOLS_DATA", str(SHARED / "regulons"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import anndata as ad  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from annotation_speed import machine  # noqa: E402
from harness.celltypist_compat import celltypist_compat  # noqa: E402
from harness.datasets import LABELS_KEY, LIBRARY_KEY, load_split  # noqa: E402
from harness.records import _clean  # noqa: E402

import sctransformer_tools as sct  # noqa: E402
from sctransformer_tools.bm.metrics import score  # noqa: E402

RECORDS = ROOT / "benchmarks" / "results" / "pretraining.jsonl"
REPORT = ROOT / "docs" / "results" / "pretraining.md"
UNLABELLED = SHARED / "scrna" / "unlabelled_pbmc"
SCRNA = SHARED / "scrna"
FRACTIONS = (0.01, 0.05, 0.2, 1.0)
MIN_PER_TYPE = 2
#: Optimiser steps of pretraining (rounded to whole epochs of the corpus).
PRETRAIN_STEPS = {"label_efficiency": 480, "cross_study": 480, "darmanis": 200}
METRICS = ("accuracy", "macro_f1", "rare_f1")
#: ``--smoke``: one epoch everywhere, records to a scratch file (checks the whole path in minutes).
SMOKE_TRAIN: dict = {}
#: ``--refresh-masking``: re-pretrain the MAM backbones and rewrite only their masking-preference fields.
REFRESH_MASKING = False
#: Arms of the cross-study experiment: (masking, transductive, mask, target).
CROSS_STUDY_ARMS = {
    "none": (None, False, "grn", None),
    "uniform": ("uniform", False, "grn", "log_expression"),
    "mam": ("mam", False, "grn", "log_expression"),
    "mam+query": ("mam", True, "grn", "log_expression"),
    "none/shuffled": (None, False, "shuffled", None),
    "mam+query/shuffled": ("mam", True, "shuffled", "log_expression"),
    "mam+query/counts": ("mam", True, "grn", "counts"),
    "mam+query/bins": ("mam", True, "grn", "bins"),
}


# ------------------------------------------------------------------------------------------------ records
def append(record: dict) -> None:
    """Append one record (a JSON line) to :data:`RECORDS`."""
    RECORDS.parent.mkdir(parents=True, exist_ok=True)
    with RECORDS.open("a") as fh:
        fh.write(json.dumps(_clean(record)) + "\n")


def load_records() -> list[dict]:
    """Every record of :data:`RECORDS`; a later record of the same run replaces an earlier one."""
    if not RECORDS.exists():
        return []
    latest = {}
    for line in RECORDS.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            latest[identity(rec)] = rec
    return list(latest.values())


def identity(rec: dict) -> tuple:
    """What identifies a run."""
    return tuple(str(rec.get(k)) for k in ("experiment", "kind", "method", "arm", "fraction", "seed"))


def done(experiment: str, kind: str, method: str, arm: str, fraction, seed: int) -> bool:
    """Whether that run is recorded."""
    key = identity(
        {"experiment": experiment, "kind": kind, "method": method, "arm": arm, "fraction": fraction, "seed": seed}
    )
    return any(identity(r) == key for r in load_records())


# ------------------------------------------------------------------------------------------------ data
def unlabelled() -> list[ad.AnnData]:
    """The four unlabelled 10x PBMC sets (raw counts in ``X``)."""
    files = sorted(UNLABELLED.glob("*.h5ad"))
    if not files:
        raise FileNotFoundError(f"No unlabelled PBMC sets under {UNLABELLED}.")
    return [ad.read_h5ad(f) for f in files]


def labelled_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Positions keeping ``fraction`` of each type's cells (at least :data:`MIN_PER_TYPE`, or all it has)."""
    if fraction >= 1:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    keep = []
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        k = min(len(idx), max(MIN_PER_TYPE, round(fraction * len(idx))))
        keep.append(rng.choice(idx, k, replace=False))
    return np.sort(np.concatenate(keep))


def query_of(test: ad.AnnData) -> ad.AnnData:
    """The test cells without their labels."""
    return ad.AnnData(X=test.X, obs=test.obs.drop(columns=[LABELS_KEY]), var=pd.DataFrame(index=test.var_names))


def scores(truth: np.ndarray, pred: np.ndarray, train_labels: np.ndarray) -> dict:
    """Accuracy, macro-F1, rare-type F1 and per-type recall on the test cells whose type was trained on."""
    from sklearn.metrics import recall_score

    truth, pred = np.asarray(truth, str), np.asarray(pred, str)
    keep = np.isin(truth, np.unique(train_labels))
    out = score(truth[keep], pred[keep], train_labels, METRICS)
    types = sorted(np.unique(truth[keep]))
    recall = recall_score(truth[keep], pred[keep], labels=types, average=None, zero_division=0)
    out["recall"] = dict(zip(types, recall.tolist(), strict=True))
    out["n_test"] = int(keep.sum())
    return out


def common(experiment: str, seed: int, threads: int) -> dict:
    return {"experiment": experiment, "seed": seed, "threads": threads, "machine": machine()["cpu"]}


# ------------------------------------------------------------------------------------------------ scTransformer
def audit(model, markers: ad.AnnData, seed: int) -> dict:
    """TF-vs-target and marker AUROCs of the model's gene embeddings (vs a 50-permutation null)."""
    result = sct.tl.gene_embedding_audit(
        model, n_permutations=50, markers=markers, groupby=LABELS_KEY, marker_method="t-test", seed=seed
    )
    summary = result["summary"].set_index("test")
    return {
        f"audit_{test}_{col}": float(summary.loc[test, col])
        for test in summary.index
        for col in ("auroc", "null_mean", "null_sd", "p_value")
    }


#: How the masking-preference fields of a record were computed (records without it predate the tl function).
MASKING_SUMMARY = "tl.masking_preference_summary(min_detection=0.02, n_top=50)"
#: Record field -> the class of :func:`sctransformer_tools.tl.masking_preference_summary`.
MASKING_CLASSES = {
    "tf": "TF",
    "target": "regulon target",
    "hvg": "highly variable",
    "ribo_mito": "ribosomal / mitochondrial",
}


def masking_summary(model, adata: ad.AnnData) -> dict:
    """What MAM prefers to mask on ``adata`` (``sct.tl.masking_preference_summary``), as flat record fields."""
    genes = model.get_masking_preference(adata, inplace=False, library_size_key=LIBRARY_KEY)
    summary = sct.tl.masking_preference_summary(genes, min_detection=0.02, n_top=50)
    classes, top = summary["classes"], summary["top"]
    out = {
        "pref_summary": MASKING_SUMMARY,
        "pref_genes": int(classes.loc["all", "n_genes"]),
        "pref_top50_ribo_mito": int(classes.loc[MASKING_CLASSES["ribo_mito"], "n_in_top"]),
        "pref_top50_tf": int(classes.loc[MASKING_CLASSES["tf"], "n_in_top"]),
        "pref_top": [
            [s, round(float(p), 3)] for s, p in zip(top["symbol"].head(20), top["preference"].head(20), strict=True)
        ],
        "pref_max": float(top["preference"].iloc[0]),
    }
    out |= {f"pref_spearman_{name}": float(rho) for name, rho in summary["correlation"].items()}
    for field, name in MASKING_CLASSES.items():
        out[f"pref_median_{field}"] = float(classes.loc[name, "median_preference"])
        out[f"pref_median_not_{field}"] = float(classes.loc[f"not {name}", "median_preference"])
    return out


def record_backbone(rec: dict) -> None:
    """Append a backbone's record; with ``--refresh-masking``, its recorded run with new masking fields only."""
    if not REFRESH_MASKING:
        append(rec)
        return
    old = next((r for r in load_records() if identity(r) == identity(rec)), None)
    if old is None:
        print(f"not recorded, nothing to refresh: {identity(rec)}", flush=True)
        return
    fresh = {k: v for k, v in rec.items() if k.startswith("pref_")}
    append(old | fresh | {"pref_rerun_validation_mse": rec["pretrain_validation_mse"]})
    print(
        f"refreshed {identity(rec)}: validation MSE {old['pretrain_validation_mse']:.5f} recorded, "
        f"{rec['pretrain_validation_mse']:.5f} re-run",
        flush=True,
    )


def skip(experiment: str, arm: str, masking: str | None, seed: int, resume: bool, fractions=(1.0,)) -> bool:
    """Whether to skip an arm: with ``--refresh-masking``, all but MAM's not yet refreshed; else recorded ones."""
    if REFRESH_MASKING:
        return masking != "mam" or (resume and refreshed(experiment, arm, seed))
    return resume and all(done(experiment, "classifier", "sctransformer", arm, f, seed) for f in fractions)


def backbone_fields(backbone, train: ad.AnnData, seed: int, masking: str, with_audit: bool = True) -> dict:
    """A pretrained backbone's gene-embedding audit (not when refreshing) and, for MAM, what it masks."""
    out = audit(backbone, train, seed) if with_audit and not REFRESH_MASKING else {}
    return out | (masking_summary(backbone, train) if masking == "mam" else {})


def refreshed(experiment: str, arm: str, seed: int) -> bool:
    """Whether that MAM backbone's record already has masking fields from :data:`MASKING_SUMMARY`."""
    key = identity(
        {
            "experiment": experiment,
            "kind": "backbone",
            "method": "sctransformer",
            "arm": arm,
            "fraction": None,
            "seed": seed,
        }
    )
    return any(identity(r) == key and r.get("pref_summary") == MASKING_SUMMARY for r in load_records())


def pretrain_backbone(
    experiment: str,
    train: ad.AnnData,
    extra: list[ad.AnnData],
    masking: str,
    seed: int,
    mask: str = "grn",
    target: str = "log_expression",
    model_kwargs: dict | None = None,
):
    """A model on ``train`` whose encoder is pretrained on ``train`` (labels unused) + ``extra``; its record."""
    model = sct.SCTransformer(train, mask=mask, seed=seed, **(model_kwargs or {}))
    n_cells = train.n_obs + sum(a.n_obs for a in extra)
    steps_per_epoch = math.ceil(0.95 * n_cells / 32)
    epochs = max(1, round(PRETRAIN_STEPS[experiment] / steps_per_epoch))
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".* lacks [\d,]+ of the model's", category=UserWarning)  # counted
        model.pretrain(
            extra,
            masking=masking,
            max_epochs=epochs,
            seed=seed,
            enable_progress_bar=False,
            objective_kwargs={"target": target},
        )
    seconds = time.perf_counter() - start
    info = model.pretraining_
    rec = {
        "kind": "backbone",
        "masking": masking,
        "target": target,
        "mask": mask,
        "pretrain_s": seconds,
        "pretrain_cells": info["n_cells"],
        "pretrain_epochs": info["max_epochs"],
        "pretrain_steps": info["max_epochs"] * steps_per_epoch,
        "pretrain_cells_per_s": info["n_cells"] * info["max_epochs"] / seconds,
        "pretrain_validation_mse": info["validation_mse"],
        "pretrain_validation_mse_first": float(np.asarray(model.pretraining_history_["validation_mse"]).ravel()[0]),
        "panel_genes": len(model.panel_),
    }
    return model, rec


def panel_of(model) -> dict:
    """A model's gene panel and regulon edges, to build other models on exactly the same panel and mask."""
    return {k: model.init_params_["non_kwargs"][k] for k in ("panel_genes", "regulons")}


def fine_tune(train: ad.AnnData, backbone, panel: dict, mask: str, seed: int, model_kwargs: dict | None = None):
    """A classifier on ``train``'s labels: from ``backbone``'s encoder, or from scratch (``None``), on ``panel``."""
    ref = setup(train)
    kwargs = {**panel, "seed": seed, **(model_kwargs or {})}
    if backbone is None:
        model = sct.SCTransformer(ref, mask=mask, **kwargs)
    else:
        kwargs = {k: v for k, v in kwargs.items() if k not in ("max_tokens",)}
        model = sct.SCTransformer.from_pretrained(backbone, ref, **kwargs)
    start = time.perf_counter()
    model.train(enable_progress_bar=False, **SMOKE_TRAIN)
    return model, time.perf_counter() - start


def predict(model, test: ad.AnnData) -> np.ndarray:
    query = query_of(test)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The query lacks", category=UserWarning)  # counted in the split
        return np.asarray(model.predict(query, inplace=False, library_size_key=LIBRARY_KEY), str)


def setup(train: ad.AnnData) -> ad.AnnData:
    ref = ad.AnnData(
        X=train.X, obs=train.obs[[LABELS_KEY, LIBRARY_KEY]].copy(), var=pd.DataFrame(index=train.var_names)
    )
    sct.SCTransformer.setup_anndata(ref, labels_key=LABELS_KEY, library_size_key=LIBRARY_KEY)
    return ref


# ------------------------------------------------------------------------------------------------ experiments
#: Arms of the label-efficiency experiment: (masking, reconstruction target).
LABEL_EFFICIENCY_ARMS = {
    "none": (None, None),
    "uniform": ("uniform", "log_expression"),
    "mam": ("mam", "log_expression"),
    "mam/counts": ("mam", "counts"),
}


def label_efficiency_sctransformer(seeds, threads: int, resume: bool, arms=None) -> None:
    extra = unlabelled()
    for seed in seeds:
        split = load_split("pbmc3k", seed=seed, data_dir=SCRNA)
        train, test = split.train, split.test
        labels = train.obs[LABELS_KEY].astype(str).to_numpy()
        ref = setup(train)
        panel = None
        for arm in arms or LABEL_EFFICIENCY_ARMS:
            masking, target = LABEL_EFFICIENCY_ARMS[arm]
            if skip("label_efficiency", arm, masking, seed, resume, FRACTIONS):
                continue
            base = common("label_efficiency", seed, threads) | {"dataset": "pbmc3k", "method": "sctransformer"}
            backbone = None
            if masking is None:
                model = sct.SCTransformer(ref, seed=seed)
            else:
                backbone, rec = pretrain_backbone("label_efficiency", ref, extra, masking, seed, target=target)
                model = backbone
                rec |= backbone_fields(backbone, train, seed, masking)
                record_backbone(base | rec | {"arm": arm, "fraction": None})
                if REFRESH_MASKING:
                    continue
            panel = panel_of(model)
            for fraction in FRACTIONS:
                if resume and done("label_efficiency", "classifier", "sctransformer", arm, fraction, seed):
                    continue
                idx = labelled_subset(labels, fraction, seed)
                fitted, train_s = fine_tune(train[idx], backbone, panel, "grn", seed)
                rec = base | {"kind": "classifier", "arm": arm, "fraction": fraction, "n_labelled": len(idx)}
                rec |= scores(test.obs[LABELS_KEY], predict(fitted, test), labels)
                rec |= {"train_s": train_s, "train_epochs": len(fitted.history["train_loss"])}
                if fraction == 1.0:
                    rec |= audit(fitted, train, seed)
                append(rec)
                print(json.dumps({k: rec[k] for k in ("arm", "fraction", "seed", "macro_f1", "rare_f1")}), flush=True)


def scanvi_semi_supervised(train, test, extra, fractions, seed, scvi_epochs=60, scanvi_epochs=10, transductive=False):
    """scVI pretrained on train + the unlabelled sets (batch = source), then scANVI per label fraction.

    ``transductive``: the test cells join the corpus, unlabelled, as a batch of their own (another study: their
    cells are seen without labels, as scArches surgery would see them); else they are read as ``train``'s batch.
    """
    import scvi

    from sctransformer_tools.model import quiet_training
    from sctransformer_tools.pp import align_genes, highly_variable_genes

    hvg = highly_variable_genes(train, 2000)
    measured = set.intersection(*(set(a.var_names) for a in extra))
    genes = pd.Index([g for g in hvg if g in measured])
    parts = [align_genes(train, genes)] + [align_genes(a, genes) for a in extra]
    sources = ["pbmc3k"] + [str(a.obs["batch"].iloc[0]) for a in extra]
    if transductive:
        parts.append(align_genes(test, genes))
        sources.append("query")
    for part, source in zip(parts, sources, strict=True):
        part.obs = pd.DataFrame({"source": source}, index=part.obs_names.astype(str))
    corpus = ad.concat(parts, index_unique="-")
    labels = train.obs[LABELS_KEY].astype(str).to_numpy()
    corpus.obs["label"] = "__unlabeled__"
    scvi.settings.seed = seed
    quiet = {"enable_progress_bar": False, "accelerator": "cpu"}
    start = time.perf_counter()
    with quiet_training():
        scvi.model.SCVI.setup_anndata(corpus, batch_key="source")
        vae = scvi.model.SCVI(corpus, n_latent=10)
        vae.train(max_epochs=scvi_epochs, **quiet)
    scvi_s = time.perf_counter() - start
    query = align_genes(test, genes)
    query.obs = pd.DataFrame(
        {"source": "query" if transductive else "pbmc3k", "label": "__unlabeled__"}, index=test.obs_names.astype(str)
    )
    out = {}
    for fraction in fractions:
        idx = labelled_subset(labels, fraction, seed)
        data = corpus.copy()
        lab = np.full(data.n_obs, "__unlabeled__", dtype=object)
        lab[idx] = labels[idx]
        data.obs["label"] = pd.Categorical(lab)
        start = time.perf_counter()
        with quiet_training():
            model = scvi.model.SCANVI.from_scvi_model(vae, "__unlabeled__", labels_key="label", adata=data)
            model.train(max_epochs=scanvi_epochs, **quiet)
            pred = np.asarray(model.predict(query.copy()), str)
        out[fraction] = (pred, len(idx), scvi_s, time.perf_counter() - start, len(genes))
    return out


def label_efficiency_peers(seeds, threads: int, resume: bool) -> None:
    from sctransformer_tools.bm.peers import celltypist, logistic_regression

    extra = unlabelled()
    for seed in seeds:
        split = load_split("pbmc3k", seed=seed, data_dir=SCRNA)
        train, test = split.train, split.test
        labels = train.obs[LABELS_KEY].astype(str).to_numpy()
        base = common("label_efficiency", seed, threads) | {"dataset": "pbmc3k", "kind": "classifier", "arm": "peer"}
        for name, fit in (("logistic_regression", logistic_regression), ("celltypist", celltypist)):
            for fraction in FRACTIONS:
                if resume and done("label_efficiency", "classifier", name, "peer", fraction, seed):
                    continue
                idx = labelled_subset(labels, fraction, seed)
                start = time.perf_counter()
                with celltypist_compat():  # CellTypist 1.7 on scikit-learn >= 1.8, as in the evaluation
                    fitted = fit(train[idx].copy(), LABELS_KEY, library_size_key=LIBRARY_KEY, seed=seed)
                    train_s = time.perf_counter() - start
                    pred = fitted.predict(query_of(test))
                rec = base | {"method": name, "fraction": fraction, "n_labelled": len(idx), "train_s": train_s}
                append(rec | scores(test.obs[LABELS_KEY], pred, labels))
        if resume and all(done("label_efficiency", "classifier", "scanvi", "peer", f, seed) for f in FRACTIONS):
            continue
        epochs = {"scvi_epochs": 1, "scanvi_epochs": 1} if SMOKE_TRAIN else {}
        for fraction, (pred, n, scvi_s, scanvi_s, n_genes) in scanvi_semi_supervised(
            train, test, extra, FRACTIONS, seed, **epochs
        ).items():
            rec = base | {"method": "scanvi", "fraction": fraction, "n_labelled": n, "train_s": scvi_s + scanvi_s}
            rec |= {"scvi_s": scvi_s, "scanvi_s": scanvi_s, "n_features": n_genes}
            rec |= scores(test.obs[LABELS_KEY], pred, labels)
            append(rec)
            print(json.dumps({"scanvi": fraction, "seed": seed, "macro_f1": rec.get("macro_f1")}), flush=True)


def cross_study(seeds, threads: int, resume: bool, arms=None) -> None:
    extra = unlabelled()
    split = load_split("pbmc3k_to_pbmc68k", data_dir=SCRNA)
    train, test = split.train, split.test
    labels = train.obs[LABELS_KEY].astype(str).to_numpy()
    ref = setup(train)
    for seed in seeds:
        for arm in arms or CROSS_STUDY_ARMS:
            masking, transductive, mask, target = CROSS_STUDY_ARMS[arm]
            if skip("cross_study", arm, masking, seed, resume):
                continue
            base = common("cross_study", seed, threads) | {"dataset": "pbmc3k_to_pbmc68k", "method": "sctransformer"}
            base |= {"arm": arm, "mask": mask}
            backbone = None
            if masking is None:
                panel = panel_of(sct.SCTransformer(ref, mask=mask, seed=seed))
            else:
                corpus = extra + ([query_of(test)] if transductive else [])
                backbone, rec = pretrain_backbone("cross_study", ref, corpus, masking, seed, mask=mask, target=target)
                rec |= backbone_fields(backbone, train, seed, masking)
                record_backbone(base | rec | {"fraction": None})
                if REFRESH_MASKING:
                    continue
                panel = panel_of(backbone)
            fitted, train_s = fine_tune(train, backbone, panel, mask, seed)
            rec = base | {"kind": "classifier", "fraction": 1.0, "n_labelled": train.n_obs, "train_s": train_s}
            rec |= scores(test.obs[LABELS_KEY], predict(fitted, test), labels) | audit(fitted, train, seed)
            append(rec)
            print(json.dumps({k: rec[k] for k in ("arm", "seed", "macro_f1", "accuracy")}), flush=True)


def peers_on_split(
    experiment: str, dataset: str, split_name: str, seeds, threads: int, resume: bool, names=None
) -> None:
    """Logistic regression and CellTypist (or those of ``names``) on a fixed split, all labels, per-type recall."""
    from sctransformer_tools.bm.peers import celltypist, logistic_regression

    for seed in seeds:
        split = load_split(split_name, seed=seed, data_dir=SCRNA)
        train, test = split.train, split.test
        labels = train.obs[LABELS_KEY].astype(str).to_numpy()
        for name, fit in (("logistic_regression", logistic_regression), ("celltypist", celltypist)):
            if (names and name not in names) or (resume and done(experiment, "classifier", name, name, 1.0, seed)):
                continue
            start = time.perf_counter()
            with celltypist_compat():
                fitted = fit(train.copy(), LABELS_KEY, library_size_key=LIBRARY_KEY, seed=seed)
                train_s = time.perf_counter() - start
                pred = fitted.predict(query_of(test))
            rec = common(experiment, seed, threads) | {"dataset": dataset, "kind": "classifier", "method": name}
            rec |= {"arm": name, "fraction": 1.0, "n_labelled": train.n_obs, "train_s": train_s}
            append(rec | scores(test.obs[LABELS_KEY], pred, labels))


def cross_study_scanvi(seeds, threads: int, resume: bool) -> None:
    """scANVI on the cross-study split: scVI on pbmc3k + the four sets (and the query's cells: ``scanvi+query``)."""
    extra = unlabelled()
    split = load_split("pbmc3k_to_pbmc68k", data_dir=SCRNA)
    train, test = split.train, split.test
    labels = train.obs[LABELS_KEY].astype(str).to_numpy()
    for seed in seeds:
        for arm, transductive in (("scanvi", False), ("scanvi+query", True)):
            if resume and done("cross_study", "classifier", "scanvi", arm, 1.0, seed):
                continue
            fitted = scanvi_semi_supervised(train, test, extra, (1.0,), seed, transductive=transductive)
            pred, n, scvi_s, scanvi_s, n_genes = fitted[1.0]
            rec = common("cross_study", seed, threads) | {"dataset": "pbmc3k_to_pbmc68k", "kind": "classifier"}
            rec |= {"method": "scanvi", "arm": arm, "fraction": 1.0, "n_labelled": n, "train_s": scvi_s + scanvi_s}
            rec |= {"scvi_s": scvi_s, "scanvi_s": scanvi_s, "n_features": n_genes}
            append(rec | scores(test.obs[LABELS_KEY], pred, labels))
            print(json.dumps({"arm": arm, "seed": seed, "macro_f1": rec.get("macro_f1")}), flush=True)


def darmanis(seeds, threads: int, resume: bool, arms=None) -> None:
    model_kwargs = {"max_tokens": 1024}  # as in the evaluation
    for seed in seeds:
        split = load_split("darmanis2015", seed=seed, data_dir=SCRNA)
        train, test = split.train, split.test
        labels = train.obs[LABELS_KEY].astype(str).to_numpy()
        ref = setup(train)
        for arm in arms or LABEL_EFFICIENCY_ARMS:
            masking, target = LABEL_EFFICIENCY_ARMS[arm]  # the same arms: none, uniform, mam, mam/counts
            if skip("darmanis", arm, masking, seed, resume):
                continue
            base = common("darmanis", seed, threads) | {"dataset": "darmanis2015", "method": "sctransformer"}
            base |= {"arm": arm, "held_out": split.info.get("held_out_donors")}
            backbone = None
            if masking is None:
                panel = panel_of(sct.SCTransformer(ref, seed=seed, **model_kwargs))
            else:
                backbone, rec = pretrain_backbone(
                    "darmanis", ref, [query_of(test)], masking, seed, target=target, model_kwargs=model_kwargs
                )
                rec |= backbone_fields(backbone, train, seed, masking, with_audit=False)  # as recorded before
                record_backbone(base | rec | {"fraction": None})
                if REFRESH_MASKING:
                    continue
                panel = panel_of(backbone)
            fitted, train_s = fine_tune(train, backbone, panel, "grn", seed, model_kwargs)
            rec = base | {"kind": "classifier", "fraction": 1.0, "n_labelled": train.n_obs, "train_s": train_s}
            rec |= scores(test.obs[LABELS_KEY], predict(fitted, test), labels)
            append(rec)
            print(json.dumps({k: rec[k] for k in ("arm", "seed", "macro_f1", "accuracy")}), flush=True)


# ------------------------------------------------------------------------------------------------ command line
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiments", nargs="+", default=["label_efficiency", "cross_study", "darmanis"])
    parser.add_argument("--methods", choices=["all", "sctransformer", "peers"], default="all")
    parser.add_argument("--arms", nargs="+", default=None, help="scTransformer arms of the experiments (default: all)")
    parser.add_argument(
        "--peers", nargs="+", default=None, help="peers on the cross-study and Darmanis splits (scanvi: cross-study)"
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="one epoch per fit, records to a scratch file")
    parser.add_argument(
        "--refresh-masking", action="store_true", help="re-pretrain MAM backbones, rewrite their masking fields only"
    )
    args = parser.parse_args(argv)
    if args.refresh_masking:
        global REFRESH_MASKING
        REFRESH_MASKING = True
    if args.smoke:
        global RECORDS, REPORT
        import tempfile

        scratch = Path(tempfile.mkdtemp(prefix="pretraining_smoke_"))
        RECORDS, REPORT = scratch / "pretraining.jsonl", scratch / "pretraining.md"
        SMOKE_TRAIN["max_epochs"] = 1
        PRETRAIN_STEPS.update(dict.fromkeys(PRETRAIN_STEPS, 1))
    if not args.report_only:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        threads = torch.get_num_threads()
        print(f"{datetime.now(UTC).isoformat()} {machine()} threads={threads}", flush=True)
        for experiment in args.experiments:
            if experiment == "label_efficiency":
                if args.methods in ("all", "sctransformer"):
                    label_efficiency_sctransformer(args.seeds, threads, args.resume, args.arms)
                if args.methods in ("all", "peers"):
                    label_efficiency_peers(args.seeds, threads, args.resume)
            elif experiment == "cross_study":
                if args.methods in ("all", "sctransformer"):
                    cross_study(args.seeds, threads, args.resume, args.arms)
                if args.methods in ("all", "peers"):
                    peers_on_split(
                        "cross_study",
                        "pbmc3k_to_pbmc68k",
                        "pbmc3k_to_pbmc68k",
                        args.seeds,
                        threads,
                        args.resume,
                        args.peers,
                    )
                    if not args.peers or "scanvi" in args.peers:
                        cross_study_scanvi(args.seeds, threads, args.resume)
            elif experiment == "darmanis":
                if args.methods in ("all", "sctransformer"):
                    darmanis(args.seeds, threads, args.resume, args.arms)
                if args.methods in ("all", "peers"):
                    peers_on_split(
                        "darmanis", "darmanis2015", "darmanis2015", args.seeds, threads, args.resume, args.peers
                    )
            else:
                raise SystemExit(f"unknown experiment {experiment!r}")
    try:
        from harness.pretraining_report import write_report
    except ImportError:
        return
    write_report(load_records(), REPORT)
    print(f"wrote {REPORT}")


if __name__ == "__main__":
    main()
