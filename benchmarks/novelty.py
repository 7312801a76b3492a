"""Does the novelty percentile flag cell types the reference lacks, and leave its own types alone in other batches?

Two measurements on real PBMCs, for the package's novelty (``rank profile (package)``, read as ``predict`` writes
it) and for the candidates of :mod:`harness.novelty` (among them the package's method before, ``ppca (before)``, the
class-conditional probabilistic PCA that main used before this benchmark):

1. **Held-out types.** pbmc3k's evaluation split (stratified 80/20, ``random_state`` = seed): a model is trained
   without one cell type at a time (B, NK, CD14+ Mono, FCGR3A+ Mono, DC; Platelet has 3 test cells), and the test
   cells are scored: AUROC of the novelty percentile (held-out type vs the known types) and the share of held-out
   and of known cells above each threshold.
2. **Other chemistries.** The model trained on all pbmc3k training cells (10x v1) scores the four unlabelled PBMC
   sets of ``../shared/data/scrna/unlabelled_pbmc`` (10x v1 of another donor, v2, v3, 5'): PBMCs of the types the
   reference has, so every flagged cell is a false "Unknown"; shares per predicted type as well, and for the cells
   whose call their markers support (``MARKERS``: e.g. called CD14+ Mono with CD14 and LYZ in the set's top
   quartile). The held-out models score those sets too: the cells that the model trained on every type calls the
   held-out type (its calls stand in for labels, which these sets lack) should be flagged, the others not.

**Validation and reported splits.** The recommended threshold (``novelty_threshold="auto"``, recorded as
``meta["recommended_threshold"]``) is chosen on the held-out types of ``VALIDATION_HELD_OUT`` and the sets of
``VALIDATION_SETS`` only: of ``THRESHOLDS``, the lowest (the one flagging most held-out cells) that calls at most
``FALSE_UNKNOWN_BUDGET`` (5%) of the validation sets' cells Unknown. The report's summary states the other held-out
types and sets (among them 10x v3, the set where the method before called 99% of the CD14 monocytes novel). The package's
settings (``N_GENES`` = 500 genes in the rank profile; a truncation of each cell's ranks to its top 30-100 genes, not
adopted) were compared on the validation split only.

Each model is the default ``SCTransformer`` trained for ``--max-epochs`` epochs (seed = split seed); the novelty
depends on the model only through its panel and normalisation (and, for the per-type tables, its calls). The
candidates are fitted on the panel genes that every query measures; the package's percentile is scored as
``predict`` scores it (refitted on the genes each query measures, from the 2,000 reference cells it keeps).
``ppca, depth-matched query`` scores queries whose counts were thinned (binomially, seeded) to the reference's
median panel depth before normalisation.

Usage (from the project root; about 15 minutes per seed on 2 busy cores, one torch thread)::

    SCTRANSFORMER_TOOLS_DATA=../shared/data/regulons python benchmarks/novelty.py --seeds 0 1 \\
        --cache /tmp/novelty_cache

writes ``benchmarks/results/novelty.json``, ``docs/results/novelty.md`` and ``docs/results/novelty.png``;
``--report-only`` redraws the report and figure from the JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # a script: figures go to files
import matplotlib.pyplot as plt
import numpy as np
from scipy import sparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from harness.novelty import CANDIDATES, ppca_cross_fitted  # noqa: E402

UNLABELLED = ROOT.parent / "shared" / "data" / "scrna" / "unlabelled_pbmc"
#: Query sets of other chemistries: label -> file stem in ``UNLABELLED``.
SETS = {
    "10x v1, donor A": "pbmc_frozen_donorA_10xv1",
    "10x v2": "pbmc1k_10xv2",
    "10x v3": "pbmc1k_10xv3",
    "10x 5'": "pbmc1k_10x5prime",
}
TEST = "pbmc3k test (10x v1)"
HELD_OUT = ("B", "NK", "CD14+ Mono", "FCGR3A+ Mono", "DC")
#: The validation split that chooses the recommended threshold; the report's summary is on the other types and sets.
VALIDATION_HELD_OUT = ("B", "NK")
VALIDATION_SETS = ("10x v2", "10x 5'")
#: Marker genes of reference types: a cell called the type with every marker in the query's top quartile is a cell of
#: that type by its markers (no labels in these sets), so flagging it is a false Unknown beyond doubt.
MARKERS = {
    "CD14+ Mono": ("CD14", "LYZ"),
    "FCGR3A+ Mono": ("FCGR3A", "MS4A7"),
    "B": ("MS4A1", "CD79A"),
    "NK": ("GNLY", "NKG7"),
    "CD8 T": ("CD8A", "CD8B"),
}
THRESHOLDS = (0.9, 0.95, 0.97, 0.975, 0.98, 0.99, 0.999)
#: The recommended threshold is the lowest with at most this share of the validation sets' cells flagged (their cells
#: are of the reference's types: each flagged one is a false Unknown), 1 - 0.95 as the percentile promises in-batch.
FALSE_UNKNOWN_BUDGET = 0.05
PACKAGE = "rank profile (package)"
BEFORE = "ppca (before)"
DEPTH = "ppca, depth-matched query"
ALL = "all types"
METHODS = (*CANDIDATES, DEPTH, PACKAGE)


# ---------------------------------------------------------------------------------------------- extraction
def _slug(name: str) -> str:
    return name.replace(" ", "_").replace("+", "p")


def thinned(adata, panel: np.ndarray, target: float, seed: int):
    """A copy of ``adata`` whose counts are thinned binomially to at most ``target`` counts over the panel genes."""
    counts = sparse.csr_matrix(adata.X)
    depth = np.asarray(counts[:, adata.var_names.isin(panel)].sum(1)).ravel()
    keep = np.minimum(1.0, target / np.maximum(depth, 1.0))
    rng = np.random.default_rng(seed)
    data = rng.binomial(counts.data.astype(np.int64), np.repeat(keep, np.diff(counts.indptr))).astype(np.float32)
    out = adata.copy()
    out.X = sparse.csr_matrix((data, counts.indices, counts.indptr), shape=counts.shape)
    out.obs = out.obs.drop(columns=[c for c in ("n_counts", "library_size") if c in out.obs])
    return out


def train_and_extract(seed: int, held_out: str | None, max_epochs: int) -> dict:
    """Train one model and read what the scores need: panel expression, calls and the package's novelty."""
    import anndata as ad
    import torch
    from harness.datasets import load_split

    import sctransformer_tools as sct

    split = load_split("pbmc3k", seed)
    ref = split.train if held_out is None else split.train[split.train.obs["cell_type"] != held_out].copy()
    sct.SCTransformer.setup_anndata(ref, labels_key="cell_type", regulons="collectri")
    model = sct.SCTransformer(ref, seed=seed)
    start = time.perf_counter()
    model.train(max_epochs=max_epochs, enable_progress_bar=False)
    types = np.asarray(model.cell_types, dtype=str)
    panel = np.asarray(model.spec_.genes, dtype=str)
    out = {
        "types": types,
        "panel": panel,
        "train_s": time.perf_counter() - start,
        "ref_y": np.searchsorted(types, ref.obs["cell_type"].astype(str).to_numpy()),
    }
    assert (types[out["ref_y"]] == ref.obs["cell_type"].astype(str).to_numpy()).all()

    def expression(adata):
        with model.reader.read(adata) as data:
            normalize = model.module.tokenizer.normalize  # the log-normalised panel expression the novelty reads
            x = torch.cat(model.reader.map_batches(data, lambda b: normalize(b.x, b.library, b.measured).float().cpu()))
            return sparse.csr_matrix(x.numpy()), np.asarray(data.measured)

    out["ref_x"], _ = expression(ref)
    depth = np.asarray(ref[:, panel].X.sum(1)).ravel()
    target = float(np.median(depth))
    queries = {TEST: split.test} | {label: ad.read_h5ad(UNLABELLED / f"{stem}.h5ad") for label, stem in SETS.items()}
    for i, (label, query) in enumerate(queries.items()):
        key = _slug(label)
        query = query.copy()
        model.predict(query)  # the package's novelty, as a user gets it
        out[f"{key}:novelty"] = query.obs["sctransformer_novelty"].to_numpy()
        out[f"{key}:pred"] = np.searchsorted(types, query.obs["sctransformer_prediction"].astype(str).to_numpy())
        out[f"{key}:x"], out[f"{key}:measured"] = expression(query)
        out[f"{key}:thin_x"], _ = expression(thinned(query, panel, target, seed * 100 + i))
        if label == TEST:
            out[f"{key}:y"] = query.obs["cell_type"].astype(str).to_numpy()
    return out


