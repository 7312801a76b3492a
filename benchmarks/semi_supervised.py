"""Choosing how the model learns from every cell, on validation splits only (never on the reported test splits).

The evaluation (``benchmarks/evaluate.py``) reports held-out test cells; the settings it runs with are chosen here,
on cells it never reports:

``in_study``
    pbmc3k. The evaluation's stratified 80/20 split (``random_state=seed``) gives the training cells; these are
    split again, stratified 75/25 (``random_state=seed``), into *fit* and *validation* cells. 1%, 5%, 20% or 100%
    of the fit cells keep their labels (stratified, at least 2 per type, as in the label-efficiency experiment);
    the other fit cells are unlabelled. Scored on the validation cells. With ``--extra``, the four unlabelled 10x
    PBMC sets of ``../shared/data/scrna/unlabelled_pbmc`` join as unlabelled cells (inner join of the genes,
    ``batch_key="dataset"``).
``mapping``
    Darmanis 2015 (brain, 12 donor samples). The evaluation's fold ``seed`` gives the training donors; of those,
    one donor group (the first fold of a 3-fold StratifiedGroupKFold over the training donors) is the validation
    *query*, the others the reference. Reference-only prediction against reference mapping
    (``load_query_data`` + ``train``) with each set of adaptation objectives, scored on the query.

``in_donor``
    Allen M1 (141 marker genes). The evaluation's training donor (its subsample ``seed``) split stratified 80/20
    (``random_state=seed``) into fit and validation cells; the evaluation's test donor is never read. Today's
    defaults, the model without its Transformer layers, and the evaluation's peers logistic regression and CellTypist
    (:data:`IN_DONOR_ARMS`), scored on the validation cells: where the model stands against the peers when the
    donor does not change. The report sets the paired differences beside the evaluation's on the other donor.
``label_efficiency``
    The evaluation's label-efficiency arm, on the **reported** split: the evaluation's pbmc3k 80/20 split
    (``random_state=seed``); 1%, 5%, 20% or 100% of the training cells keep their labels, chosen by
    ``pretraining.labelled_subset`` exactly as for the peers of ``benchmarks/pretraining.py``'s label-efficiency
    experiment (logistic regression, CellTypist, scANVI; their records are read from
    ``benchmarks/results/pretraining.jsonl`` and paired by fraction and seed). Arms (:data:`REPORTED_ARMS`): the
    labelled cells only, and today's default with every other training cell and the four unlabelled PBMC sets as
    unlabelled cells. Scored on the held-out 20%; rendered into ``docs/results/label_efficiency.md``.

Arms (``--arms``; :data:`IN_STUDY_ARMS`, :data:`MAPPING_ARMS`, :data:`IN_DONOR_ARMS`, :data:`REPORTED_ARMS`) differ in one thing at a time. Records are appended
to ``benchmarks/results/semi_supervised.jsonl`` and ``docs/results/semi_supervised.md`` is regenerated from them
(``--report-only``).

Usage (from the project root)::

    python benchmarks/semi_supervised.py --experiments in_study --seeds 0 1 2 --threads 1
    python benchmarks/semi_supervised.py --experiments in_study --extra --fractions 0.01 0.05 --seeds 0 1 2
    python benchmarks/semi_supervised.py --experiments mapping --seeds 0 1 2
    python benchmarks/semi_supervised.py --experiments label_efficiency --seeds 0 1 2 --threads 1
    python benchmarks/semi_supervised.py --experiments in_donor --seeds 0 1 2
    python benchmarks/semi_supervised.py --report-only
"""

from __future__ import annotations

import argparse
import json
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
from harness.datasets import LABELS_KEY, LIBRARY_KEY, load_split  # noqa: E402
from harness.resources import machine  # noqa: E402
from pretraining import labelled_subset, query_of, scores, unlabelled  # noqa: E402

import sctransformer_tools as sct  # noqa: E402

