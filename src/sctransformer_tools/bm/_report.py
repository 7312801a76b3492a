"""From records to a report: summary tables, paired comparisons, a plain-language reading, figures."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ._records import umap_file

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
_HEADERS = {
    "macro_f1": "macro-F1",
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced acc.",
    "rare_f1": "rare-type F1",
    "silhouette": "silhouette",
    "ari": "ARI",
    "nmi": "NMI",
    "attention_auroc": "attention AUROC",
    "attention_auroc_null": "AUROC null",
    "train_s": "train s",
    "peak_mb": "peak MB",
    "peak_delta_mb": "MB rise",
}
_DECIMALS = {"train_s": 0, "peak_mb": 0, "peak_delta_mb": 0}
#: ``attention_auroc_*`` columns that are not AUROCs against another regulon set.
_AUROC_EXTRA = {"attention_auroc_null", "attention_auroc_null_sd", "attention_auroc_vs_shuffled"}
_PROFILE_ORDER = {"full": 0, "custom": 1, "quick": 2}


def _numeric(frame: pd.DataFrame, column: str) -> pd.Series:
    """A column as floats (NaN where missing; all NaN when the column is absent)."""
    if column not in frame:
        return pd.Series(np.nan, index=frame.index, dtype=float)
    return pd.to_numeric(frame[column], errors="coerce").astype(float)


def variant_name(record: Mapping) -> str:
    """Short name of a record's model: ``"grn (collectri)"`` for scTransformer, the peer's name otherwise.

    Parameters
    ----------
    record
        An evaluation record.

    Returns
    -------
    The name.

    Examples
    --------
    >>> from sctransformer_tools.bm import variant_name
    >>> variant_name({"method": "sctransformer", "mask": "grn", "regulons": "collectri"})
    'grn (collectri)'
    >>> variant_name({"method": "scanvi", "mask": None, "regulons": None})
    'scanvi'
    """
    if record.get("method") == "sctransformer":
        return f"{record.get('mask')} ({record.get('regulons')})"
    return str(record.get("method"))


def records_frame(records: Iterable[Mapping]) -> pd.DataFrame:
    """Records as a DataFrame with a ``variant`` column (failed runs, with ``error``, left out).

    Parameters
    ----------
    records
        Evaluation records.

    Returns
    -------
    One row per successful run.
    """
    frame = pd.DataFrame([dict(r) for r in records])
    if frame.empty:
        return frame
    if "error" in frame:
        frame = frame[frame["error"].isna()]
    if "profile" not in frame:
        frame["profile"] = "custom"
    frame["profile"] = frame["profile"].fillna("custom")
    frame["variant"] = [variant_name(r) for r in frame.to_dict("records")]
    return frame.reset_index(drop=True)


def _order(frame: pd.DataFrame) -> pd.DataFrame:
    """Stable row order: datasets as first seen, scTransformer masks first (grn, controls), then peers."""
    mask_rank = {"grn": 0, "shuffled": 1, "random": 2, "dense": 3}
    method_rank = {"sctransformer": 0, "logistic_regression": 1, "celltypist": 2, "scanvi": 3}
    datasets = {d: i for i, d in enumerate(dict.fromkeys(frame["dataset"]))}
    regs = {r: i for i, r in enumerate(dict.fromkeys(frame["regulons"].dropna()))}
    key = pd.DataFrame(
        {
            "p": frame["profile"].map(lambda p: _PROFILE_ORDER.get(p, 1)),
            "d": frame["dataset"].map(datasets),
            "m": frame["method"].map(lambda m: method_rank.get(m, 9)),
            "r": frame["regulons"].map(lambda r: regs.get(r, -1)),
            "k": frame["mask"].map(lambda m: mask_rank.get(m, -1)),
        }
    )
    return frame.loc[key.sort_values(["p", "d", "m", "r", "k"], kind="stable").index]


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
    >>> from sctransformer_tools.bm import summary_table
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
    frame = _order(frame)
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


def _paired_test(diffs: np.ndarray) -> float | None:
    """Two-sided paired t-test p-value of the differences (``None`` when undefined)."""
    from scipy import stats

    if len(diffs) < 2 or np.allclose(diffs, diffs[0]):
        return None
    return float(stats.ttest_1samp(diffs, 0.0).pvalue)


def _difference_stats(diffs: np.ndarray) -> dict:
    """Count, mean, sd, wins/losses/ties (``|diff| < 5e-4``) and paired t-test p of paired differences."""
    return {
        "n_pairs": len(diffs),
        "mean": float(diffs.mean()),
        "sd": float(diffs.std(ddof=1)) if len(diffs) > 1 else np.nan,
        "wins": int((diffs >= 5e-4).sum()),
        "losses": int((diffs <= -5e-4).sum()),
        "ties": int((np.abs(diffs) < 5e-4).sum()),
        "p_value": _paired_test(diffs),
    }


def _comparisons(frame: pd.DataFrame) -> list[tuple[dict, dict]]:
    """(reference, comparator) identities to pair within one dataset."""
    sct = frame[frame["method"] == "sctransformer"]
    regs = list(dict.fromkeys(sct["regulons"].dropna()))
    pairs = []
    for reg in regs:
        ref = {"method": "sctransformer", "mask": "grn", "regulons": reg}
        for mask in ("shuffled", "random", "dense"):
            pairs.append((ref, {"method": "sctransformer", "mask": mask, "regulons": reg}))
    if regs:
        main = "collectri" if "collectri" in regs else regs[0]
        ref = {"method": "sctransformer", "mask": "grn", "regulons": main}
        for reg in regs:
            if reg != main:
                pairs.append((ref, {"method": "sctransformer", "mask": "grn", "regulons": reg}))
        for peer in dict.fromkeys(frame.loc[frame["method"] != "sctransformer", "method"]):
            pairs.append((ref, {"method": peer, "mask": None, "regulons": None}))
    return pairs


def _select(frame: pd.DataFrame, ident: Mapping) -> pd.DataFrame:
    keep = np.ones(len(frame), dtype=bool)
    for k, v in ident.items():
        keep &= frame[k].isna().to_numpy() if v is None else (frame[k] == v).to_numpy()
    return frame[keep]


def paired_comparison(records: Iterable[Mapping], metric: str = "macro_f1") -> pd.DataFrame:
    """GRN-masked scTransformer minus each control and peer, seed by seed (same split, same seed).

    Pairs, per profile and dataset: ``grn`` vs ``shuffled``, ``random`` and ``dense`` of the same
    regulons; ``grn`` (CollecTRI, or the first regulon set) vs ``grn`` of every other regulon set and
    vs every peer.

    Parameters
    ----------
    records
        Evaluation records.
    metric
        Metric compared.

    Returns
    -------
    One row per comparison: ``profile``, ``dataset``, ``reference``, ``comparator``, ``n_pairs``,
    ``diffs`` (reference - comparator per seed, in seed order), ``seeds``, ``mean``, ``sd``, ``wins``,
    ``losses``, ``ties`` (``|diff| < 5e-4``) and ``p_value`` (two-sided paired t-test; ``None`` below 2
    pairs).

    Examples
    --------
    >>> from sctransformer_tools.bm import paired_comparison
    >>> rec = lambda mask, seed, f1: {
    ...     "dataset": "d",
    ...     "method": "sctransformer",
    ...     "mask": mask,
    ...     "regulons": "collectri",
    ...     "seed": seed,
    ...     "macro_f1": f1,
    ... }
    >>> recs = [rec("grn", 0, 0.9), rec("grn", 1, 0.8), rec("shuffled", 0, 0.85), rec("shuffled", 1, 0.7)]
    >>> row = paired_comparison(recs).iloc[0]
    >>> row["comparator"], [round(d, 2) for d in row["diffs"]], int(row["wins"])
    ('shuffled (collectri)', [0.05, 0.1], 2)
    """
    frame = records_frame(records)
    columns = ["profile", "dataset", "reference", "comparator", "n_pairs", "diffs", "seeds", "mean", "sd"]
    columns += ["wins", "losses", "ties", "p_value"]
    if frame.empty or metric not in frame:
        return pd.DataFrame(columns=columns)
    frame = _order(frame)
    rows = []
    for (profile, dataset), group in frame.groupby(["profile", "dataset"], sort=False):
        for ref, comp in _comparisons(group):
            a = _select(group, ref).drop_duplicates("seed", keep="last").set_index("seed")[metric]
            b = _select(group, comp).drop_duplicates("seed", keep="last").set_index("seed")[metric]
            both = pd.concat([a, b], axis=1, keys=["a", "b"]).apply(pd.to_numeric, errors="coerce").dropna()
            if both.empty:
                continue
            both = both.sort_index()
            diffs = (both["a"] - both["b"]).to_numpy(dtype=float)
            rows.append(
                {
                    "profile": profile,
                    "dataset": dataset,
                    "reference": variant_name(ref),
                    "comparator": variant_name(comp),
                    "diffs": diffs.tolist(),
                    "seeds": [int(s) for s in both.index],
                }
                | _difference_stats(diffs)
            )
    return pd.DataFrame(rows, columns=columns)


def pooled_comparison(records: Iterable[Mapping], metric: str = "macro_f1", min_datasets: int = 2) -> pd.DataFrame:
    """The paired differences of :func:`paired_comparison` pooled over datasets (one row per comparison).

    Each dataset x seed pair counts once, so a consistent small effect that no single dataset's few seeds
    can show may still show here; the per-dataset means tell whether one dataset carries it.

    Parameters
    ----------
    records
        Evaluation records.
    metric
        Metric compared.
    min_datasets
        Comparisons made on fewer datasets are left out.

    Returns
    -------
    One row per profile x comparison: ``profile``, ``reference``, ``comparator``, ``datasets`` (names),
    ``dataset_means`` (mean difference per dataset), ``n_pairs``, ``mean``, ``sd``, ``wins``, ``losses``,
    ``ties``, ``p_value`` (two-sided t-test of the pooled differences) and ``sign_p`` (two-sided sign test
    of wins against losses).

    Examples
    --------
    >>> from sctransformer_tools.bm import pooled_comparison
    >>> rec = lambda d, mask, seed, f1: {
    ...     "dataset": d,
    ...     "method": "sctransformer",
    ...     "mask": mask,
    ...     "regulons": "collectri",
    ...     "seed": seed,
    ...     "macro_f1": f1,
    ... }
    >>> recs = [
    ...     rec(d, m, s, 0.8 + 0.01 * s + (m == "grn") * 0.02) for d in "ab" for m in ("grn", "random") for s in (0, 1)
    ... ]
    >>> row = pooled_comparison(recs).iloc[0]
    >>> row["comparator"], int(row["n_pairs"]), round(float(row["mean"]), 3), int(row["wins"])
    ('random (collectri)', 4, 0.02, 4)
    """
    from scipy import stats

    paired = paired_comparison(records, metric)
    columns = ["profile", "reference", "comparator", "datasets", "dataset_means", "n_pairs", "mean", "sd"]
    columns += ["wins", "losses", "ties", "p_value", "sign_p"]
    rows = []
    for (profile, ref, comp), group in paired.groupby(["profile", "reference", "comparator"], sort=False):
        if group["dataset"].nunique() < min_datasets:
            continue
        diffs = np.concatenate([np.asarray(d, dtype=float) for d in group["diffs"]])
        row = {
            "profile": profile,
            "reference": ref,
            "comparator": comp,
            "datasets": list(group["dataset"]),
            "dataset_means": [float(m) for m in group["mean"]],
        } | _difference_stats(diffs)
        decided = row["wins"] + row["losses"]
        row["sign_p"] = float(stats.binomtest(row["wins"], decided).pvalue) if decided else None
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


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


def reading(records: Iterable[Mapping], metric: str = "macro_f1") -> list[str]:
    """A plain-language reading of the records, one paragraph per profile x dataset, generated from the numbers.

    Parameters
    ----------
    records
        Evaluation records.
    metric
        Main metric.

    Returns
    -------
    Markdown paragraphs (bulleted sentences).
    """
    records = list(records)
    frame = records_frame(records)
    if frame.empty:
        return ["No successful runs yet."]
    summary = summary_table(records)
    paired = paired_comparison(records, metric)
    name = _HEADERS.get(metric, metric)
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
            a, null = _numeric(att, "attention_auroc"), _numeric(att, "attention_auroc_null")
            above = int((a > null).sum())
            lines.append(
                f"Attention of the dense model separates {reg} edges from random TF-target non-edges with AUROC "
                f"{_fmt(a.mean(), a.std(ddof=1) if len(a) > 1 else None)}; degree-preserving shuffled priors give "
                f"{_fmt(null.mean(), null.std(ddof=1) if len(null) > 1 else None)} "
                f"(real edges above the null in {above}/{len(a)} seeds; 0.5 = no preference)."
            )
            for column in sorted(c for c in att.columns if c.startswith("attention_auroc_") and c not in _AUROC_EXTRA):
                other = _numeric(att, column).dropna()
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
                rho, overlap = _numeric(g, "tf_activity_spearman"), _numeric(g, "tf_top_overlap")
                null, sig = _numeric(g, "tf_top_overlap_null"), _numeric(g, "tf_overlap_significant")
                lines.append(
                    f"Top-10 TFs per cell type by attention of {mask} ({reg}) vs decoupler ULM activity on the same "
                    f"test cells: {_spread(overlap)} shared TFs (permutation null {_fmt(null.mean())}), Spearman "
                    f"{_spread(rho)}, overlap beyond chance (p < 0.05) in {_percent(sig.mean())} of "
                    f"{int(_numeric(g, 'tf_activity_types').max())} types ({len(g)} seed(s))."
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
        match = _numeric(sct, "query_panel_match")
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
        if {"grn (collectri)", "dense (collectri)"} <= set(timing.index) and timing["grn (collectri)"] > 0:
            lines.append(
                f"Training the dense control took {timing['dense (collectri)'] / timing['grn (collectri)']:.1f}x "
                f"the time of the GRN-masked model ({timing['dense (collectri)']:.0f} s vs "
                f"{timing['grn (collectri)']:.0f} s)."
            )
        excluded = frame[(frame["profile"] == profile) & (frame["dataset"] == dataset)]
        if "n_test_excluded" in excluded and excluded["n_test_excluded"].fillna(0).max() > 0:
            lines.append(
                f"Up to {int(excluded['n_test_excluded'].max())} test cells per seed had a type absent from "
                "training (or no mapped label) and were not scored."
            )
        out.append(f"**{dataset}** ({profile}):\n\n" + "\n".join(f"- {line}" for line in lines))
    pooled = pooled_comparison(records, metric)
    for profile, group in pooled.groupby("profile", sort=False):
        lines = [
            _verdict(row, name, row["comparator"], unit="pair").replace("grn", row["reference"], 1)
            + f" Per dataset: {', '.join(f'{d} {m:+.3f}' for d, m in zip(row['datasets'], row['dataset_means'], strict=True))}."
            for _, row in group.iterrows()
        ]
        out.append(f"**All datasets pooled** ({profile}):\n\n" + "\n".join(f"- {line}" for line in lines))
    return out


# -------------------------------------------------------------------------------------------- figures


def plot_metric_bars(
    records: Iterable[Mapping], path: str | os.PathLike, metric: str = "macro_f1", profile: str | None = None
):
    """Bars of ``metric`` (mean ± sd over seeds, seeds as dots), one panel per dataset.

    Parameters
    ----------
    records
        Evaluation records.
    path
        PNG written.
    metric
        Metric plotted.
    profile
        Only records of this profile (default: all).

    Returns
    -------
    The matplotlib figure.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    frame = records_frame(records)
    if profile is not None:
        frame = frame[frame["profile"] == profile]
    frame = _order(frame.dropna(subset=[metric]))
    datasets = list(dict.fromkeys(frame["dataset"]))
    fig, axes = plt.subplots(1, max(len(datasets), 1), figsize=(4.2 * max(len(datasets), 1), 4.2), squeeze=False)
    colors = {"grn": "#1b7837", "shuffled": "#a6dba0", "random": "#c2a5cf", "dense": "#762a83"}
    for ax, dataset in zip(axes[0], datasets, strict=False):
        sub = frame[frame["dataset"] == dataset]
        variants = list(dict.fromkeys(sub["variant"]))
        for i, v in enumerate(variants):
            vals = pd.to_numeric(sub.loc[sub["variant"] == v, metric], errors="coerce").dropna().to_numpy()
            mask = sub.loc[sub["variant"] == v, "mask"].iloc[0]
            color = colors.get(mask, "#878787") if isinstance(mask, str) else "#4393c3"
            hatch = "//" if isinstance(mask, str) and "collectri" not in v else None
            ax.bar(
                i,
                vals.mean(),
                yerr=vals.std(ddof=1) if len(vals) > 1 else 0,
                color=color,
                hatch=hatch,
                capsize=3,
                edgecolor="black",
                linewidth=0.5,
            )
            ax.scatter(np.full(len(vals), i) + np.linspace(-0.15, 0.15, len(vals)), vals, s=10, color="black", zorder=3)
        ax.set_xticks(range(len(variants)), variants, rotation=60, ha="right", fontsize=8)
        ax.set_title(dataset, fontsize=10)
        ax.set_ylabel(_HEADERS.get(metric, metric))
        lo = pd.to_numeric(sub[metric], errors="coerce").min()
        ax.set_ylim(max(0.0, lo - 0.1), 1.0 if metric != "train_s" else None)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return fig