def load_or_extract(seed: int, held_out: str | None, max_epochs: int, cache: Path) -> dict:
    path = cache / f"seed{seed}_{_slug(held_out or ALL)}_epochs{max_epochs}.npz"
    if not path.exists():
        arrays = train_and_extract(seed, held_out, max_epochs)
        flat = {}
        for key, value in arrays.items():
            if sparse.issparse(value):
                for part in ("data", "indices", "indptr"):
                    flat[f"{key}@{part}"] = getattr(value, part)
                flat[f"{key}@shape"] = np.asarray(value.shape)
            else:
                value = np.asarray(value)
                flat[key] = value.astype(str) if value.dtype == object else value
        np.savez(path, **flat)
    with np.load(path, allow_pickle=False) as stored:
        raw = dict(stored)
    arrays = {}
    for key in {k.split("@")[0] for k in raw}:
        if f"{key}@shape" in raw:
            parts = (raw[f"{key}@data"], raw[f"{key}@indices"], raw[f"{key}@indptr"])
            arrays[key] = sparse.csr_matrix(parts, shape=tuple(raw[f"{key}@shape"])).toarray()
        else:
            arrays[key] = raw[key]
    return arrays


# ---------------------------------------------------------------------------------------------- scoring
_SUPPORT: dict[str, dict[str, np.ndarray]] = {}