RECORDS = ROOT / "benchmarks" / "results" / "semi_supervised.jsonl"
REPORT = ROOT / "docs" / "results" / "semi_supervised.md"
LABEL_EFFICIENCY_REPORT = ROOT / "docs" / "results" / "label_efficiency.md"
PEER_RECORDS = ROOT / "benchmarks" / "results" / "pretraining.jsonl"
#: The evaluation's records: the in-donor differences are set beside its differences on the other donor.
EVALUATION = ROOT / "docs" / "results" / "evaluation.json"
SCRNA = SHARED / "scrna"
FRACTIONS = (0.01, 0.05, 0.2, 1.0)
UNLABELLED = "Unknown"

#: In-study arms: model settings, ``train()`` settings, and whether the unlabelled fit cells are in the data.
#: ``train()`` settings may hold ``objective_settings``: ``{objective: settings}`` given to ``model.add_objective``.
IN_STUDY_ARMS: dict[str, tuple[dict, dict, bool]] = {
    "labelled only, no profile": ({"profile_components": 0}, {}, False),
    "labelled only": ({}, {}, False),
    "unlabelled in the profile": ({}, {"objectives": {}}, True),
    "unlabelled in the profile, 300 steps": ({}, {"objectives": {}, "steps": 300}, True),
    "unlabelled in the profile, 150 steps": ({}, {"objectives": {}, "steps": 150}, True),
    # what the gene tokens add: no Transformer layer, the CLS state is the expression profile's projection
    "labelled only, no gene tokens": ({"n_layers": 0}, {}, False),
    "unlabelled in the profile, no gene tokens": ({"n_layers": 0}, {"objectives": {}}, True),
    # half the training cells classified from their gene tokens alone (the profile dropped): do the tokens then help?
    "labelled only, profile dropout 0.5": ({"profile_dropout": 0.5}, {}, False),
    "unlabelled in the profile, profile dropout 0.5": (
        {"profile_dropout": 0.5},
        {"objectives": {}},
        True,
    ),
    "+ pseudo-labels": ({}, {"objectives": {"pseudo_labels": 1.0}}, True),
    "+ pseudo-labels, not aligned": (
        {},
        {"objectives": {"pseudo_labels": 1.0}, "objective_settings": {"pseudo_labels": {"align": False}}},
        True,
    ),
    "+ consistency": ({}, {"objectives": {"consistency": 1.0}}, True),
    "+ masked expression": ({}, {"objectives": {"masked_expression": 1.0}}, True),
    "+ pseudo-labels + masked expression": ({}, {"objectives": {"pseudo_labels": 1.0, "masked_expression": 1.0}}, True),
}
#: Arms of the reported label-efficiency experiment: (arm of :data:`IN_STUDY_ARMS`, with the four unlabelled sets).
#: The unlabelled arm runs today's defaults (no ``objectives`` passed).
REPORTED_ARMS: dict[str, tuple[str, bool]] = {
    "with unlabelled cells (default)": ("unlabelled in the profile", True),
    "labelled cells only": ("labelled only", False),
    "with unlabelled cells, no Transformer layer": ("unlabelled in the profile, no gene tokens", True),
    "labelled cells only, no Transformer layer": ("labelled only, no gene tokens", False),
}
#: Mapping arms: ``None`` predicts with the reference model; a dict, the query model's adaptation objectives; a
#: tuple ``("mapped", {objective: settings})``, the same with each objective's settings (weight 1); a tuple
#: ``("unlabelled", objectives)``, a model trained on the reference with the query's cells unlabelled; a tuple
#: ``("reference", model settings)``, a reference model built with other settings, predicting without mapping.
MAPPING_ARMS: dict[str, dict | tuple | None] = {
    "reference only": None,
    # half the reference's cells classified from their gene tokens alone: does a model that cannot lean on the
    # expression profile alone carry over to other donors better?
    "reference only, profile dropout 0.5": ("reference", {"profile_dropout": 0.5}),
    # 0.2's size factors (each cell's total over all genes) instead of its counts over the panel genes
    "reference only, library size factors": ("reference", {"size_factors": "library"}),
    "query unlabelled in training": ("unlabelled", {}),
    "query unlabelled in training + pseudo-labels": ("unlabelled", {"pseudo_labels": 1.0}),
    "query unlabelled in training + masked expression": ("unlabelled", {"masked_expression": 1.0}),
    "mapped: pseudo-labels": {"pseudo_labels": 1.0},
    "mapped: consistency": {"consistency": 1.0},
    "mapped: masked expression": {"masked_expression": 1.0},
    "mapped: pseudo-labels + masked expression": {"pseudo_labels": 1.0, "masked_expression": 1.0},
    # each called type pulls equally: do rare types keep their cells when the query's majority types self-train?
    "mapped: pseudo-labels, balanced": ("mapped", {"pseudo_labels": {"align": False, "balance": True}}),
}
#: In-donor arms (Allen M1): model settings of scTransformer, a peer of ``sct.bm.peers`` by name, or a tuple
#: ``("mapped", ...)`` / ``("unlabelled", ...)`` as in :data:`MAPPING_ARMS`.
IN_DONOR_ARMS: dict[str, dict | str | tuple] = {
    "default": {},
    "no Transformer layer": {"n_layers": 0},
    "profile dropout 0.5": {"profile_dropout": 0.5},
    "library size factors": {"size_factors": "library"},
    "logistic regression": "logistic_regression",
    "CellTypist": "celltypist",
    # the default model mapped onto the validation cells (``("mapped", {objective: settings})``, as in mapping):
    # no change of donor, so mapping should keep what the reference calls right, rare types included
    "mapped: pseudo-labels": ("mapped", {"pseudo_labels": {"align": False}}),
    "mapped: pseudo-labels, balanced": ("mapped", {"pseudo_labels": {"align": False, "balance": True}}),
    # the default model trained with the validation cells joined unlabelled (``("unlabelled", objectives)``)
    "query unlabelled in training": ("unlabelled", {}),
}


