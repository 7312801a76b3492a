"""Does self-supervised pretraining help annotation here? No pretraining vs uniform vs MAM masking, with the peers.

Experiments (``--experiments``; records are appended to ``benchmarks/results/pretraining.jsonl`` as runs finish,
and ``docs/results/pretraining.md`` is regenerated from all records):

``target_selection``
    Chooses the reconstruction target on a **validation split**, never on a split that is reported: the
    evaluation's pbmc3k 80/20 split (``random_state=seed``), its training 80% split again, stratified 75/25
    (``random_state=seed``, as ``benchmarks/semi_supervised.py`` does), into *fit* and *validation* cells. MAM is
    pretrained with each target (``counts``, ``log_expression``, ``bins``) on the fit cells (labels unused) and the
    four unlabelled 10x PBMC sets, fine-tuned on 1%, 5%, 20% and 100% of the fit cells' labels, and scored on the
    validation cells; the test 20% is never read. The rule
    (:func:`harness.pretraining_report.target_selection`): the target of highest validation macro-F1 pooled over
    label shares and seeds; 0.2's default (``counts``) stays unless another is ahead of it by at least
    ``harness.stats.TIE``. The other experiments use the target it picks once its records are complete (``--target``
    overrides), else 0.2's default, and say which in their records (``target``, ``target_source``).
``label_efficiency``
    pbmc3k, the evaluation's stratified 80/20 split (``random_state=seed``). 1%, 5%, 20% and 100% of the
    training cells keep their labels (stratified, at least :data:`MIN_PER_TYPE` cells of every type); all are
    tested on the same held-out 20%. scTransformer: no pretraining, uniform masking, MAM, and MAM's control with
    the reward shuffled among each cell's masked tokens (``mam_shuffled``). The pretraining corpus is every
    training cell (labels unused) plus the four unlabelled 10x PBMC sets (5,798 cells, four chemistries); one
    backbone per seed and arm serves all four label fractions.
    Every scTransformer arm of a seed shares the backbone's gene panel and mask, so arms are paired. Peers:
    logistic regression and CellTypist on the labelled cells; scANVI from an scVI pretrained on the same
    corpus (the same cells, batch = source), then trained with the unlabelled cells as unlabelled.
``cross_study``
    pbmc3k (all labels) -> ``pbmc68k_reduced`` (its FACS-sorted populations mapped to pbmc3k's types), the 763
    genes both measure: no pretraining, pretrained on pbmc3k + the four sets (uniform, MAM, MAM with shuffled
    reward), and MAM with the query's own cells added (transductive: no query label is read). With ``--arms``:
    the GRN mask's degree-preserving shuffle without and with pretraining (``none/shuffled``,
    ``mam+query/shuffled``). Per-type recall.
``darmanis``
    Darmanis 2015 brain, held-out donor groups (the evaluation's folds): the corpus is Darmanis' own cells,
    the held-out ones included (transductive); no other brain data with many genes is available offline. The
    same arms as ``label_efficiency``.

**Cost-fair arms.** MAM reads each cell ``n_draws=2`` times per step (its leave-one-out baseline compares a cell's
two draws; each draw also trains the reconstruction). Uniform masking defaults to one draw; here every pretrained
arm gets ``objective_kwargs={"n_draws": 2}``, so that uniform masking, MAM and MAM with shuffled reward see the
same cells, as often, at the same encoder cost and with as many reconstructed tokens: they differ only in which
tokens are masked. The arms of a seed share the split, labelled cells, gene panel and mask, so they are paired.

scTransformer is fine-tuned with ``train()``'s defaults (as a user would); pretraining runs for about
:data:`PRETRAIN_STEPS` optimiser steps. In the reported experiments (not ``target_selection``), every scTransformer
record of a backbone (pretrained, or the untrained encoder of ``none``) and of a model fine-tuned on all labels
carries the gene-embedding audit as the scGPT study measures it (:func:`sctransformer_tools.tl.gene_embedding_audit`,
``test="class_separation"``: the static gene table and the contextual gene states of every depth; fields
``audit_<representation>_<test>_<column>``), and every MAM or shuffled-reward backbone what its policy masks
(``get_masking_preference``'s Monte-Carlo inclusion rates, summarised by
:func:`sctransformer_tools.tl.masking_preference_summary`; fields ``mask_*``).

**Records of two estimators.** Every record made by this script carries ``study_version``
(:data:`harness.pretraining_report.STUDY_VERSION`) and ``code`` (the commit); the records without
``study_version`` were made with MAM's 0.2 estimator (biased; their masking read-out is ``pref_*``, their audit the
pairwise test ``audit_tf_target_*``, their targets compared on the test split). The report keeps them apart and
never pairs them with today's; a run is identified with its version, so ``--resume`` does not skip a run because
the 0.2 estimator made it. (0.2's ``--refresh-masking``, which re-pretrained backbones to rewrite old records'
masking fields, is gone: with today's estimator it would attach a new policy's read-out to old results.)

Usage (from the project root; shared data in ``../shared/data``)::

    python benchmarks/pretraining.py --experiments target_selection --seeds 0 1 2
    python benchmarks/pretraining.py --experiments label_efficiency --methods sctransformer --seeds 0 1 2
    python benchmarks/pretraining.py --experiments label_efficiency --methods peers --seeds 0 1 2
    python benchmarks/pretraining.py --experiments cross_study darmanis --seeds 0 1 2
    python benchmarks/pretraining.py --report-only   # regenerate docs/results/pretraining.md (--report PATH)
    python benchmarks/pretraining.py --smoke --seeds 0   # every experiment at one epoch on a few cells

``--threads 1`` runs each process on one core, so that two invocations can share a two-core machine.
``--resume`` skips runs already recorded (with today's estimator). ``--smoke`` trains one epoch everywhere on at
most :data:`SMOKE_CELLS` cells per dataset and writes its records and report to a scratch folder: it checks the
whole path, not a result.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
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
from harness.datasets import LABELS_KEY, LIBRARY_KEY, load_split  # noqa: E402
from harness.pretraining_report import (  # noqa: E402
    DEFAULT_TARGET,
    STUDY_VERSION,
    TARGETS,
    identity,
    target_selection,
    write_report,
)
from harness.pretraining_report import load_records as _load_records  # noqa: E402
from harness.records import _clean  # noqa: E402

RECORDS = ROOT / "benchmarks" / "results" / "pretraining.jsonl"
REPORT = ROOT / "docs" / "results" / "pretraining.md"
UNLABELLED = SHARED / "scrna" / "unlabelled_pbmc"
SCRNA = SHARED / "scrna"
FRACTIONS = (0.01, 0.05, 0.2, 1.0)
MIN_PER_TYPE = 2
#: Optimiser steps of pretraining (rounded to whole epochs of the corpus).
PRETRAIN_STEPS = {"target_selection": 480, "label_efficiency": 480, "cross_study": 480, "darmanis": 200}
METRICS = ("accuracy", "macro_f1", "rare_f1")
#: Draws of the mask per cell and step, for every pretrained arm (MAM's default; see "Cost-fair arms").
N_DRAWS = 2
#: Permutations of the gene-embedding audit's null.
N_PERMUTATIONS = 50
#: ``--smoke``: one epoch everywhere, at most this many cells per dataset, records to a scratch file.
SMOKE_TRAIN: dict = {}
SMOKE_CELLS = 240
#: How the audit fields of a record were computed.
AUDIT = (
    "tl.gene_embedding_audit(test='class_separation', method='spectral', n_components=6, contextual=True, "
    f"max_cells=2000, n_permutations={N_PERMUTATIONS}, markers: t-test top 25 of the training cells' types)"
)
#: How the masking fields (``mask_*``) of a record were computed.
MASKING_SUMMARY = (
    "get_masking_preference(n_draws=32, seed=0) inclusion rates; tl.masking_preference_summary(min_detection=0.02, "
    "n_top=50)"
)
#: Record field -> the class of :func:`sctransformer_tools.tl.masking_preference_summary`.
MASKING_CLASSES = {
    "tf": "TF",
    "target": "regulon target",
    "hvg": "highly variable",
    "ribo_mito": "ribosomal / mitochondrial",
}
#: Arms of the label-efficiency and Darmanis experiments: arm -> masking (``None``: no pretraining).
ARMS = {"none": None, "uniform": "uniform", "mam": "mam", "mam_shuffled": "mam_shuffled"}
#: Arms of the cross-study experiment: (masking, transductive, mask).
CROSS_STUDY_ARMS = {
    "none": (None, False, "grn"),
    "uniform": ("uniform", False, "grn"),
    "mam": ("mam", False, "grn"),
    "mam_shuffled": ("mam_shuffled", False, "grn"),
    "mam+query": ("mam", True, "grn"),
    "none/shuffled": (None, False, "shuffled"),
    "mam+query/shuffled": ("mam", True, "shuffled"),
}
#: The cross-study arms run without ``--arms``.
CROSS_STUDY_DEFAULT = ("none", "uniform", "mam", "mam_shuffled", "mam+query")


def _code_version() -> str:
    """The commit of the code this process runs (``+dirty`` with uncommitted changes), read when it starts.

    Records and reports (``benchmarks/results/``, ``docs/results/``) are not code: a run started while another
    appends records is not dirty.
    """
    run = {"cwd": ROOT, "capture_output": True, "text": True}
    outputs = (":(exclude)benchmarks/results", ":(exclude)docs/results")
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], **run).stdout.strip()
        status = ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *outputs]
        dirty = subprocess.run(status, **run).stdout.strip()
    except OSError:
        return "unknown"
    return commit + ("+dirty" if dirty else "")


# ------------------------------------------------------------------------------------------------ records
def append(record: dict) -> None:
    """Append one record (a JSON line) to :data:`RECORDS`."""
    RECORDS.parent.mkdir(parents=True, exist_ok=True)
    with RECORDS.open("a") as fh:
        fh.write(json.dumps(_clean(record)) + "\n")


def load_records() -> list[dict]:
    """Every record of :data:`RECORDS`; a later record of the same run replaces an earlier one."""
    return _load_records(RECORDS)


def done(experiment: str, kind: str, method: str, arm: str, fraction, seed: int) -> bool:
    """Whether that run is recorded with today's estimator."""
    key = identity(
        {
            "study_version": STUDY_VERSION,
            "experiment": experiment,
            "kind": kind,
            "method": method,
            "arm": arm,
            "fraction": fraction,
            "seed": seed,
        }
    )
    return any(identity(r) == key for r in load_records())