def marker_support(label: str) -> dict[str, np.ndarray]:
    """Per type of :data:`MARKERS`: the cells of set ``label`` with every marker in the set's top quartile.

    Expression is the counts normalised to 10,000 per cell and log1p-transformed (all genes); a marker whose top
    quartile is zero counts as high wherever it is detected.
    """
    if label not in _SUPPORT:
        import anndata as ad

        adata = ad.read_h5ad(UNLABELLED / f"{SETS[label]}.h5ad")
        counts = sparse.csr_matrix(adata.X)
        total = np.maximum(np.asarray(counts.sum(1)).ravel(), 1.0)
        support = {}
        for cell_type, genes in MARKERS.items():
            high = np.ones(adata.n_obs, dtype=bool)
            for gene in genes:
                column = np.flatnonzero(adata.var_names == gene)
                if not len(column):
                    high[:] = False
                    continue
                x = np.log1p(np.asarray(counts[:, column[0]].todense()).ravel() / total * 1e4)
                high &= x > max(float(np.quantile(x, 0.75)), 0.0)
            support[cell_type] = high
        _SUPPORT[label] = support
    return _SUPPORT[label]


def _row(seed, model, method, query, group, novelty, auroc=None) -> dict:
    return {
        "seed": seed,
        "model": model,
        "method": method,
        "query": query,
        "group": group,
        "n": int(len(novelty)),
        "median": float(np.median(novelty)) if len(novelty) else None,
        "flagged": {str(t): float((novelty > t).mean()) if len(novelty) else None for t in THRESHOLDS},
        "auroc": auroc,
    }