def plot_attention_auroc(records: Iterable[Mapping], path: str | os.PathLike, profile: str | None = None):
    """Dense-model attention AUROC for regulon edges vs the shuffled-prior null, per dataset and seed.

    Parameters
    ----------
    records
        Evaluation records.
    path
        PNG written.
    profile
        Only records of this profile (default: all).

    Returns
    -------
    The matplotlib figure, or ``None`` when no record has an attention AUROC.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    frame = records_frame(records)
    if frame.empty or "attention_auroc" not in frame:
        return None
    if profile is not None:
        frame = frame[frame["profile"] == profile]
    frame = frame.dropna(subset=["attention_auroc"])
    if frame.empty:
        return None
    groups = list(frame.groupby(["dataset", "regulons"], sort=False))
    fig, ax = plt.subplots(figsize=(max(4.5, 1.6 + 1.4 * len(groups)), 3.8))
    for i, ((dataset, reg), g) in enumerate(groups):
        real = g["attention_auroc"].astype(float).to_numpy()
        null = _numeric(g, "attention_auroc_null").to_numpy()
        ax.bar(i - 0.18, real.mean(), width=0.34, color="#1b7837", label="regulon edges" if i == 0 else None)
        ax.bar(
            i + 0.18, np.nanmean(null), width=0.34, color="#bababa", label="shuffled prior (null)" if i == 0 else None
        )
        for r, n in zip(real, null, strict=True):
            ax.plot([i - 0.18, i + 0.18], [r, n], color="black", lw=0.7, marker="o", ms=3)
        ax.text(i, 0.02, f"{dataset}\n{reg}", ha="center", va="bottom", fontsize=7, rotation=0)
    ax.axhline(0.5, color="red", lw=0.8, ls="--")
    ax.set_xticks([])
    ax.set_ylabel("AUROC vs random non-edges")
    ax.set_title("Dense-model attention on TF -> target edges", fontsize=9)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return fig


def plot_umaps(umap_files: Sequence[str | os.PathLike], path: str | os.PathLike, titles: Sequence[str] | None = None):
    """Panels of saved test-cell UMAPs (from :func:`evaluate`'s ``umap_dir``), coloured by true label.

    Parameters
    ----------
    umap_files
        ``.npz`` files with ``umap`` and ``labels``.
    path
        PNG written.
    titles
        Panel titles (default: file stems).

    Returns
    -------
    The matplotlib figure.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    files = [Path(f) for f in umap_files]
    titles = list(titles) if titles is not None else [f.stem for f in files]
    n = len(files)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols + 2, 3.8 * rows), squeeze=False)
    labels_all = sorted({str(x) for f in files for x in np.load(f)["labels"]})
    cmap = plt.get_cmap("tab20" if len(labels_all) > 10 else "tab10")
    colors = {lab: cmap(i % cmap.N) for i, lab in enumerate(labels_all)}
    for ax, f, title in zip(axes.ravel(), files, titles, strict=False):
        data = np.load(f)
        xy, labels = data["umap"], data["labels"].astype(str)
        ax.scatter(xy[:, 0], xy[:, 1], s=4, c=[colors[x] for x in labels], linewidths=0)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    handles = [plt.Line2D([], [], marker="o", ls="", color=colors[lab], label=lab) for lab in labels_all]
    fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1 - 1.6 / (4 * cols + 2), 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return fig


