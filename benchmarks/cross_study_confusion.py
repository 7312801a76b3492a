"""Where the pbmc3k -> pbmc68k calls go: each FACS-sorted population of the query against what each method calls it.

The evaluation scores pbmc3k -> pbmc68k on pbmc3k's labels (``sct.ds.PBMC68K_TO_PBMC3K`` maps the sorted
populations onto them) and reports recall per type; this diagnostic shows the whole table behind those recalls, per
sorted population (``bulk_labels``), for today's default model (labelled cells; with the test cells unlabelled;
mapped onto the test cells) and the peers logistic regression and scANVI, on the evaluation's split and seeds,
trained as the evaluation trains them; the mapped model also with its pseudo-labels balanced by type (the arm the
mapping validations pick, kept out of the default: ``docs/results/semi_supervised.md``). For each mapped model it
also counts, per population, the query cells whose call the mapping changed from its own reference's (the same
model before ``load_query_data``). It also lists which of the pbmc3k tutorial's marker genes of the hard types the
query does not measure (``pbmc68k_reduced`` keeps 765 genes). It chooses nothing: it reads the reported split to
explain a result, not to set anything.

Usage (from the project root)::

    python benchmarks/cross_study_confusion.py              # run (3 seeds), write the JSON and the report
    python benchmarks/cross_study_confusion.py --report-only  # re-render the report from the JSON
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
os.environ.setdefault("SCTRANSFORMER_TOOLS_DATA", str(SHARED / "regulons"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness.datasets import LABELS_KEY, LIBRARY_KEY, load_split  # noqa: E402
from harness.resources import machine  # noqa: E402

RECORD = ROOT / "benchmarks" / "results" / "cross_study_confusion.json"
REPORT = ROOT / "docs" / "results" / "cross_study_confusion.md"
#: Methods, as the evaluation names their rows.
METHODS = (
    "scTransformer, labelled cells",
    "scTransformer, + test cells unlabelled",
    "scTransformer, mapped onto the test cells",
    "scTransformer, mapped, pseudo-labels balanced",
    "logistic regression",
    "scANVI",
)
#: The mapped methods: the query model's pseudo-labels settings beyond the default (``None``: as ``train()`` builds
#: them, :data:`~sctransformer_tools.model._mapping.QUERY_OBJECTIVE_SETTINGS`).
MAPPED = {
    "scTransformer, mapped onto the test cells": None,
    # the arm the mapping validations pick (docs/results/semi_supervised.md), kept out of the default
    "scTransformer, mapped, pseudo-labels balanced": {"align": False, "balance": True},
}
#: Marker genes of the hard types in the Seurat pbmc3k tutorial (its cluster-annotation table), plus the naive
#: T-cell genes the issue names (SELL, LEF1, TCF7).
MARKERS = {
    "Naive CD4 T": ["IL7R", "CCR7", "SELL", "LEF1", "TCF7"],
    "Memory CD4 T": ["IL7R", "S100A4"],
    "CD8 T": ["CD8A", "CD8B"],
    "CD14+ Mono": ["CD14", "LYZ"],
    "FCGR3A+ Mono": ["FCGR3A", "MS4A7"],
    "DC": ["FCER1A", "CST3"],
    "NK": ["GNLY", "NKG7"],
}


def predictions(method: str, train, test, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """``method``'s calls of the test cells, trained as ``benchmarks/evaluate.py`` trains it (profiles ``defaults``,
    ``unlabelled``, ``mapping``), and for the mapped model its reference's calls (else ``None``)."""
    import sctransformer_tools as sct

    query = test.copy()
    del query.obs[LABELS_KEY]
    if method.startswith("scTransformer"):
        ref = train.copy()
        if "unlabelled" in method:
            ref = sct.bm.with_unlabelled(ref, query, LABELS_KEY)
        sct.SCTransformer.setup_anndata(ref, labels_key=LABELS_KEY, library_size_key=LIBRARY_KEY)
        model = sct.SCTransformer(ref, mask="grn", seed=seed)
        model.train(enable_progress_bar=False)
        calls = np.asarray(model.predict(query, inplace=False, library_size_key=LIBRARY_KEY), str)
        if method not in MAPPED:
            return calls, None
        query_model = sct.SCTransformer.load_query_data(query, model, library_size_key=LIBRARY_KEY)
        if MAPPED[method] is not None:
            query_model.add_objective("pseudo_labels", **MAPPED[method])
        query_model.train(enable_progress_bar=False)
        mapped = np.asarray(query_model.predict(query, inplace=False, library_size_key=LIBRARY_KEY), str)
        return mapped, calls
    if method == "logistic regression":
        peer = sct.bm.peers.logistic_regression(train, LABELS_KEY, library_size_key=LIBRARY_KEY, seed=seed)
    else:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning)  # scvi-tools' training chatter
            peer = sct.bm.peers.scanvi(train, LABELS_KEY, seed=seed)
    return np.asarray(peer.predict(query), str), None