# ------------------------------------------------------------------------------------------------ records
def append(record: dict) -> None:
    """Append one record (a JSON line)."""
    from harness.records import _clean

    RECORDS.parent.mkdir(parents=True, exist_ok=True)
    with RECORDS.open("a") as fh:
        fh.write(json.dumps(_clean(record)) + "\n")


def identity(rec: dict) -> tuple:
    """What identifies a run."""
    return tuple(str(rec.get(k)) for k in ("experiment", "arm", "fraction", "extra", "seed"))


def load_records() -> list[dict]:
    """Every record; a later record of the same run replaces an earlier one."""
    if not RECORDS.exists():
        return []
    latest = {}
    for line in RECORDS.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            latest[identity(rec)] = rec
    return list(latest.values())


def done(**key) -> bool:
    """Whether that run is recorded."""
    return any(identity(r) == identity(key) for r in load_records())


def _code_version() -> str:
    """The commit of the code this process runs (``+dirty`` with uncommitted changes), read when it starts."""
    import subprocess

    run = {"cwd": ROOT, "capture_output": True, "text": True}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], **run).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], **run).stdout.strip()
    return commit + ("+dirty" if dirty else "")


CODE = _code_version()


# ------------------------------------------------------------------------------------------------ in-study
def validation_split(seed: int) -> tuple[ad.AnnData, ad.AnnData]:
    """The fit and validation cells: a stratified 75/25 split of the evaluation's pbmc3k training cells."""
    from sklearn.model_selection import train_test_split

    train = load_split("pbmc3k", seed=seed, data_dir=SCRNA).train
    fit, val = train_test_split(
        np.arange(train.n_obs), test_size=0.25, stratify=train.obs[LABELS_KEY], random_state=seed
    )
    return train[np.sort(fit)].copy(), train[np.sort(val)].copy()


def reference_of(fit: ad.AnnData, labelled: np.ndarray, with_unlabelled: bool, extra: bool) -> ad.AnnData:
    """The AnnData a user would set up: the labelled fit cells, and the others as ``"Unknown"`` when asked."""
    labels = fit.obs[LABELS_KEY].astype(str).to_numpy()
    cells = np.arange(fit.n_obs) if with_unlabelled else labelled
    values = np.full(fit.n_obs, UNLABELLED, dtype=object)
    values[labelled] = labels[labelled]
    obs = pd.DataFrame(
        {LABELS_KEY: values[cells], LIBRARY_KEY: fit.obs[LIBRARY_KEY].to_numpy()[cells], "dataset": "pbmc3k"},
        index=fit.obs_names[cells],
    )
    reference = ad.AnnData(X=fit.X[cells], obs=obs, var=pd.DataFrame(index=fit.var_names))
    if not (with_unlabelled and extra):
        return reference
    parts = [reference]
    for other in unlabelled():
        library = np.asarray(other.X.sum(1)).ravel()
        source = str(other.obs["batch"].iloc[0])
        obs = pd.DataFrame({LABELS_KEY: UNLABELLED, LIBRARY_KEY: library, "dataset": source}, index=other.obs_names)
        parts.append(ad.AnnData(X=other.X, obs=obs, var=pd.DataFrame(index=other.var_names)))
    return ad.concat(parts, join="inner", index_unique="-")