def score_model(arrays: dict, seed: int, held_out: str | None, full: dict | None) -> list[dict]:
    """Rows for one model: every method on the test cells and on every other-chemistry set."""
    from sklearn.metrics import roc_auc_score

    types = list(arrays["types"])
    labels = [TEST, *SETS]
    common = np.logical_and.reduce([arrays[f"{_slug(q)}:measured"] for q in labels])
    x = arrays["ref_x"][:, common]
    y = arrays["ref_y"]
    scorers = {name: make(x, y, len(types), seed=seed) for name, make in CANDIDATES.items()}
    scorers[DEPTH] = scorers.get("ppca, cross-fitted") or ppca_cross_fitted(x, y, len(types), seed=seed)
    model = held_out or ALL
    rows = []
    for label in labels:
        key = _slug(label)
        predicted = arrays[f"{key}:pred"]
        novelty = {PACKAGE: arrays[f"{key}:novelty"]}
        for name, scorer in scorers.items():
            source = f"{key}:thin_x" if name == DEPTH else f"{key}:x"
            novelty[name] = scorer(arrays[source][:, common], predicted)
        if label == TEST:
            truth = arrays[f"{key}:y"]
            novel = truth == held_out if held_out else np.zeros(len(truth), bool)
            for name, value in novelty.items():
                auroc = float(roc_auc_score(novel, value)) if novel.any() else None
                rows.append(_row(seed, model, name, label, "known", value[~novel], auroc))
                if novel.any():
                    rows.append(_row(seed, model, name, label, "held-out", value[novel], auroc))
            continue
        if held_out is None:
            for name, value in novelty.items():
                rows.append(_row(seed, model, name, label, "all", value))
                for t, type_name in enumerate(types):
                    if (predicted == t).any():
                        rows.append(_row(seed, model, name, label, f"called {type_name}", value[predicted == t]))
                for type_name, high in marker_support(label).items():
                    cells = high & (predicted == types.index(type_name))
                    rows.append(_row(seed, model, name, label, f"markers {type_name}", value[cells]))
        else:  # the full model's calls stand in for labels
            full_types = list(full["types"])
            pseudo = full[f"{key}:pred"] == full_types.index(held_out)
            for name, value in novelty.items():
                rows.append(_row(seed, model, name, label, "held-out (called so by the full model)", value[pseudo]))
                rows.append(_row(seed, model, name, label, "others", value[~pseudo]))
    return rows


# ---------------------------------------------------------------------------------------------- report
def _frame(rows):
    import pandas as pd

    frame = pd.DataFrame(rows)
    for t in THRESHOLDS:
        frame[f"f{t}"] = frame["flagged"].map(lambda d, t=t: d[str(t)])
    return frame


def _cell(values, pct: bool = True) -> str:
    values = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if not len(values):
        return "–"
    scale, digits = (100, 0) if pct else (1, 3)
    mean = f"{values.mean() * scale:.{digits}f}"
    return mean if len(values) == 1 else f"{mean} ± {values.std(ddof=1) * scale:.{digits}f}"


def _table(header: list[str], lines: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(line) + " |" for line in lines]
    return "\n".join(out)


def summaries(frame, split: str = "reported") -> dict:
    """Per method and threshold: false Unknown on other chemistries, on the test cells, and held-out recall.

    ``split`` ``"validation"`` reads the held-out types of :data:`VALIDATION_HELD_OUT` and the sets of
    :data:`VALIDATION_SETS` (where the threshold is chosen); ``"reported"`` the others (what the report states).
    """
    validation = split == "validation"
    sets = [q for q in SETS if (q in VALIDATION_SETS) == validation]
    out = {}
    for method in METHODS:
        m = frame[frame["method"] == method]
        chem = m[(m["model"] == ALL) & (m["group"] == "all") & m["query"].isin(sets)]
        markers = m[(m["model"] == ALL) & m["group"].str.startswith("markers ") & m["query"].isin(sets) & (m["n"] > 0)]
        test = m[(m["model"] == ALL) & (m["query"] == TEST)]
        held = m[(m["model"] != ALL) & (m["query"] == TEST) & (m["group"] == "held-out")]
        held = held[held["model"].isin(VALIDATION_HELD_OUT) == validation]
        per_set = {q: [float(chem[chem["query"] == q][f"f{t}"].mean()) for t in THRESHOLDS] for q in sets}
        out[method] = {
            "false_unknown_other_chemistries": [float(chem[f"f{t}"].mean()) for t in THRESHOLDS],
            "false_unknown_worst_chemistry": [max(v[i] for v in per_set.values()) for i in range(len(THRESHOLDS))],
            "false_unknown_marker_supported": [
                float((markers[f"f{t}"] * markers["n"]).sum() / max(markers["n"].sum(), 1)) for t in THRESHOLDS
            ],
            "false_unknown_test": [float(test[f"f{t}"].mean()) for t in THRESHOLDS],
            "held_out_flagged": [float(held.groupby("model")[f"f{t}"].mean().mean()) for t in THRESHOLDS],
            "held_out_auroc": float(held.groupby("model")["auroc"].mean().mean()),
            "sets": sets,
            "held_out": sorted(held["model"].unique()),
        }
    return out


