"""The study's report: summary tables, paired comparisons and a plain-language reading generated from the records.

No sentence is written by hand: every number, verdict and regulon set name comes from the records.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .figures import plot_attention_auroc, plot_metric_bars, plot_umaps
from .records import HEADERS, PROFILE_ORDER, numeric, order_frame, records_frame, umap_file, variant_name
from .records import main_regulons as main_regulons_of
from .stats import paired_comparison, pooled_comparison

#: Metrics summarised per dataset x method x mask x regulons (mean ± sd over seeds).
SUMMARY_METRICS = (
    "macro_f1",
    "accuracy",
    "balanced_accuracy",
    "rare_f1",
    "silhouette",
    "ari",
    "nmi",
    "attention_auroc",
    "attention_auroc_null",
    "train_s",
    "peak_mb",
    "peak_delta_mb",
)
_DECIMALS = {"train_s": 0, "peak_mb": 0, "peak_delta_mb": 0}
#: ``attention_auroc_*`` columns that are not AUROCs against another regulon set.
_AUROC_EXTRA = {"attention_auroc_null", "attention_auroc_null_sd", "attention_auroc_vs_shuffled"}


def summary_table(records: Iterable[Mapping], metrics: Sequence[str] = SUMMARY_METRICS) -> pd.DataFrame:
    """Mean and standard deviation over seeds of every metric, per profile x dataset x method x mask x regulons.

    Parameters
    ----------
    records
        Evaluation records.
    metrics
        Metrics to summarise (absent ones are skipped).

    Returns
    -------
    One row per group: ``profile``, ``dataset``, ``method``, ``mask``, ``regulons``, ``variant``,
    ``n_seeds``, then ``{metric}_mean`` and ``{metric}_sd`` (sd with ``ddof=1``; NaN for one seed).

    Examples
    --------
    >>> from harness.report import summary_table
    >>> recs = [
    ...     {"dataset": "d", "method": "scanvi", "mask": None, "regulons": None, "seed": s, "macro_f1": f}
    ...     for s, f in enumerate([0.8, 0.9])
    ... ]
    >>> row = summary_table(recs).iloc[0]
    >>> int(row["n_seeds"]), float(round(row["macro_f1_mean"], 2)), float(round(row["macro_f1_sd"], 3))
    (2, 0.85, 0.071)
    """
    frame = records_frame(records)
    if frame.empty:
        return pd.DataFrame()
    frame = order_frame(frame)
    keys = ["profile", "dataset", "method", "mask", "regulons", "variant"]
    rows = []
    for group_key, group in frame.groupby(keys, sort=False, dropna=False):
        row = dict(zip(keys, group_key, strict=True)) | {"n_seeds": int(group["seed"].nunique())}
        for metric in metrics:
            if metric not in group:
                continue
            values = pd.to_numeric(group[metric], errors="coerce").dropna()
            row[f"{metric}_mean"] = float(values.mean()) if len(values) else np.nan
            row[f"{metric}_sd"] = float(values.std(ddof=1)) if len(values) > 1 else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------- text


def _fmt(mean: float, sd: float | None = None, decimals: int = 3) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    text = f"{mean:,.{decimals}f}"
    if sd is not None and not (isinstance(sd, float) and math.isnan(sd)):
        text += f" ± {sd:,.{decimals}f}"
    return text


def _spread(values: pd.Series) -> str:
    """Mean ± sd of a column over seeds (sd only with two or more values)."""
    values = values.dropna()
    return _fmt(values.mean(), values.std(ddof=1) if len(values) > 1 else None)


def _percent(share: float) -> str:
    """A share as a percentage with at least two significant digits (0.0093%, 9.4%, 42.9%)."""
    pct = 100 * float(share)
    if pct == 0 or pct >= 1:
        return f"{pct:.1f}%"
    return f"{pct:.2g}%"


def _markdown_table(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _verdict(row: Mapping, metric_name: str, comparator: str, unit: str = "seed") -> str:
    """One sentence for a paired comparison, following its numbers (``unit``: what one pair is)."""
    n, mean, sd = row["n_pairs"], row["mean"], row["sd"]
    size = f"{abs(mean):.3f}" + (f" ± {sd:.3f}" if not math.isnan(sd) else "")
    if row["ties"] == n:
        return f"grn and {comparator} are tied on {metric_name} ({n}/{n} {unit}s within 0.0005)."
    if mean > 0:
        head, count = f"grn beats {comparator} by {size} {metric_name}", f"{row['wins']}/{n} {unit}s"
    else:
        head, count = f"grn trails {comparator} by {size} {metric_name}", f"{row['losses']}/{n} {unit}s"
    if n < 2:
        return f"{head} (1 {unit}: no paired test, no estimate of {unit}-to-{unit} noise)."
    tail = f"paired t-test p = {row['p_value']:.2g}" if row["p_value"] is not None else "no paired test"
    if row.get("sign_p") is not None and not pd.isna(row.get("sign_p")):
        tail += f", sign test p = {row['sign_p']:.2g}"
    consistent = max(row["wins"], row["losses"]) == n
    if not math.isnan(sd) and abs(mean) < sd:
        qual = f"smaller than its {unit}-to-{unit} spread"
    elif consistent:
        qual = f"same sign in every {unit}"
    else:
        qual = f"not the same sign in every {unit}"
    return f"{head} ({count}, {tail}; {qual})."


def reading(records: Iterable[Mapping], metric: str = "macro_f1", main_regulons: str | None = None) -> list[str]:
    """A plain-language reading of the records, one paragraph per profile x dataset, generated from the numbers.

    Regulon sets are named as the records name them.

    Parameters
    ----------
    records
        Evaluation records.
    metric
        Main metric.
    main_regulons
        Regulon set whose ``grn`` model is compared with the peers, the other sets and (for time) the dense
        control; default: the set with the most scTransformer runs of each dataset.

    Returns
    -------
    Markdown paragraphs (bulleted sentences).
    """
    records = list(records)
    frame = records_frame(records)
    if frame.empty:
        return ["No successful runs yet."]
    summary = summary_table(records)
    paired = paired_comparison(records, metric, main_regulons)
    name = HEADERS.get(metric, metric)
    out = []
    for (profile, dataset), group in summary.groupby(["profile", "dataset"], sort=False):
        lines = []
        ranked = group.dropna(subset=[f"{metric}_mean"]).sort_values(f"{metric}_mean", ascending=False)
        if not ranked.empty:
            best = ranked.iloc[0]
            lines.append(
                f"Highest {name}: **{best['variant']}** ({_fmt(best[f'{metric}_mean'], best[f'{metric}_sd'])}, "
                f"{best['n_seeds']} seed(s)); lowest: {ranked.iloc[-1]['variant']} "
                f"({_fmt(ranked.iloc[-1][f'{metric}_mean'], ranked.iloc[-1][f'{metric}_sd'])})."
            )
        for _, row in paired[(paired["profile"] == profile) & (paired["dataset"] == dataset)].iterrows():
            lines.append(_verdict(row, name, row["comparator"]).replace("grn", row["reference"], 1))
        dense = (
            frame[(frame["profile"] == profile) & (frame["dataset"] == dataset) & frame.get("attention_auroc").notna()]
            if "attention_auroc" in frame
            else frame.iloc[0:0]
        )
        for reg, att in dense.groupby("regulons"):
            a, null = numeric(att, "attention_auroc"), numeric(att, "attention_auroc_null")
            above = int((a > null).sum())
            lines.append(
                f"Attention of the dense model separates {reg} edges from random TF-target non-edges with AUROC "
                f"{_fmt(a.mean(), a.std(ddof=1) if len(a) > 1 else None)}; degree-preserving shuffled priors give "
                f"{_fmt(null.mean(), null.std(ddof=1) if len(null) > 1 else None)} "
                f"(real edges above the null in {above}/{len(a)} seeds; 0.5 = no preference)."
            )
            for column in sorted(c for c in att.columns if c.startswith("attention_auroc_") and c not in _AUROC_EXTRA):
                other = numeric(att, column).dropna()
                if len(other):
                    lines.append(
                        f"The same attention against the {column.removeprefix('attention_auroc_')} edges of its panel: "
                        f"AUROC {_fmt(other.mean(), other.std(ddof=1) if len(other) > 1 else None)}."
                    )
        sct = frame[
            (frame["profile"] == profile) & (frame["dataset"] == dataset) & (frame["method"] == "sctransformer")
        ]
        if "tf_top_overlap" in sct:
            for (mask, reg), g in sct.dropna(subset=["tf_top_overlap"]).groupby(["mask", "regulons"], sort=False):
                rho, overlap = numeric(g, "tf_activity_spearman"), numeric(g, "tf_top_overlap")
                null, sig = numeric(g, "tf_top_overlap_null"), numeric(g, "tf_overlap_significant")
                lines.append(
                    f"Top-10 TFs per cell type by attention of {mask} ({reg}) vs decoupler ULM activity on the same "
                    f"test cells: {_spread(overlap)} shared TFs (permutation null {_fmt(null.mean())}), Spearman "
                    f"{_spread(rho)}, overlap beyond chance (p < 0.05) in {_percent(sig.mean())} of "
                    f"{int(numeric(g, 'tf_activity_types').max())} types ({len(g)} seed(s))."
                )
        for reg, g in sct[sct["mask"] == "grn"].groupby("regulons"):
            rec = g.iloc[0]
            if pd.notna(rec.get("grn_edges_kept")) and pd.notna(rec.get("regulon_edges_total")):
                lines.append(
                    f"The {reg} mask keeps {int(rec['grn_edges_kept']):,} of {int(rec['regulon_edges_total']):,} "
                    f"regulon edges ({_percent(rec['grn_edges_kept'] / rec['regulon_edges_total'])}) and "
                    f"{int(rec['grn_tfs_kept']):,} of {int(rec['regulon_tfs_total']):,} TFs among the "
                    f"{int(rec['panel_genes']):,} panel genes."
                )
        match = numeric(sct, "query_panel_match")
        if match.notna().any() and match.min() < 0.999:
            span = (
                _percent(match.min())
                if match.max() - match.min() < 5e-4
                else f"{_percent(match.min())}–{_percent(match.max())}"
            )
            lines.append(
                f"The test set measures {span} of the model's panel genes; the rest are zero-filled (never tokens)."
            )
        if "precision" in sct and sct["precision"].nunique() > 1:  # runs made on different machines
            minority = sct["precision"].value_counts().index[-1]
            runs = sct[sct["precision"] == minority]
            lines.append(
                f"scTransformer trained at {sct['precision'].value_counts().index[0]} precision except "
                + ", ".join(f"{v} seed {s}" for v, s in zip(runs["variant"], runs["seed"], strict=True))
                + f" ({minority}): times across precisions are not comparable."
            )
        timing = group.set_index("variant")["train_s_mean"] if "train_s_mean" in group else pd.Series(dtype=float)
        main = main_regulons_of(sct, main_regulons)
        grn_name, dense_name = f"grn ({main})", f"dense ({main})"
        if {grn_name, dense_name} <= set(timing.index) and timing[grn_name] > 0:
            lines.append(
                f"Training the dense control took {timing[dense_name] / timing[grn_name]:.1f}x "
                f"the time of the GRN-masked model ({timing[dense_name]:.0f} s vs "
                f"{timing[grn_name]:.0f} s)."
            )
        excluded = frame[(frame["profile"] == profile) & (frame["dataset"] == dataset)]
        if "n_test_excluded" in excluded and excluded["n_test_excluded"].fillna(0).max() > 0:
            lines.append(
                f"Up to {int(excluded['n_test_excluded'].max())} test cells per seed had a type absent from "
                "training (or no mapped label) and were not scored."
            )
        out.append(f"**{dataset}** ({profile}):\n\n" + "\n".join(f"- {line}" for line in lines))
    pooled = pooled_comparison(records, metric, main_regulons=main_regulons)
    for profile, group in pooled.groupby("profile", sort=False):
        lines = [
            _verdict(row, name, row["comparator"], unit="pair").replace("grn", row["reference"], 1)
            + f" Per dataset: {', '.join(f'{d} {m:+.3f}' for d, m in zip(row['datasets'], row['dataset_means'], strict=True))}."
            for _, row in group.iterrows()
        ]
        out.append(f"**All datasets pooled** ({profile}):\n\n" + "\n".join(f"- {line}" for line in lines))
    return out


# --------------------------------------------------------------------------------------------- report


def _summary_markdown(summary: pd.DataFrame) -> str:
    metrics = [m for m in SUMMARY_METRICS if f"{m}_mean" in summary and summary[f"{m}_mean"].notna().any()]
    header = ["dataset", "method", "mask", "regulons", "seeds"] + [HEADERS[m] for m in metrics]
    rows = []
    for _, r in summary.iterrows():
        cells = [r["dataset"], r["method"], r["mask"] or "–", r["regulons"] or "–", r["n_seeds"]]
        cells += [_fmt(r[f"{m}_mean"], r[f"{m}_sd"], _DECIMALS.get(m, 3)) for m in metrics]
        rows.append(["–" if (isinstance(c, float) and math.isnan(c)) else c for c in cells])
    return _markdown_table(header, rows)


def _paired_markdown(paired: pd.DataFrame) -> str:
    header = [
        "dataset",
        "reference − comparator",
        "seeds",
        "per-seed differences",
        "mean ± sd",
        "wins/losses/ties",
        "paired t p",
    ]
    rows = []
    for _, r in paired.iterrows():
        diffs = ", ".join(f"{d:+.3f}" for d in r["diffs"])
        rows.append(
            [
                r["dataset"],
                f"{r['reference']} − {r['comparator']}",
                r["n_pairs"],
                diffs,
                _fmt(r["mean"], r["sd"]),
                f"{r['wins']}/{r['losses']}/{r['ties']}",
                "–" if r["p_value"] is None or pd.isna(r["p_value"]) else f"{r['p_value']:.2g}",
            ]
        )
    return _markdown_table(header, rows)


def _pooled_markdown(pooled: pd.DataFrame) -> str:
    header = ["reference − comparator", "pairs", "mean ± sd", "per dataset", "wins/losses/ties", "t p", "sign p"]
    rows = []
    for _, r in pooled.iterrows():
        per = "; ".join(f"{d} {m:+.3f}" for d, m in zip(r["datasets"], r["dataset_means"], strict=True))
        rows.append(
            [
                f"{r['reference']} − {r['comparator']}",
                r["n_pairs"],
                _fmt(r["mean"], r["sd"]),
                per,
                f"{r['wins']}/{r['losses']}/{r['ties']}",
                "–" if r["p_value"] is None or pd.isna(r["p_value"]) else f"{r['p_value']:.2g}",
                "–" if r["sign_p"] is None or pd.isna(r["sign_p"]) else f"{r['sign_p']:.2g}",
            ]
        )
    return _markdown_table(header, rows)


def _coverage_markdown(frame: pd.DataFrame) -> str:
    sct = frame[(frame["method"] == "sctransformer") & (frame["mask"] == "grn")]
    if sct.empty or "grn_edges_kept" not in sct:
        return ""
    rows = []
    for (dataset, reg), g in sct.groupby(["dataset", "regulons"], sort=False):
        r = g.iloc[0]
        match = numeric(g, "query_panel_match")
        rows.append(
            [
                dataset,
                reg,
                f"{int(r['panel_genes']):,}",
                f"{int(r['grn_edges_kept']):,} / {int(r['regulon_edges_total']):,}",
                f"{int(r['grn_tfs_kept']):,} / {int(r['regulon_tfs_total']):,}",
                f"{r['density']:.2e}",
                "–" if match.dropna().empty else f"{match.mean():.1%}",
            ]
        )
    header = [
        "dataset",
        "regulons",
        "panel genes",
        "edges kept / in resource",
        "TFs kept / in resource",
        "density",
        "test panel match",
    ]
    return _markdown_table(header, rows)


#: Profiles of today's defaults, one training mode each (``benchmarks/evaluate.py``).
MODE_PROFILES = {
    "defaults": "labelled",
    "unlabelled": "+ unlabelled",
    "mapping": "mapped",
    "no_tokens": "labelled, no Transformer layer",
}
#: Cell types whose recall the modes table shows, where a dataset has them (the hard pairs of PBMCs).
HARD_TYPES = ("Naive CD4 T", "Memory CD4 T", "CD8 T", "CD14+ Mono", "FCGR3A+ Mono", "DC")


def modes_markdown(frame: pd.DataFrame, metric: str = "macro_f1") -> str:
    """Today's defaults in every training mode beside every peer: per dataset, macro-F1 and the hard types' recall;
    then each mode against the best peer and against labelled-only training, paired by seed."""
    from .stats import difference_stats

    rows = frame[frame["profile"].isin(list(MODE_PROFILES))].copy()
    if rows.empty:
        return ""
    sct_rows = rows["method"] == "sctransformer"
    rows["name"] = rows["variant"]
    rows.loc[sct_rows, "name"] = (
        rows.loc[sct_rows, "variant"] + ", " + rows.loc[sct_rows, "profile"].map(MODE_PROFILES).astype(str)
    )
    out = []
    for dataset, part in rows.groupby("dataset", sort=False):
        recall = pd.DataFrame(list(part["recall"].apply(lambda r: r if isinstance(r, dict) else {})), index=part.index)
        types = [t for t in HARD_TYPES if t in recall]
        header = ["model", "seeds", HEADERS.get(metric, metric), "accuracy", *(f"{t} recall" for t in types)]
        table = []
        for name, g in part.groupby("name", sort=False):
            values = numeric(g, metric)
            cells = [
                name,
                str(len(values.dropna())),
                _fmt(values.mean(), values.std(ddof=1) if len(values) > 1 else None),
            ]
            cells.append(_fmt(numeric(g, "accuracy").mean()))
            cells += [_fmt(recall.loc[g.index, t].astype(float).mean(), decimals=2) for t in types]
            table.append(cells)
        out += [f"**{dataset}**", "", _markdown_table(header, table), ""]
        by_name = {n: g.drop_duplicates("seed", keep="last").set_index("seed") for n, g in part.groupby("name")}
        peers = [n for n in by_name if not n.startswith(("grn", "shuffled", "random", "dense"))]
        lines = []
        for name in [n for n in by_name if n.startswith("grn (collectri)")]:
            others = [f"grn (collectri), {MODE_PROFILES['defaults']}"] + peers
            for other in others:
                if other == name or other not in by_name:
                    continue
                both = pd.concat([by_name[name][metric], by_name[other][metric]], axis=1, keys=["a", "b"]).dropna()
                if both.empty:
                    continue
                stats = difference_stats((both["a"].astype(float) - both["b"].astype(float)).to_numpy())
                lines.append(
                    f"| {name} − {other} | {stats['n_pairs']} | {stats['mean']:+.3f} | "
                    f"{stats['wins']} / {stats['losses']} / {stats['ties']} |"
                )
        if lines:
            out += ["| comparison | seeds | mean difference | wins / losses / ties |", "|---|---|---|---|", *lines, ""]
    return "\n".join(out)


def write_report(
    records: Iterable[Mapping],
    out_dir: str | os.PathLike,
    *,
    title: str = "scTransformer evaluation",
    preamble: str = "",
    umap_dir: str | os.PathLike | None = None,
    metric: str = "macro_f1",
    name: str = "evaluation",
    main_regulons: str | None = None,
) -> Path:
    """Write ``{name}.md`` (tables, paired comparisons, reading, figures) and its PNG figures into ``out_dir``.

    Parameters
    ----------
    records
        Evaluation records (e.g. :func:`~harness.records.load_records` of ``evaluation.json``).
    out_dir
        Folder of the report and figures.
    title
        First heading.
    preamble
        Markdown placed under the title (how the run was made, settings, wall time).
    umap_dir
        Folder of UMAP ``.npz`` files saved by :func:`harness.study.evaluate` (one figure per dataset).
    metric
        Main metric of the paired comparisons and the figure.
    name
        File stem.
    main_regulons
        See :func:`reading`.

    Returns
    -------
    Path of the markdown file.

    Examples
    --------
    >>> import tempfile
    >>> from harness.records import make_record
    >>> from harness.report import write_report
    >>> recs = [
    ...     make_record(
    ...         dataset="d",
    ...         method="sctransformer",
    ...         mask=m,
    ...         regulons="collectri",
    ...         seed=s,
    ...         macro_f1=0.8 + 0.01 * s + (m == "grn") * 0.02,
    ...         accuracy=0.9,
    ...     )
    ...     for m in ("grn", "shuffled")
    ...     for s in (0, 1)
    ... ]
    >>> path = write_report(recs, tempfile.mkdtemp())
    >>> "grn (collectri) beats shuffled (collectri) by 0.020" in path.read_text()
    True
    """
    records = list(records)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = records_frame(records)
    parts = [f"# {title}", ""]
    if preamble:
        parts += [preamble.strip(), ""]
    if frame.empty:
        parts.append("No successful runs recorded yet.")
    else:
        modes = modes_markdown(frame, metric)
        if modes:
            parts += ["## Today's defaults: training modes and peers", "", modes, ""]
        profiles = sorted(dict.fromkeys(frame["profile"]), key=lambda p: PROFILE_ORDER.get(p, PROFILE_ORDER["custom"]))
        for profile in profiles:
            sub_records = [r for r in records if (r.get("profile") or "custom") == profile and not r.get("error")]
            sub = frame[frame["profile"] == profile]
            heading = "## Results" if len(profiles) == 1 else f"## Results: profile `{profile}`"
            parts += [heading, ""]
            if "split" in sub:
                parts += ["Splits:", ""]
                for dataset, g in sub.groupby("dataset", sort=False):
                    g = g.sort_values("seed", kind="stable")
                    splits = dict.fromkeys(
                        f"seed {seed}: {split}"
                        for seed, split in zip(g["seed"], g["split"], strict=True)
                        if isinstance(split, str)
                    )
                    parts.append(f"- **{dataset}**: " + "; ".join(splits))
                parts.append("")
            parts += ["### Reading", "", "\n\n".join(reading(sub_records, metric, main_regulons)), ""]
            parts += ["### Summary (mean ± sd over seeds)", "", _summary_markdown(summary_table(sub_records)), ""]
            paired = paired_comparison(sub_records, metric, main_regulons)
            if not paired.empty:
                parts += [
                    f"### Paired comparisons ({HEADERS.get(metric, metric)}, same split and seed)",
                    "",
                    _paired_markdown(paired),
                    "",
                ]
            pooled = pooled_comparison(sub_records, metric, main_regulons=main_regulons)
            if not pooled.empty:
                parts += [
                    f"### Pooled over datasets ({HEADERS.get(metric, metric)}; every dataset x seed pair once)",
                    "",
                    _pooled_markdown(pooled),
                    "",
                ]
            coverage = _coverage_markdown(sub)
            if coverage:
                parts += ["### How much of the GRN the panel keeps", "", coverage, ""]
            parts += ["### Figures", ""]
            bars = out_dir / f"{name}_{profile}_{metric}.png"
            plot_metric_bars(sub_records, bars, metric, main_regulons=main_regulons)
            parts += [f"![{metric} per method]({bars.name})", ""]
            att = out_dir / f"{name}_{profile}_attention_auroc.png"
            if plot_attention_auroc(sub_records, att) is not None:
                parts += [f"![attention AUROC]({att.name})", ""]
            if umap_dir is not None and Path(umap_dir).exists():
                for dataset in dict.fromkeys(sub["dataset"]):
                    runs = sub[(sub["dataset"] == dataset)]
                    seed = runs["seed"].min()
                    files, titles = [], []
                    for _, r in order_frame(runs[runs["seed"] == seed]).iterrows():
                        f = umap_file(umap_dir, r)
                        if f.exists():
                            files.append(f)
                            titles.append(f"{r['variant']}  (silhouette {_fmt(r.get('silhouette'))})")
                    if files:
                        png = out_dir / f"{name}_{profile}_umap_{dataset}.png"
                        plot_umaps(files, png, titles)
                        parts += [f"UMAP of the {dataset} test cells (seed {seed}), coloured by true label:", ""]
                        parts += [f"![UMAP {dataset}]({png.name})", ""]
    failed = [r for r in records if r.get("error")]
    if failed:
        parts += ["## Failed runs", ""]
        parts += [f"- {r['dataset']} / {variant_name(r)} / seed {r['seed']}: {r['error']}" for r in failed]
        parts.append("")
    path = out_dir / f"{name}.md"
    path.write_text("\n".join(parts).rstrip() + "\n")
    return path