def in_study(seeds, fractions, arms, extra: bool, threads: int, resume: bool, reported: bool = False) -> None:
    """Train each arm at each label fraction and score it: on the validation cells, or (``reported``, the
    ``label_efficiency`` experiment, arms of :data:`REPORTED_ARMS`) on the evaluation's test cells."""
    experiment = "label_efficiency" if reported else "in_study"
    for seed in seeds:
        if reported:
            split = load_split("pbmc3k", seed=seed, data_dir=SCRNA)
            fit, val = split.train, split.test
        else:
            fit, val = validation_split(seed)
        labels = fit.obs[LABELS_KEY].astype(str).to_numpy()
        for fraction in fractions:
            labelled = labelled_subset(labels, fraction, seed)
            for arm in arms:
                settings, extra = REPORTED_ARMS[arm] if reported else (arm, extra)
                model_kwargs, train_kwargs, with_unlabelled = IN_STUDY_ARMS[settings]
                key = {"experiment": experiment, "arm": arm, "fraction": fraction, "extra": extra, "seed": seed}
                if (resume and done(**key)) or (fraction >= 1 and with_unlabelled and not extra):
                    continue  # all fit cells labelled: no unlabelled cell to learn from
                reference = reference_of(fit, labelled, with_unlabelled, extra)
                batch_key = "dataset" if (with_unlabelled and extra) else None
                sct.SCTransformer.setup_anndata(
                    reference,
                    labels_key=LABELS_KEY,
                    unlabeled_category=UNLABELLED if with_unlabelled else None,
                    batch_key=batch_key,
                    library_size_key=LIBRARY_KEY,
                )
                start = time.perf_counter()
                model = sct.SCTransformer(reference, seed=seed, **model_kwargs)
                train_kwargs = dict(train_kwargs)
                for name, settings in train_kwargs.pop("objective_settings", {}).items():
                    model.add_objective(name, **settings)
                if "steps" in train_kwargs:  # about that many optimiser steps on the labelled cells
                    batches = -(-int(0.9 * len(labelled)) // 32)
                    train_kwargs["max_epochs"] = max(1, -(-train_kwargs.pop("steps") // batches))
                model.train(enable_progress_bar=False, **train_kwargs)
                train_s = time.perf_counter() - start
                query = query_of(val)
                if batch_key:
                    query.obs["dataset"] = "pbmc3k"
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="The query lacks", category=UserWarning)  # counted
                    pred = np.asarray(model.predict(query, inplace=False, library_size_key=LIBRARY_KEY), str)
                rec = key | {
                    "code": CODE,
                    "dataset": "pbmc3k",
                    "n_labelled": len(labelled),
                    "n_cells": reference.n_obs,
                    "train_s": train_s,
                    "predict_s": time.perf_counter() - start,
                    "epochs": len(model.history["train_loss"]),
                    "precision": model.precision_.get("precision"),
                    "threads": threads,
                    "machine": machine()["cpu"],
                }
                rec |= scores(val.obs[LABELS_KEY], pred, labels)
                append(rec)
                print(json.dumps({k: rec[k] for k in ("arm", "fraction", "seed", "macro_f1", "train_s")}), flush=True)


# ------------------------------------------------------------------------------------------------ mapping
def mapping_split(seed: int) -> tuple[ad.AnnData, ad.AnnData, list[str]]:
    """Reference and validation query of the evaluation's Darmanis fold ``seed``: one donor group of its training
    donors is the query."""
    from sklearn.model_selection import StratifiedGroupKFold

    train = load_split("darmanis2015", seed=seed, data_dir=SCRNA).train
    folds = StratifiedGroupKFold(3, shuffle=True, random_state=seed)
    ref_idx, query_idx = next(folds.split(np.zeros(train.n_obs), train.obs[LABELS_KEY], train.obs["batch"]))
    held = sorted(pd.unique(train.obs["batch"].iloc[query_idx]).astype(str).tolist())
    return train[np.sort(ref_idx)].copy(), train[np.sort(query_idx)].copy(), held


def mapping(seeds, arms, threads: int, resume: bool) -> None:
    from pretraining import setup

    for seed in seeds:
        reference, query_cells, held = mapping_split(seed)
        labels = reference.obs[LABELS_KEY].astype(str).to_numpy()
        todo = [
            a for a in arms if not (resume and done(experiment="mapping", arm=a, fraction=1.0, extra=False, seed=seed))
        ]
        if not todo:
            continue
        ref = setup(reference)
        start = time.perf_counter()
        model = sct.SCTransformer(ref, seed=seed, max_tokens=1024)  # as the evaluation on Darmanis
        model.train(enable_progress_bar=False)
        train_s = time.perf_counter() - start
        for arm in todo:
            objectives = MAPPING_ARMS[arm]
            query = query_of(query_cells)
            start = time.perf_counter()
            if objectives is None:
                predictor = model
            elif isinstance(objectives, tuple) and objectives[0] == "mapped":
                predictor = map_query(query, model, objectives[1])
            elif isinstance(objectives, tuple) and objectives[0] == "reference":  # another reference, not mapped
                predictor = sct.SCTransformer(ref, seed=seed, max_tokens=1024, **objectives[1])
                predictor.train(enable_progress_bar=False)
            elif isinstance(objectives, tuple):  # trained anew, the query's cells unlabelled
                both = sct.bm.with_unlabelled(ref, query, LABELS_KEY)
                sct.SCTransformer.setup_anndata(both, labels_key=LABELS_KEY, library_size_key=LIBRARY_KEY)
                predictor = sct.SCTransformer(both, seed=seed, max_tokens=1024)
                predictor.train(enable_progress_bar=False, objectives=objectives[1])
            else:
                predictor = sct.SCTransformer.load_query_data(query, model, library_size_key=LIBRARY_KEY)
                predictor.train(enable_progress_bar=False, objectives=objectives)
            map_s = time.perf_counter() - start
            pred = np.asarray(predictor.predict(query, inplace=False, library_size_key=LIBRARY_KEY), str)
            rec = {"experiment": "mapping", "arm": arm, "fraction": 1.0, "extra": False, "seed": seed}
            rec["code"] = CODE
            rec |= {"dataset": "darmanis2015", "query_donors": held, "train_s": train_s, "map_s": map_s}
            rec |= {"threads": threads, "machine": machine()["cpu"], "n_query": query.n_obs}
            rec |= scores(query_cells.obs[LABELS_KEY], pred, labels)
            append(rec)
            print(json.dumps({k: rec[k] for k in ("arm", "seed", "macro_f1", "map_s")}), flush=True)


def map_query(query: ad.AnnData, reference, settings: dict[str, dict]):
    """The query model of ``reference``, adapted with each objective of ``settings`` built with its settings."""
    predictor = sct.SCTransformer.load_query_data(query, reference, library_size_key=LIBRARY_KEY)
    for name, kwargs in settings.items():
        predictor.add_objective(name, **kwargs)
    predictor.train(enable_progress_bar=False, objectives=dict.fromkeys(settings, 1.0))
    return predictor


# ------------------------------------------------------------------------------------------------ in donor
def in_donor_split(seed: int) -> tuple[ad.AnnData, ad.AnnData]:
    """Fit and validation cells: the evaluation's Allen M1 training donor (subsample ``seed``), stratified 80/20."""
    from sklearn.model_selection import train_test_split

    train = load_split("allen_m1", seed=seed, data_dir=SCRNA).train
    fit, val = train_test_split(
        np.arange(train.n_obs), test_size=0.2, stratify=train.obs[LABELS_KEY].astype(str), random_state=seed
    )
    return train[np.sort(fit)].copy(), train[np.sort(val)].copy()


def in_donor(seeds, arms, threads: int, resume: bool) -> None:
    from harness.celltypist_compat import celltypist_compat

    for seed in seeds:
        todo = [
            a for a in arms if not (resume and done(experiment="in_donor", arm=a, fraction=1.0, extra=False, seed=seed))
        ]
        if not todo:
            continue
        fit, val = in_donor_split(seed)
        labels = fit.obs[LABELS_KEY].astype(str).to_numpy()
        for arm in todo:
            settings = IN_DONOR_ARMS[arm]
            query = query_of(val)
            start = time.perf_counter()
            if isinstance(settings, str):  # a peer, as the evaluation trains it
                with celltypist_compat():
                    peer = getattr(sct.bm.peers, settings)(fit, LABELS_KEY, library_size_key=LIBRARY_KEY, seed=seed)
                train_s = time.perf_counter() - start
                pred = np.asarray(peer.predict(query), str)
            else:
                reference = fit.copy()
                kind = settings[0] if isinstance(settings, tuple) else None
                if kind == "unlabelled":
                    reference = sct.bm.with_unlabelled(reference, query, LABELS_KEY)
                sct.SCTransformer.setup_anndata(reference, labels_key=LABELS_KEY, library_size_key=LIBRARY_KEY)
                model = sct.SCTransformer(reference, seed=seed, **({} if kind else settings))
                model.train(enable_progress_bar=False, **({"objectives": settings[1]} if kind == "unlabelled" else {}))
                if kind == "mapped":  # the default model, mapped onto the validation cells
                    model = map_query(query, model, settings[1])
                train_s = time.perf_counter() - start
                pred = np.asarray(model.predict(query, inplace=False, library_size_key=LIBRARY_KEY), str)
            rec = {"experiment": "in_donor", "arm": arm, "fraction": 1.0, "extra": False, "seed": seed}
            rec |= {"code": CODE, "dataset": "allen_m1", "n_fit": fit.n_obs, "n_validation": val.n_obs}
            rec |= {"train_s": train_s, "threads": threads, "machine": machine()["cpu"]}
            rec |= scores(val.obs[LABELS_KEY], pred, labels)
            append(rec)
            print(json.dumps({k: rec[k] for k in ("arm", "seed", "macro_f1", "train_s")}), flush=True)


# ------------------------------------------------------------------------------------------------ command line
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiments", nargs="+", default=["in_study", "mapping"])
    parser.add_argument("--arms", nargs="+", default=None)
    parser.add_argument("--fractions", nargs="+", type=float, default=list(FRACTIONS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--extra", action="store_true", help="add the four unlabelled PBMC sets (in_study)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    if not args.report_only:
        import logging

        import torch

        logging.getLogger("sctransformer_tools").setLevel("WARNING")
        if args.threads:
            from harness.resources import use_threads

            use_threads(args.threads)
        threads = torch.get_num_threads()
        print(f"{datetime.now(UTC).isoformat()} {machine()} threads={threads}", flush=True)
        for experiment in args.experiments:
            if experiment == "in_study":
                in_study(args.seeds, args.fractions, args.arms or list(IN_STUDY_ARMS), args.extra, threads, args.resume)
            elif experiment == "mapping":
                mapping(args.seeds, args.arms or list(MAPPING_ARMS), threads, args.resume)
            elif experiment == "in_donor":
                in_donor(args.seeds, args.arms or list(IN_DONOR_ARMS), threads, args.resume)
            elif experiment == "label_efficiency":
                arms = args.arms or list(REPORTED_ARMS)
                in_study(args.seeds, args.fractions, arms, True, threads, args.resume, reported=True)
            else:
                raise SystemExit(f"unknown experiment {experiment!r}")
    from harness.semi_supervised_report import write_label_efficiency_report, write_report

    records = load_records()
    evaluation = json.loads(EVALUATION.read_text()) if EVALUATION.exists() else []
    write_report([r for r in records if r["experiment"] != "label_efficiency"], REPORT, evaluation)
    peers = [json.loads(line) for line in PEER_RECORDS.read_text().splitlines() if line.strip()]
    write_label_efficiency_report(records, peers, LABEL_EFFICIENCY_REPORT)
    print(f"wrote {REPORT} and {LABEL_EFFICIENCY_REPORT}")


if __name__ == "__main__":
    main()