def recommended_threshold(summary: dict) -> float:
    """The lowest threshold that flags at most :data:`FALSE_UNKNOWN_BUDGET` of the other chemistries' cells (mean
    over the sets), read on the validation split (``summaries(frame, "validation")``); the highest if none does.

    Among the thresholds within the budget the lowest flags the most held-out cells.
    """
    within = [
        t
        for t, f in zip(THRESHOLDS, summary["false_unknown_other_chemistries"], strict=True)
        if f <= FALSE_UNKNOWN_BUDGET
    ]
    return within[0] if within else THRESHOLDS[-1]


def limits(frame, meta: dict) -> str:
    """A generated sentence on where the package's percentile ranks held-out cells worse than the method before."""
    worse = []
    for h in meta["held_out"]:
        sel = frame[(frame["model"] == h) & (frame["query"] == TEST) & (frame["group"] == "held-out")]
        before, now = (float(sel[sel["method"] == m]["auroc"].mean()) for m in (BEFORE, PACKAGE))
        if now < before - 0.01:
            worse.append(f"{h} {now:.3f} against {before:.3f}")
    seeds = len(meta["seeds"])
    text = (
        f"**Limits.** {seeds} seed{'s' if seeds > 1 else ''}. "
        + (
            "The rank profile orders held-out cells among known ones worse than the method before for "
            + "; ".join(worse)
            + " (AUROC): types close to a reference type stay hard to flag (the shares flagged are in the table "
            "below). "
            if worse
            else ""
        )
        + "A set's cells carry no labels: its false Unknown counts every flagged cell, including cells of types "
        "pbmc3k lacks (if a set has any), so it is an upper bound."
    )
    return text


def before_after(frame, meta: dict, thresholds) -> str:
    """The table of the summary: before and now, per set (all cells, marker-supported monocytes) and held-out type."""
    rows = []
    for q in [TEST, *SETS]:
        for group in ("known", "all", "markers CD14+ Mono"):
            sel = frame[(frame["model"] == ALL) & (frame["query"] == q) & (frame["group"] == group)]
            if not sel.empty and sel["n"].max() > 0:
                split = "validation" if q in VALIDATION_SETS else "reported"
                rows.append((f"{q}: {'all cells' if group != 'markers CD14+ Mono' else group}", split, sel))
    for h in meta["held_out"]:
        sel = frame[(frame["model"] == h) & (frame["query"] == TEST) & (frame["group"] == "held-out")]
        rows.append((f"held out: {h}", "validation" if h in VALIDATION_HELD_OUT else "reported", sel))
    header = ["cells", "split", "n", *[f"{m} at {t}" for t in thresholds for m in ("before", "now")]]
    body = []
    for name, split, sel in rows:
        cells = [_cell(sel[sel["method"] == method][f"f{t}"]) for t in thresholds for method in (BEFORE, PACKAGE)]
        body.append([name, split, f"{sel[sel['method'] == PACKAGE]['n'].mean():.0f}", *cells])
    return _table(header, body)