def run(seeds) -> dict:
    result = {"machine": machine(), "command": "python benchmarks/cross_study_confusion.py", "seeds": list(seeds)}
    split = load_split("pbmc3k_to_pbmc68k", seed=0, data_dir=SHARED / "scrna")
    genes = set(split.test.var_names)
    result["missing_markers"] = {t: [g for g in markers if g not in genes] for t, markers in MARKERS.items()}
    result["n_query_genes"] = int(split.test.n_vars)
    populations = split.test.obs["bulk_labels"].astype(str).to_numpy()
    result["populations"] = dict(
        zip(
            pd.unique(populations).tolist(),
            [str(split.test.obs[LABELS_KEY].astype(str)[populations == p].iloc[0]) for p in pd.unique(populations)],
            strict=True,
        )
    )
    result["calls"], result["changed_by_mapping"] = {}, {}
    for method in METHODS:
        result["calls"][method] = {}
        for seed in seeds:
            start = time.perf_counter()
            pred, before = predictions(method, split.train, split.test, seed)
            table = pd.crosstab(pd.Series(populations, name="population"), pd.Series(pred, name="call"))
            result["calls"][method][str(seed)] = {p: row[row > 0].astype(int).to_dict() for p, row in table.iterrows()}
            if before is not None:
                changed = pd.Series(pred != before).groupby(populations).sum().astype(int)
                result["changed_by_mapping"].setdefault(method, {})[str(seed)] = changed.to_dict()
            print(method, seed, f"{time.perf_counter() - start:.0f} s", flush=True)
    return result


def markdown(result: dict) -> str:
    """The report: the markers the query lacks, then per method the sorted populations against the calls."""
    lines = [
        "# pbmc3k → pbmc68k: where each sorted population is called",
        "",
        "Generated by `benchmarks/cross_study_confusion.py` from `benchmarks/results/cross_study_confusion.json`;",
        "rerun with `--report-only` to re-render. A diagnostic of the evaluation's pbmc3k → pbmc68k split (the same",
        f"split and training; seeds {', '.join(map(str, result['seeds']))}, counts summed over seeds): it chooses no",
        f"setting. Machine: {result['machine']['cpu']}.",
        "",
        "Marker genes of the hard types (Seurat's pbmc3k tutorial) missing from the split's "
        f"{result['n_query_genes']} genes (those both studies measure; `pbmc68k_reduced` keeps 765):",
        "",
        "| pbmc3k type | markers | not among the split's genes |",
        "|---|---|---|",
    ]
    for cell_type, markers in MARKERS.items():
        missing = result["missing_markers"].get(cell_type, [])
        lines.append(f"| {cell_type} | {', '.join(markers)} | {', '.join(missing) if missing else '–'} |")
    populations = result["populations"]
    for method, by_seed in result["calls"].items():
        total: dict[str, dict[str, int]] = {}
        for table in by_seed.values():
            for population, calls in table.items():
                for call, n in calls.items():
                    total.setdefault(population, {}).setdefault(call, 0)
                    total[population][call] += n
        calls = sorted({c for row in total.values() for c in row})
        lines += [
            "",
            f"**{method}** (rows: sorted population → the pbmc3k type it is scored as; cells: calls)",
            "",
            "| population | scored as | " + " | ".join(calls) + " |",
            "|---|---|" + "---|" * len(calls),
        ]
        for population in sorted(total):
            row = total[population]
            cells = [f"**{row.get(c, 0)}**" if c == populations[population] else str(row.get(c, 0)) for c in calls]
            lines.append(f"| {population} | {populations[population]} | " + " | ".join(cells) + " |")
    lines += mapping_lines(result)
    return "\n".join(lines) + "\n"


def mapping_lines(result: dict) -> list[str]:
    """Per mapped method and sorted population, the query cells whose call mapping changed, per seed."""
    any_seed = next(iter(result["calls"]["scTransformer, labelled cells"].values()))
    sizes = {p: sum(calls.values()) for p, calls in any_seed.items()}
    lines = []
    for method, changed in (result.get("changed_by_mapping") or {}).items():
        seeds = sorted(changed, key=int)
        lines += [
            "",
            f"**What mapping changes: {method}** (query cells whose call the query model changed from its own",
            "reference's, per seed, out of the population's cells)",
            "",
            "| population | cells | " + " | ".join(f"seed {s}" for s in seeds) + " |",
            "|---|---|" + "---|" * len(seeds),
        ]
        for population in sorted(sizes):
            counts = [str(changed[s].get(population, 0)) for s in seeds]
            lines.append(f"| {population} | {sizes[population]} | " + " | ".join(counts) + " |")
        totals = [str(sum(changed[s].values())) for s in seeds]
        lines.append(f"| all | {sum(sizes.values())} | " + " | ".join(totals) + " |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--record", type=Path, default=RECORD)
    parser.add_argument("--report", type=Path, default=REPORT)
    args = parser.parse_args(argv)
    if not args.report_only:
        import logging

        logging.getLogger("sctransformer_tools").setLevel("WARNING")
        args.record.parent.mkdir(parents=True, exist_ok=True)
        args.record.write_text(json.dumps(run(args.seeds), indent=1))
    args.report.write_text(markdown(json.loads(args.record.read_text())))
    print(f"wrote {args.report}")


if __name__ == "__main__":
    main()