# ------------------------------------------------------------------------------------------------ data
def small(adata: ad.AnnData, seed: int = 0) -> ad.AnnData:
    """``adata`` itself, or with ``--smoke`` at most :data:`SMOKE_CELLS` of its cells (every labelled type kept)."""
    if not SMOKE_TRAIN or adata.n_obs <= SMOKE_CELLS:
        return adata
    rng = np.random.default_rng(seed)
    if LABELS_KEY in adata.obs:
        labels = adata.obs[LABELS_KEY].astype(str).to_numpy()
        types = np.unique(labels)
        per_type = max(MIN_PER_TYPE * 2, SMOKE_CELLS // len(types))
        keep = np.concatenate([rng.permutation(np.flatnonzero(labels == t))[:per_type] for t in types])
    else:
        keep = rng.choice(adata.n_obs, SMOKE_CELLS, replace=False)
    return adata[np.sort(keep)].copy()


def split_of(name: str, seed: int = 0):
    """The evaluation's split ``name`` (see :func:`small` for ``--smoke``)."""
    split = load_split(name, seed=seed, data_dir=SCRNA)
    split.train, split.test = small(split.train, seed), small(split.test, seed)
    return split


def unlabelled() -> list[ad.AnnData]:
    """The four unlabelled 10x PBMC sets (raw counts in ``X``)."""
    files = sorted(UNLABELLED.glob("*.h5ad"))
    if not files:
        raise FileNotFoundError(f"No unlabelled PBMC sets under {UNLABELLED}.")
    return [small(ad.read_h5ad(f)) for f in files]


def validation_split(seed: int) -> tuple[ad.AnnData, ad.AnnData]:
    """The fit and validation cells: a stratified 75/25 split of the evaluation's pbmc3k training cells."""
    from sklearn.model_selection import train_test_split

    train = split_of("pbmc3k", seed).train
    fit, val = train_test_split(
        np.arange(train.n_obs), test_size=0.25, stratify=train.obs[LABELS_KEY], random_state=seed
    )
    return train[np.sort(fit)].copy(), train[np.sort(val)].copy()


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

    from sctransformer_tools.bm.metrics import score

    truth, pred = np.asarray(truth, str), np.asarray(pred, str)
    keep = np.isin(truth, np.unique(train_labels))
    out = score(truth[keep], pred[keep], train_labels, METRICS)
    types = sorted(np.unique(truth[keep]))
    recall = recall_score(truth[keep], pred[keep], labels=types, average=None, zero_division=0)
    out["recall"] = dict(zip(types, recall.tolist(), strict=True))
    out["n_test"] = int(keep.sum())
    return out


def common(experiment: str, seed: int, threads: int) -> dict:
    """Fields of every record: the estimator version and code, the experiment, seed and machine."""
    from harness.resources import machine

    return {
        "study_version": STUDY_VERSION,
        "code": CODE,
        "experiment": experiment,
        "seed": seed,
        "threads": threads,
        "machine": machine()["cpu"],
    }


# ------------------------------------------------------------------------------------------------ read-outs
def audit(model, markers: ad.AnnData, seed: int) -> dict:
    """The gene-embedding audit as the scGPT study measures it, per representation and test, as flat fields.

    ``audit_<representation>_<test>_<column>``: representation ``gene_embedding`` (the static table), ``input`` and
    ``block_<i>`` (contextual gene states read on the model's reference cells); test ``tf_vs_target`` or
    ``marker_clustering``; column ``auroc``, ``auroc_sd``, ``null_mean``, ``null_sd``, ``p_value``.
    """
    import sctransformer_tools as sct

    result = sct.tl.gene_embedding_audit(
        model,
        test="class_separation",
        n_permutations=5 if SMOKE_TRAIN else N_PERMUTATIONS,
        markers=markers,
        groupby=LABELS_KEY,
        marker_method="t-test",
        seed=seed,
    )
    out = {"audit": AUDIT}
    for _, row in result["summary"].iterrows():
        for col in ("auroc", "auroc_sd", "null_mean", "null_sd", "p_value"):
            out[f"audit_{row['representation']}_{row['test']}_{col}"] = float(row[col])
    return out


def masking_summary(model, adata: ad.AnnData) -> dict:
    """What a learned masking policy masks on ``adata``, as flat record fields (``mask_*``).

    ``mask_ratio_median_<class>`` / ``mask_ratio_median_not_<class>``: median ratio to uniform of a gene class and
    of the other genes; ``mask_rate_median_*``: the same for the inclusion rate; ``mask_top``: the 20 genes of
    highest ratio as ``[symbol, ratio, rate]``; ``mask_max_ratio`` and ``mask_max_rate`` over the genes kept;
    ``mask_uniform_rate_median``: the median uniform rate ``k / n`` (a gene's ratio is at most its cells' ``n / k``).
    """
    import sctransformer_tools as sct

    genes = model.get_masking_preference(adata, inplace=False, library_size_key=LIBRARY_KEY, seed=0)
    summary = sct.tl.masking_preference_summary(genes, min_detection=0.02, n_top=50)
    classes, top = summary["classes"], summary["top"]
    kept = genes[genes["ratio_to_uniform"].notna() & (genes["detection"] >= 0.02)]
    out = {
        "mask_summary": MASKING_SUMMARY,
        "mask_genes": int(classes.loc["all", "n_genes"]),
        "mask_share_above_uniform": float(classes.loc["all", "share_above_uniform"]),
        "mask_top50_ribo_mito": int(classes.loc[MASKING_CLASSES["ribo_mito"], "n_in_top"]),
        "mask_top50_tf": int(classes.loc[MASKING_CLASSES["tf"], "n_in_top"]),
        "mask_top": [
            [s, round(float(r), 3), round(float(p), 4)]
            for s, r, p in zip(
                top["symbol"].head(20), top["ratio_to_uniform"].head(20), top["inclusion_rate"].head(20), strict=True
            )
        ],
        "mask_max_ratio": float(kept["ratio_to_uniform"].max()),
        "mask_max_rate": float(kept["inclusion_rate"].max()),
        "mask_uniform_rate_median": float(kept["uniform_rate"].median()),
    }
    out |= {f"mask_spearman_{name}": float(rho) for name, rho in summary["correlation"].items()}
    for field, name in MASKING_CLASSES.items():
        for stat in ("ratio", "rate"):
            column = "median_ratio_to_uniform" if stat == "ratio" else "median_inclusion_rate"
            out[f"mask_{stat}_median_{field}"] = float(classes.loc[name, column])
            out[f"mask_{stat}_median_not_{field}"] = float(classes.loc[f"not {name}", column])
    return out


def backbone_fields(backbone, train: ad.AnnData, seed: int, masking: str | None) -> dict:
    """An encoder's gene-embedding audit and, for a learned masking policy, what it masks."""
    out = audit(backbone, train, seed)
    return out | (masking_summary(backbone, train) if masking in ("mam", "mam_shuffled") else {})


# ------------------------------------------------------------------------------------------------ scTransformer
def pretrain_backbone(
    experiment: str,
    train: ad.AnnData,
    extra: list[ad.AnnData],
    masking: str,
    seed: int,
    target: str,
    mask: str = "grn",
    model_kwargs: dict | None = None,
):
    """A model on ``train`` whose encoder is pretrained on ``train`` (labels unused) + ``extra``; its record."""
    import sctransformer_tools as sct

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
            objective_kwargs={"target": target, "n_draws": N_DRAWS},
        )
    seconds = time.perf_counter() - start
    info = model.pretraining_
    objective = model.module.objectives["masked_expression"]
    rec = {
        "kind": "backbone",
        "masking": masking,
        "target": target,
        "n_draws": objective.n_draws,
        "reward": objective.reward if objective.learned else None,
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


def untrained_backbone(train: ad.AnnData, seed: int, mask: str = "grn", model_kwargs: dict | None = None):
    """The untrained model of the ``none`` arm (its encoder is audited as the not-pretrained baseline)."""
    import sctransformer_tools as sct

    model = sct.SCTransformer(train, mask=mask, seed=seed, **(model_kwargs or {}))
    return model, {"kind": "backbone", "masking": None, "mask": mask, "panel_genes": len(model.panel_)}


def panel_of(model) -> dict:
    """A model's gene panel and regulon edges, to build other models on exactly the same panel and mask."""
    return {k: model.init_params_["non_kwargs"][k] for k in ("panel_genes", "regulons")}


def fine_tune(train: ad.AnnData, backbone, panel: dict, mask: str, seed: int, model_kwargs: dict | None = None):
    """A classifier on ``train``'s labels: from ``backbone``'s encoder, or from scratch (``None``), on ``panel``."""
    import sctransformer_tools as sct

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
    import sctransformer_tools as sct

    ref = ad.AnnData(
        X=train.X, obs=train.obs[[LABELS_KEY, LIBRARY_KEY]].copy(), var=pd.DataFrame(index=train.var_names)
    )
    sct.SCTransformer.setup_anndata(ref, labels_key=LABELS_KEY, library_size_key=LIBRARY_KEY)
    return ref


def chosen_target(override: str | None = None) -> tuple[str, str]:
    """The reconstruction target of the reported experiments and where it comes from."""
    if override is not None:
        return override, "--target"
    choice = target_selection(load_records())
    if choice["status"] == "complete":
        return choice["target"], "validation split (target_selection)"
    return DEFAULT_TARGET, f"0.2's default (target_selection {choice['status']})"


# ------------------------------------------------------------------------------------------------ experiments
def target_selection_experiment(seeds, threads: int, resume: bool) -> None:
    """MAM with each target on the fit cells + the four sets, scored on the validation cells (see the docstring)."""
    extra = unlabelled()
    for seed in seeds:
        fit, val = validation_split(seed)
        labels = fit.obs[LABELS_KEY].astype(str).to_numpy()
        ref = setup(fit)
        for target in TARGETS:
            arm = f"mam/{target}"
            if resume and all(done("target_selection", "classifier", "sctransformer", arm, f, seed) for f in FRACTIONS):
                continue
            base = common("target_selection", seed, threads) | {"method": "sctransformer", "arm": arm}
            base |= {"dataset": "pbmc3k: validation 25% of the training cells", "n_fit": fit.n_obs, "n_val": val.n_obs}
            backbone, rec = pretrain_backbone("target_selection", ref, extra, "mam", seed, target)
            append(base | rec | {"fraction": None})
            panel = panel_of(backbone)
            for fraction in FRACTIONS:
                if resume and done("target_selection", "classifier", "sctransformer", arm, fraction, seed):
                    continue
                idx = labelled_subset(labels, fraction, seed)
                fitted, train_s = fine_tune(fit[idx], backbone, panel, "grn", seed)
                rec = base | {"kind": "classifier", "target": target, "fraction": fraction, "n_labelled": len(idx)}
                rec |= scores(val.obs[LABELS_KEY], predict(fitted, val), labels) | {"train_s": train_s}
                append(rec)
                print(json.dumps({k: rec[k] for k in ("arm", "fraction", "seed", "macro_f1")}), flush=True)


def label_efficiency_sctransformer(seeds, threads: int, resume: bool, target: str, source: str, arms=None) -> None:
    extra = unlabelled()
    for seed in seeds:
        split = split_of("pbmc3k", seed)
        train, test = split.train, split.test
        labels = train.obs[LABELS_KEY].astype(str).to_numpy()
        ref = setup(train)
        for arm in arms or ARMS:
            masking = ARMS[arm]
            if resume and all(done("label_efficiency", "classifier", "sctransformer", arm, f, seed) for f in FRACTIONS):
                continue
            base = common("label_efficiency", seed, threads) | {"dataset": "pbmc3k", "method": "sctransformer"}
            base |= {"arm": arm, "target": target if masking else None, "target_source": source if masking else None}
            if masking is None:
                model, rec = untrained_backbone(ref, seed)
                backbone = None
            else:
                backbone, rec = pretrain_backbone("label_efficiency", ref, extra, masking, seed, target)
                model = backbone
            append(base | rec | backbone_fields(model, train, seed, masking) | {"fraction": None})
            panel = panel_of(model)
            for fraction in FRACTIONS:
                if resume and done("label_efficiency", "classifier", "sctransformer", arm, fraction, seed):
                    continue
                idx = labelled_subset(labels, fraction, seed)
                fitted, train_s = fine_tune(train[idx], backbone, panel, "grn", seed)
                rec = base | {"kind": "classifier", "fraction": fraction, "n_labelled": len(idx)}
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

    if SMOKE_TRAIN:
        scvi_epochs = scanvi_epochs = 1
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


def label_efficiency_peers(seeds, threads: int, resume: bool, names=None) -> None:
    """Logistic regression, CellTypist and semi-supervised scANVI (or those of ``names``) at every label share."""
    from harness.celltypist_compat import celltypist_compat

    from sctransformer_tools.bm.peers import celltypist, logistic_regression

    extra = unlabelled()
    for seed in seeds:
        split = split_of("pbmc3k", seed)
        train, test = split.train, split.test
        labels = train.obs[LABELS_KEY].astype(str).to_numpy()
        base = common("label_efficiency", seed, threads) | {"dataset": "pbmc3k", "kind": "classifier", "arm": "peer"}
        for name, fit in (("logistic_regression", logistic_regression), ("celltypist", celltypist)):
            if names and name not in names:
                continue
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
        if names and "scanvi" not in names:
            continue
        if resume and all(done("label_efficiency", "classifier", "scanvi", "peer", f, seed) for f in FRACTIONS):
            continue
        for fraction, (pred, n, scvi_s, scanvi_s, n_genes) in scanvi_semi_supervised(
            train, test, extra, FRACTIONS, seed
        ).items():
            rec = base | {"method": "scanvi", "fraction": fraction, "n_labelled": n, "train_s": scvi_s + scanvi_s}
            rec |= {"scvi_s": scvi_s, "scanvi_s": scanvi_s, "n_features": n_genes}
            rec |= scores(test.obs[LABELS_KEY], pred, labels)
            append(rec)
            print(json.dumps({"scanvi": fraction, "seed": seed, "macro_f1": rec.get("macro_f1")}), flush=True)


def cross_study(seeds, threads: int, resume: bool, target: str, source: str, arms=None) -> None:
    extra = unlabelled()
    split = split_of("pbmc3k_to_pbmc68k")
    train, test = split.train, split.test
    labels = train.obs[LABELS_KEY].astype(str).to_numpy()
    ref = setup(train)
    for seed in seeds:
        for arm in arms or CROSS_STUDY_DEFAULT:
            masking, transductive, mask = CROSS_STUDY_ARMS[arm]
            if resume and done("cross_study", "classifier", "sctransformer", arm, 1.0, seed):
                continue
            base = common("cross_study", seed, threads) | {"dataset": "pbmc3k_to_pbmc68k", "method": "sctransformer"}
            base |= {"arm": arm, "mask": mask}
            base |= {"target": target if masking else None, "target_source": source if masking else None}
            backbone = None
            if masking is None:
                model, rec = untrained_backbone(ref, seed, mask)
                if mask == "grn":  # the untrained encoder of the GRN mask: the audit's not-pretrained baseline
                    append(base | rec | backbone_fields(model, train, seed, None) | {"fraction": None})
                panel = panel_of(model)
            else:
                corpus = extra + ([query_of(test)] if transductive else [])
                backbone, rec = pretrain_backbone("cross_study", ref, corpus, masking, seed, target, mask=mask)
                append(base | rec | backbone_fields(backbone, train, seed, masking) | {"fraction": None})
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
    from harness.celltypist_compat import celltypist_compat

    from sctransformer_tools.bm.peers import celltypist, logistic_regression

    for seed in seeds:
        split = split_of(split_name, seed)
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
    split = split_of("pbmc3k_to_pbmc68k")
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
            rec |= scores(test.obs[LABELS_KEY], pred, labels)
            append(rec)
            print(json.dumps({"arm": arm, "seed": seed, "macro_f1": rec.get("macro_f1")}), flush=True)


def darmanis(seeds, threads: int, resume: bool, target: str, source: str, arms=None) -> None:
    model_kwargs = {"max_tokens": 1024}  # as in the evaluation
    for seed in seeds:
        split = split_of("darmanis2015", seed)
        train, test = split.train, split.test
        labels = train.obs[LABELS_KEY].astype(str).to_numpy()
        ref = setup(train)
        for arm in arms or ARMS:
            masking = ARMS[arm]  # the same arms as label efficiency
            if resume and done("darmanis", "classifier", "sctransformer", arm, 1.0, seed):
                continue
            base = common("darmanis", seed, threads) | {"dataset": "darmanis2015", "method": "sctransformer"}
            base |= {"arm": arm, "held_out": split.info.get("held_out_donors")}
            base |= {"target": target if masking else None, "target_source": source if masking else None}
            backbone = None
            if masking is None:
                model, rec = untrained_backbone(ref, seed, model_kwargs=model_kwargs)
            else:
                backbone, rec = pretrain_backbone(
                    "darmanis", ref, [query_of(test)], masking, seed, target, model_kwargs=model_kwargs
                )
                model = backbone
            append(base | rec | backbone_fields(model, train, seed, masking) | {"fraction": None})
            panel = panel_of(model)
            fitted, train_s = fine_tune(train, backbone, panel, "grn", seed, model_kwargs)
            rec = base | {"kind": "classifier", "fraction": 1.0, "n_labelled": train.n_obs, "train_s": train_s}
            rec |= scores(test.obs[LABELS_KEY], predict(fitted, test), labels) | audit(fitted, train, seed)
            append(rec)
            print(json.dumps({k: rec[k] for k in ("arm", "seed", "macro_f1", "accuracy")}), flush=True)


# ------------------------------------------------------------------------------------------------ command line
EXPERIMENTS = ("target_selection", "label_efficiency", "cross_study", "darmanis")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiments", nargs="+", choices=EXPERIMENTS, default=list(EXPERIMENTS))
    parser.add_argument("--methods", choices=["all", "sctransformer", "peers"], default="all")
    parser.add_argument("--arms", nargs="+", default=None, help="scTransformer arms of the experiments (default: all)")
    parser.add_argument(
        "--peers",
        nargs="+",
        default=None,
        help="peers to run (logistic_regression, celltypist, scanvi; scanvi: label efficiency and cross-study)",
    )
    parser.add_argument(
        "--target", choices=TARGETS, default=None, help="reconstruction target (default: target_selection's pick)"
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument(
        "--report", type=Path, default=None, help="write the report there (default: docs/results/pretraining.md)"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="one epoch per fit on a few cells, records and report to a scratch folder"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        global RECORDS, REPORT
        import tempfile

        scratch = Path(tempfile.mkdtemp(prefix="pretraining_smoke_"))
        RECORDS, REPORT = scratch / "pretraining.jsonl", scratch / "pretraining.md"
        SMOKE_TRAIN["max_epochs"] = 1
        PRETRAIN_STEPS.update(dict.fromkeys(PRETRAIN_STEPS, 1))
        print(f"smoke run: records and report in {scratch}", flush=True)
    if not args.report_only:
        import torch
        from harness.resources import machine, use_threads

        if args.threads:
            use_threads(args.threads)
        threads = torch.get_num_threads()

        print(f"{datetime.now(UTC).isoformat()} {machine()} threads={threads} code={CODE}", flush=True)
        ours, peers = args.methods in ("all", "sctransformer"), args.methods in ("all", "peers")
        for experiment in args.experiments:
            if experiment == "target_selection":
                if ours:
                    target_selection_experiment(args.seeds, threads, args.resume)
                continue
            target, source = chosen_target(args.target)
            print(f"{experiment}: reconstruction target {target!r} ({source})", flush=True)
            if experiment == "label_efficiency":
                if ours:
                    label_efficiency_sctransformer(args.seeds, threads, args.resume, target, source, args.arms)
                if peers:
                    label_efficiency_peers(args.seeds, threads, args.resume, args.peers)
            elif experiment == "cross_study":
                if ours:
                    cross_study(args.seeds, threads, args.resume, target, source, args.arms)
                if peers:
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
                if ours:
                    darmanis(args.seeds, threads, args.resume, target, source, args.arms)
                if peers:
                    peers_on_split(
                        "darmanis", "darmanis2015", "darmanis2015", args.seeds, threads, args.resume, args.peers
                    )
    report = args.report or REPORT
    write_report(load_records(), report)
    print(f"wrote {report}")


CODE = _code_version()

if __name__ == "__main__":
    main()