def write_report(records: dict, path: Path, figure: Path) -> None:
    frame = _frame(records["rows"])
    meta = records["meta"]
    summary = summaries(frame)
    validation = summaries(frame, "validation")
    best = recommended_threshold(validation[PACKAGE])
    i_best = THRESHOLDS.index(best)
    before = summary[BEFORE]
    after = summary[PACKAGE]
    lines = [
        "# Novelty across chemistries and held-out cell types",
        "",
        f"Generated by `benchmarks/novelty.py` from `benchmarks/results/novelty.json` (seeds "
        f"{', '.join(map(str, meta['seeds']))}; default models trained for {meta['max_epochs']} epochs; "
        f"{meta['machine']}). Shares are percentages of cells, mean ± sd over seeds. The script's docstring says "
        "how each number is measured; the candidates are described in `benchmarks/harness/novelty.py`.",
        "",
        "## Summary",
        "",
        f"**Recommended `novelty_threshold={best}`**, chosen on the validation split only (held-out types "
        f"{', '.join(VALIDATION_HELD_OUT)}; sets {', '.join(VALIDATION_SETS)}): of the thresholds measured, the lowest "
        f"that calls at most {FALSE_UNKNOWN_BUDGET:.0%} of the validation sets' cells Unknown (mean over the sets; "
        f"there {validation[PACKAGE]['false_unknown_other_chemistries'][i_best]:.1%}, held-out cells flagged "
        f"{validation[PACKAGE]['held_out_flagged'][i_best]:.0%}). On the reported split (held-out types "
        f"{', '.join(after['held_out'])}; sets "
        f"{', '.join(after['sets'])}) at {best}, the package's rank profile calls "
        f"**{after['false_unknown_other_chemistries'][i_best]:.0%}** of the other chemistries' cells Unknown (worst "
        f"set {after['false_unknown_worst_chemistry'][i_best]:.0%}; cells whose call its markers support "
        f"{after['false_unknown_marker_supported'][i_best]:.0%}; pbmc3k's own test cells "
        f"{after['false_unknown_test'][i_best]:.0%}) and flags **{after['held_out_flagged'][i_best]:.0%}** of the "
        f"cells of a type held out of training (AUROC {after['held_out_auroc']:.3f}). The method before called "
        f"{before['false_unknown_other_chemistries'][i_best]:.0%} of those cells Unknown at that threshold (worst set "
        f"{before['false_unknown_worst_chemistry'][i_best]:.0%}; marker-supported "
        f"{before['false_unknown_marker_supported'][i_best]:.0%}) and flagged {before['held_out_flagged'][i_best]:.0%}"
        f" of the held-out cells (AUROC {before['held_out_auroc']:.3f}).",
        "",
        limits(frame, meta),
        "",
        "### Before and after",
        "",
        "Share of cells flagged (%), mean ± sd over seeds, the method before (`ppca (before)`, as on main) and the "
        "package's now, at 0.95 (the threshold the docs used to suggest) and at the recommended threshold. "
        "`markers CD14+ Mono`: the cells called CD14+ Mono with CD14 and LYZ in the set's top quartile "
        "(`MARKERS` in the script), monocytes by their markers; `held out: X`: pbmc3k test cells of type X, the "
        "model trained without X.",
        "",
        before_after(frame, meta, sorted({0.95, best})),
        "",
        f"![novelty]({figure.name})",
        "",
        "## Every method at every threshold",
        "",
        "Reported split. False Unknown: share flagged of the other chemistries' cells (mean over the reported "
        "sets; worst set in brackets) and of pbmc3k's test cells (model trained on every type). Held out: share "
        "flagged of the test cells of a type held out of training (mean over the reported held-out types); AUROC of "
        "the percentile, held-out vs known test cells.",
        "",
    ]
    header = ["method", "AUROC", *[f"{t}: false Unknown other chem. (worst) / test / held out" for t in THRESHOLDS]]
    body = []
    for method in METHODS:
        s = summary[method]
        cells = [
            f"{100 * s['false_unknown_other_chemistries'][i]:.0f} ({100 * s['false_unknown_worst_chemistry'][i]:.0f})"
            f" / {100 * s['false_unknown_test'][i]:.0f} / {100 * s['held_out_flagged'][i]:.0f}"
            for i in range(len(THRESHOLDS))
        ]
        body.append([("**" + method + "**") if method == PACKAGE else method, f"{s['held_out_auroc']:.3f}", *cells])
    lines += [_table(header, body), ""]

    def block(title, note, method_rows, columns, select, t):
        lines.extend([f"## {title}", "", note, ""])
        out = []
        for method in method_rows:
            m = frame[frame["method"] == method]
            out.append([method, *[_cell(select(m, c)[f"f{t}"]) for c in columns]])
        lines.extend([_table(["method", *columns], out), ""])

    for t in (0.95, best) if best != 0.95 else (0.95,):
        block(
            f"Reference types in other chemistries, threshold {t}",
            "Share of cells flagged (%) by the model trained on all pbmc3k training cells.",
            METHODS,
            [TEST, *SETS],
            lambda m, c: m[(m["model"] == ALL) & (m["query"] == c) & (m["group"].isin(["all", "known"]))],
            t,
        )
        held_cols = list(meta["held_out"])
        block(
            f"Held-out types in pbmc3k's test cells, threshold {t}",
            "Share of the held-out type's test cells flagged (%); `known` is the share of the other test cells "
            "flagged, mean over the held-out models. Test cells per held-out type: "
            + ", ".join(
                f"{h} {int(frame[(frame['model'] == h) & (frame['group'] == 'held-out')]['n'].iloc[0])}"
                for h in held_cols
            )
            + ".",
            METHODS,
            [*held_cols, "known"],
            lambda m, c: (
                m[(m["model"] != ALL) & (m["query"] == TEST) & (m["group"] == "known")]
                if c == "known"
                else m[(m["model"] == c) & (m["query"] == TEST) & (m["group"] == "held-out")]
            ),
            t,
        )
        block(
            f"Held-out types in other chemistries, threshold {t}",
            "The held-out models on the four other sets: share flagged (%) of the cells the full model calls the "
            "held-out type (mean over held-out types and seeds) and of the other cells.",
            METHODS,
            [f"{q}: {g}" for q in SETS for g in ("held out", "others")],
            lambda m, c: m[
                (m["model"] != ALL)
                & (m["query"] == c.split(": ")[0])
                & (m["group"] == ("others" if c.endswith("others") else "held-out (called so by the full model)"))
                & (m["n"] > 0)
            ],
            t,
        )
    lines += ["## AUROC per held-out type (pbmc3k test cells)", ""]
    out = []
    for method in METHODS:
        m = frame[(frame["method"] == method) & (frame["group"] == "held-out")]
        out.append([method, *[_cell(m[m["model"] == h]["auroc"], pct=False) for h in meta["held_out"]]])
    lines += [_table(["method", *meta["held_out"]], out), ""]
    for t in sorted({0.95, best}):
        lines += [
            f"## Per predicted type, threshold {t}",
            "",
            "Share flagged (%) of the cells called each type, before and now (cells called: mean over seeds); "
            "then of the cells called a type with every marker of it in the set's top quartile.",
            "",
        ]
        groups = sorted(
            g for g in frame["group"].unique() if g.startswith("called ") and not g.endswith(("DC", "Platelet"))
        ) + sorted(g for g in frame["group"].unique() if g.endswith(("called DC", "called Platelet")))
        out = []
        for q in SETS:
            for g in groups:
                sel = frame[(frame["model"] == ALL) & (frame["query"] == q) & (frame["group"] == g)]
                if sel.empty:
                    continue
                cells = [_cell(sel[sel["method"] == m][f"f{t}"]) for m in (BEFORE, PACKAGE)]
                out.append([q, g.removeprefix("called "), f"{sel[sel['method'] == PACKAGE]['n'].mean():.0f}", *cells])
        for q in SETS:
            for type_name in MARKERS:
                sel = frame[
                    (frame["model"] == ALL) & (frame["query"] == q) & (frame["group"] == f"markers {type_name}")
                ]
                if sel.empty or sel["n"].max() == 0:
                    continue
                cells = [_cell(sel[sel["method"] == m][f"f{t}"]) for m in (BEFORE, PACKAGE)]
                genes = "/".join(MARKERS[type_name])
                out.append(
                    [q, f"{type_name}, {genes} high", f"{sel[sel['method'] == PACKAGE]['n'].mean():.0f}", *cells]
                )
        lines += [_table(["set", "called", "cells", BEFORE, PACKAGE], out), ""]
    path.write_text("\n".join(lines))
    draw(frame, summary, figure, best)