# --------------------------------------------------------------------------------------------- report


def _summary_markdown(summary: pd.DataFrame) -> str:
    metrics = [m for m in SUMMARY_METRICS if f"{m}_mean" in summary and summary[f"{m}_mean"].notna().any()]
    header = ["dataset", "method", "mask", "regulons", "seeds"] + [_HEADERS[m] for m in metrics]
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
        match = _numeric(g, "query_panel_match")
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


def write_report(
    records: Iterable[Mapping],
    out_dir: str | os.PathLike,
    *,
    title: str = "scTransformer evaluation",
    preamble: str = "",
    umap_dir: str | os.PathLike | None = None,
    metric: str = "macro_f1",
    name: str = "evaluation",
) -> Path:
    """Write ``{name}.md`` (tables, paired comparisons, reading, figures) and its PNG figures into ``out_dir``.

    Parameters
    ----------
    records
        Evaluation records (e.g. :func:`load_records` of ``evaluation.json``).
    out_dir
        Folder of the report and figures.
    title
        First heading.
    preamble
        Markdown placed under the title (how the run was made, settings, wall time).
    umap_dir
        Folder of UMAP ``.npz`` files saved by :func:`evaluate` (one figure per dataset).
    metric
        Main metric of the paired comparisons and the figure.
    name
        File stem.

    Returns
    -------
    Path of the markdown file.

    Examples
    --------
    >>> import tempfile
    >>> from sctransformer_tools.bm import make_record, write_report
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
        profiles = sorted(dict.fromkeys(frame["profile"]), key=lambda p: _PROFILE_ORDER.get(p, 1))
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
            parts += ["### Reading", "", "\n\n".join(reading(sub_records, metric)), ""]
            parts += ["### Summary (mean ± sd over seeds)", "", _summary_markdown(summary_table(sub_records)), ""]
            paired = paired_comparison(sub_records, metric)
            if not paired.empty:
                parts += [
                    f"### Paired comparisons ({_HEADERS.get(metric, metric)}, same split and seed)",
                    "",
                    _paired_markdown(paired),
                    "",
                ]
            pooled = pooled_comparison(sub_records, metric)
            if not pooled.empty:
                parts += [
                    f"### Pooled over datasets ({_HEADERS.get(metric, metric)}; every dataset x seed pair once)",
                    "",
                    _pooled_markdown(pooled),
                    "",
                ]
            coverage = _coverage_markdown(sub)
            if coverage:
                parts += ["### How much of the GRN the panel keeps", "", coverage, ""]
            parts += ["### Figures", ""]
            bars = out_dir / f"{name}_{profile}_{metric}.png"
            plot_metric_bars(sub_records, bars, metric)
            parts += [f"![{metric} per method]({bars.name})", ""]
            att = out_dir / f"{name}_{profile}_attention_auroc.png"
            if plot_attention_auroc(sub_records, att) is not None:
                parts += [f"![attention AUROC]({att.name})", ""]
            if umap_dir is not None and Path(umap_dir).exists():
                for dataset in dict.fromkeys(sub["dataset"]):
                    runs = sub[(sub["dataset"] == dataset)]
                    seed = runs["seed"].min()
                    files, titles = [], []
                    for _, r in _order(runs[runs["seed"] == seed]).iterrows():
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