def draw(frame, summary: dict, path: Path, best: float) -> None:
    """Three panels: false Unknown per query set, held-out types flagged, and the trade-off over thresholds."""
    shown = [BEFORE, "ppca, cross-fitted", "spearman to nearest centroid", PACKAGE]
    colors = dict(zip(shown, ["#d62728", "#ff7f0e", "#9467bd", "#1f77b4"], strict=True))
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    t = f"f{best}"
    width = 0.8 / len(shown)
    for ax, columns, select, title in (
        (
            axes[0],
            [TEST, *SETS],
            lambda m, c: m[(m["model"] == ALL) & (m["query"] == c) & (m["group"].isin(["all", "known"]))],
            f"Reference types flagged at {best} (false Unknown)",
        ),
        (
            axes[1],
            sorted(frame.loc[frame["model"] != ALL, "model"].unique()),
            lambda m, c: m[(m["model"] == c) & (m["query"] == TEST) & (m["group"] == "held-out")],
            f"Held-out type flagged at {best} (pbmc3k test)",
        ),
    ):
        for i, method in enumerate(shown):
            m = frame[frame["method"] == method]
            means = [100 * select(m, c)[t].mean() for c in columns]
            sds = [100 * select(m, c)[t].std(ddof=1) if len(select(m, c)) > 1 else 0 for c in columns]
            ax.bar(
                np.arange(len(columns)) + (i - (len(shown) - 1) / 2) * width,
                means,
                width,
                yerr=sds,
                color=colors[method],
                label=method,
                capsize=2,
            )
        ax.set_xticks(
            np.arange(len(columns)), [c.replace(" (10x v1)", "") for c in columns], rotation=25, ha="right", fontsize=8
        )
        ax.set_ylabel("% of cells flagged")
        ax.set_ylim(0, 100)
        ax.set_title(title, fontsize=10)
    axes[0].axhline(100 * (1 - best), color="grey", ls=":", lw=1)
    axes[0].legend(fontsize=8, loc="upper left")
    ax = axes[2]
    for method in shown:
        s = summary[method]
        ax.plot(
            100 * np.asarray(s["false_unknown_other_chemistries"]),
            100 * np.asarray(s["held_out_flagged"]),
            "o-",
            color=colors[method],
            label=method,
        )
        for x, y, thr in zip(
            100 * np.asarray(s["false_unknown_other_chemistries"]),
            100 * np.asarray(s["held_out_flagged"]),
            THRESHOLDS,
            strict=True,
        ):
            ax.annotate(str(thr), (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("% of other chemistries' cells flagged (mean of the reported sets)")
    ax.set_ylabel("% of held-out type's cells flagged (mean of the reported types)")
    ax.set_title("Trade-off over thresholds (reported split)", fontsize=10)
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--max-epochs", type=int, default=4)
    parser.add_argument("--held-out", nargs="+", default=list(HELD_OUT))
    parser.add_argument("--cache", type=Path, default=None, help="folder keeping each model's arrays between runs")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "novelty.json")
    parser.add_argument("--report", type=Path, default=ROOT / "docs" / "results" / "novelty.md")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    figure = args.report.with_suffix(".png")
    if args.report_only:
        write_report(json.loads(args.out.read_text()), args.report, figure)
        return 0
    import torch
    from harness.resources import machine

    torch.set_num_threads(1)
    logging.getLogger("sctransformer_tools").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as scratch:
        cache = args.cache or Path(scratch)
        cache.mkdir(parents=True, exist_ok=True)
        rows, train_s = [], []
        for seed in args.seeds:
            full = load_or_extract(seed, None, args.max_epochs, cache)
            train_s.append(float(full["train_s"]))
            rows += score_model(full, seed, None, None)
            print(f"seed {seed}: all types scored", flush=True)
            for held_out in args.held_out:
                arrays = load_or_extract(seed, held_out, args.max_epochs, cache)
                rows += score_model(arrays, seed, held_out, full)
                print(f"seed {seed}: without {held_out} scored", flush=True)
    meta = {
        "seeds": args.seeds,
        "max_epochs": args.max_epochs,
        "held_out": args.held_out,
        "thresholds": list(THRESHOLDS),
        "sets": SETS,
        "methods": list(METHODS),
        "train_s_all_types": train_s,
        "machine": f"{machine()['cpu']}, torch threads 1",
        "validation_held_out": list(VALIDATION_HELD_OUT),
        "validation_sets": list(VALIDATION_SETS),
        "markers": {k: list(v) for k, v in MARKERS.items()},
    }
    meta["recommended_threshold"] = recommended_threshold(summaries(_frame(rows), "validation")[PACKAGE])
    records = {"meta": meta, "rows": rows}
    args.out.write_text(json.dumps(records, indent=1))
    write_report(records, args.report, figure)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
