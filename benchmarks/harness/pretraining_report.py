"""The pretraining study's report (``docs/results/pretraining.md``), generated from its records only."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

#: The scGPT spectral-geometry study's gene-embedding AUROCs for a pretrained model (the issue's anchors).
SCGPT_ANCHORS = {"tf_target": 0.744, "markers": 0.851}
ARM_NAMES = {
    "none": "scTransformer, no pretraining",
    "uniform": "scTransformer, uniform pretraining (log-expression target)",
    "mam": "scTransformer, MAM pretraining (log-expression target)",
    "mam/counts": "scTransformer, MAM pretraining (count target, the default)",
    "logistic_regression": "logistic regression",
    "celltypist": "CellTypist",
    "scanvi": "scANVI (scVI pretrained on the corpus)",
}
COMPARISONS = (
    ("uniform", "none"),
    ("mam", "none"),
    ("mam", "uniform"),
    ("mam+query", "mam"),
    ("mam/counts", "none"),
)
#: scTransformer against the peers, on the same split and labelled cells.
PEER_COMPARISONS = (
    ("none", "logistic_regression"),
    ("mam", "logistic_regression"),
    ("mam", "scanvi"),
    ("mam+query", "scanvi+query"),
)


def _frame(records: Sequence[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(list(records))
    for col in ("fraction", "macro_f1", "accuracy", "rare_f1"):
        if col not in frame:
            frame[col] = np.nan
    return frame


def _ms(values: pd.Series, digits: int = 3) -> str:
    values = pd.to_numeric(values, errors="coerce").dropna()
    if values.empty:
        return "–"
    if len(values) == 1:
        return f"{values.iloc[0]:.{digits}f} (n=1)"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def _table(rows: list[list[str]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _variant(row: pd.Series) -> str:
    """The arm of an scTransformer or peer run (a peer with one arm per split is named by its method)."""
    return (
        row["arm"] if row["method"] == "sctransformer" or row["arm"] not in ("peer", row["method"]) else row["method"]
    )


def label_efficiency_tables(frame: pd.DataFrame) -> str:
    """Macro-F1 and rare-type F1 per method and label fraction (mean ± sd over seeds)."""
    le = frame[(frame["experiment"] == "label_efficiency") & (frame["kind"] == "classifier")].copy()
    if le.empty:
        return "_No label-efficiency records yet._"
    le["variant"] = le.apply(_variant, axis=1)
    fractions = sorted(le["fraction"].dropna().unique())
    out = []
    for metric, title in (("macro_f1", "macro-F1"), ("rare_f1", "rare-type F1"), ("accuracy", "accuracy")):
        rows = []
        for variant in ARM_NAMES:
            sub = le[le["variant"] == variant]
            if sub.empty:
                continue
            row = [ARM_NAMES[variant]]
            for f in fractions:
                row.append(_ms(sub[sub["fraction"] == f][metric]))
            row.append(str(sub["seed"].nunique()))
            rows.append(row)
        labelled = le[le["variant"] == "none"].groupby("fraction")["n_labelled"].mean()
        header = ["method"] + [
            f"{f:.0%} ({labelled.get(f, np.nan):.0f} cells)" if f in labelled else f"{f:.0%}" for f in fractions
        ]
        out.append(f"**{title}** (mean ± sd over seeds)\n\n" + _table(rows, header + ["seeds"]))
    return "\n\n".join(out)


def paired_table(frame: pd.DataFrame, experiment: str, metric: str = "macro_f1") -> str:
    """Differences between arms of the same seed (and label fraction): mean, sd, range, wins."""
    sub = frame[(frame["experiment"] == experiment) & (frame["kind"] == "classifier")].copy()
    if sub.empty:
        return "_No records yet._"
    sub["variant"] = sub.apply(_variant, axis=1)
    wide = sub.pivot_table(index=["fraction", "seed"], columns="variant", values=metric)
    rows = []
    arms = list(wide.columns)
    ours = list(dict.fromkeys(sub.loc[sub["method"] == "sctransformer", "variant"]))  # in record order
    pairs = [(a, b) for a, b in COMPARISONS + PEER_COMPARISONS if a in arms and b in arms]
    pairs += [(a, "none") for a in ours if a not in ARM_NAMES and "/" not in a and "none" in arms]
    pairs += [(a, a.split("/")[0]) for a in arms if "/" in a and a.split("/")[0] in arms]
    pairs += [
        (a, "none/" + a.split("/")[1])
        for a in arms
        if "/" in a and "none/" + a.split("/")[1] in arms and a[:4] != "none"
    ]
    for fraction, block in wide.groupby(level="fraction"):
        for a, b in pairs:
            diff = (block[a] - block[b]).dropna()
            if diff.empty:
                continue
            rows.append(
                [
                    f"{fraction:.0%}",
                    f"{a} − {b}",
                    f"{diff.mean():+.3f}",
                    f"{diff.std(ddof=1):.3f}" if len(diff) > 1 else "–",
                    f"{diff.min():+.3f} … {diff.max():+.3f}",
                    f"{int((diff > 0).sum())} of {len(diff)}",
                ]
            )
    return _table(rows, ["labels", "comparison", "mean Δ", "sd", "range", "better in"])


def arms_table(frame: pd.DataFrame, experiment: str, recall: bool = False) -> str:
    """Per arm: macro-F1, accuracy, rare-type F1 (and per-type recall) over seeds."""
    sub = frame[(frame["experiment"] == experiment) & (frame["kind"] == "classifier")]
    if sub.empty:
        return "_No records yet._"
    types = []
    if recall:
        types = sorted({t for r in sub["recall"].dropna() for t in r})
    rows = []
    for arm, block in sub.groupby("arm", sort=False):
        row = [arm, _ms(block["macro_f1"]), _ms(block["accuracy"]), _ms(block["rare_f1"])]
        for t in types:
            row.append(_ms(block["recall"].map(lambda r, t=t: (r or {}).get(t, np.nan)), 2))
        row.append(str(block["seed"].nunique()))
        rows.append(row)
    return _table(rows, ["arm", "macro-F1", "accuracy", "rare-type F1"] + [f"recall {t}" for t in types] + ["seeds"])


def audit_table(frame: pd.DataFrame) -> str:
    """Gene-embedding audit AUROCs of pretrained encoders and fine-tuned models, with the null and the anchors."""
    if "audit_tf_target_auroc" not in frame:
        return "_No audit records yet._"
    sub = frame[frame["audit_tf_target_auroc"].notna()].copy()
    sub = sub[(sub["kind"] == "backbone") | (sub["fraction"] == 1.0)]
    rows = []
    for (experiment, kind, arm), block in sub.groupby(["experiment", "kind", "arm"], sort=False):
        what = "pretrained encoder" if kind == "backbone" else "fine-tuned on all labels"
        rows.append(
            [
                experiment,
                arm,
                what,
                _ms(block["audit_tf_target_auroc"]),
                _ms(block["audit_tf_target_null_mean"]),
                _ms(block.get("audit_markers_auroc", pd.Series(dtype=float))),
                str(block["seed"].nunique()),
            ]
        )
    rows.append(
        [
            "scGPT (anchor)",
            "pretrained",
            "—",
            f"{SCGPT_ANCHORS['tf_target']:.3f}",
            "0.500",
            f"{SCGPT_ANCHORS['markers']:.3f}",
            "—",
        ]
    )
    return _table(rows, ["experiment", "arm", "model", "TF–target AUROC", "null", "marker AUROC", "seeds"])


def masking_table(frame: pd.DataFrame) -> str:
    """What MAM prefers to mask, per experiment (mean over seeds), and the genes it prefers in every seed."""
    if "pref_spearman_mean_expression" not in frame:
        return "_No MAM records yet._"
    sub = frame[frame["pref_spearman_mean_expression"].notna()]
    rows, tops = [], []
    for (experiment, arm), block in sub.groupby(["experiment", "arm"], sort=False):
        rows.append(
            [
                experiment,
                arm,
                _ms(block["pref_spearman_mean_expression"], 2),
                _ms(block["pref_spearman_detection"], 2),
                _ms(block.get("pref_spearman_dispersion", pd.Series(dtype=float)), 2),
                _ms(block["pref_median_tf"], 2) + " / " + _ms(block["pref_median_not_tf"], 2),
                _ms(block["pref_median_target"], 2) + " / " + _ms(block["pref_median_not_target"], 2),
                _ms(block["pref_median_hvg"], 2) + " / " + _ms(block["pref_median_not_hvg"], 2),
                _ms(block["pref_top50_ribo_mito"], 1),
                _ms(block["pref_max"], 2),
                str(block["seed"].nunique()),
            ]
        )
        sets = [{g for g, _ in top} for top in block["pref_top"].dropna()]
        common = sorted(set.intersection(*sets)) if sets else []
        first = block.sort_values("seed").iloc[0]
        tops.append(
            f"- **{experiment}, {arm}**: top 20 of seed {int(first['seed'])}: "
            + ", ".join(f"{g} ({p:.1f})" for g, p in first["pref_top"])
            + f". In the top 20 of every seed ({len(sets)}): {', '.join(common) if common else 'none'}."
        )
    header = [
        "experiment",
        "arm",
        "Spearman vs mean expression",
        "vs detection",
        "vs dispersion",
        "median TF / non-TF",
        "median target / non-target",
        "median HVG / non-HVG",
        "ribosomal/MT in top 50",
        "max preference",
        "seeds",
    ]
    stale = int(sub["pref_summary"].isna().sum()) if "pref_summary" in sub else len(sub)
    note = (
        f"\n\n_{stale} of these {len(sub)} records predate `sct.tl.masking_preference_summary` (another HVG"
        " definition): `python benchmarks/pretraining.py --refresh-masking --resume` rewrites them._"
        if stale
        else ""
    )
    if "pref_rerun_validation_mse" in sub and sub["pref_rerun_validation_mse"].notna().any():
        rerun = sub[sub["pref_rerun_validation_mse"].notna()]
        gap = (rerun["pref_rerun_validation_mse"] / rerun["pretrain_validation_mse"] - 1).abs().max()
        note += (
            f"\n\n{len(rerun)} of these summaries were computed after the fact (`--refresh-masking`) on backbones"
            " pretrained again with the same seed and settings; CPU training is not bit-reproducible, and their"
            f" validation MSE differed from the recorded run's by at most {gap:.1%}."
        )
    return _table(rows, header) + note + "\n\n" + "\n".join(tops)


def cost_table(frame: pd.DataFrame) -> str:
    """Pretraining wall time and throughput, and fine-tuning time, per experiment and masking."""
    sub = frame[frame["kind"] == "backbone"]
    if sub.empty:
        return "_No pretraining records yet._"
    rows = []
    for (experiment, arm), block in sub.groupby(["experiment", "arm"], sort=False):
        rows.append(
            [
                experiment,
                arm,
                f"{block['pretrain_cells'].mean():,.0f}",
                f"{block['pretrain_epochs'].mean():.0f}",
                _ms(block["pretrain_s"], 0),
                _ms(block["pretrain_cells_per_s"], 0),
                ", ".join(sorted({f"{t} thread(s)" for t in block["threads"]})),
            ]
        )
    table = _table(rows, ["experiment", "arm", "corpus cells", "epochs", "wall s", "cells read / s", "threads"])
    tuned = frame[(frame["kind"] == "classifier") & (frame["method"] == "sctransformer") & (frame["fraction"] == 1.0)]
    if not tuned.empty:
        rows = [
            [experiment, arm, f"{block['n_labelled'].mean():,.0f}", _ms(block["train_s"], 0), str(len(block))]
            for (experiment, arm), block in tuned.groupby(["experiment", "arm"], sort=False)
        ]
        table += "\n\nFine-tuning on all labels (`train()` defaults), the same processes:\n\n" + _table(
            rows, ["experiment", "arm", "labelled cells", "train s", "runs"]
        )
    cpus = sorted(set(frame["machine"].dropna()))
    return table + f"\n\nCPU: {', '.join(cpus)}. Wall times are of one process; see the threads column."


def label_efficiency_figure(frame: pd.DataFrame, path: Path) -> bool:
    """Macro-F1 and rare-type F1 against the share of labelled cells, one line per method (mean ± sd over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    le = frame[(frame["experiment"] == "label_efficiency") & (frame["kind"] == "classifier")].copy()
    if le.empty:
        return False
    le["variant"] = le.apply(_variant, axis=1)
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.2), sharey=True)
    styles = {"logistic_regression": "--", "celltypist": "--", "scanvi": ":"}  # scTransformer arms: solid
    for ax, metric, title in zip(axes, ("macro_f1", "rare_f1"), ("macro-F1", "rare-type F1"), strict=True):
        for variant, name in ARM_NAMES.items():
            sub = le[le["variant"] == variant]
            if sub.empty:
                continue
            stats = sub.groupby("fraction")[metric].agg(["mean", "std"]).sort_index()
            ax.errorbar(
                stats.index * 100,
                stats["mean"],
                yerr=stats["std"].fillna(0),
                label=name,
                linestyle=styles.get(variant, "-"),
                marker="o",
                markersize=4,
                capsize=3,
            )
        ax.set_xscale("log")
        ax.set_xticks([1, 5, 20, 100], ["1%", "5%", "20%", "100%"])
        ax.set_xlabel("training labels kept")
        ax.set_title(f"pbmc3k held-out 20%: {title}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("score (mean ± sd over seeds)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _pooled(frame: pd.DataFrame, experiment: str, a: str, b: str, metric: str = "macro_f1") -> str | None:
    """``a − b`` pooled over every (label fraction, seed) pair both have: mean, sd and wins, as a phrase."""
    sub = frame[(frame["experiment"] == experiment) & (frame["kind"] == "classifier")].copy()
    if sub.empty:
        return None
    sub["variant"] = sub.apply(_variant, axis=1)
    wide = sub.pivot_table(index=["fraction", "seed"], columns="variant", values=metric)
    if a not in wide or b not in wide:
        return None
    diff = (wide[a] - wide[b]).dropna()
    if diff.empty:
        return None
    sd = f", sd {diff.std(ddof=1):.3f}" if len(diff) > 1 else ""
    return f"{diff.mean():+.3f}{sd}; higher in {int((diff > 0).sum())} of {len(diff)} pairs"


def reading(frame: pd.DataFrame) -> str:
    """Sentences generated from the paired differences (macro-F1), pooled over label fractions and seeds."""
    lines = []
    checks = [
        ("label_efficiency", "uniform", "none", "uniform pretraining − no pretraining (pbmc3k, all label fractions)"),
        ("label_efficiency", "mam", "none", "MAM pretraining − no pretraining (pbmc3k, all label fractions)"),
        ("label_efficiency", "mam", "uniform", "MAM − uniform masking (pbmc3k, all label fractions)"),
        ("label_efficiency", "mam/counts", "mam", "MAM: count-likelihood − log-expression target (pbmc3k)"),
        ("label_efficiency", "mam/counts", "none", "MAM with the count target − no pretraining (pbmc3k)"),
        ("label_efficiency", "mam", "logistic_regression", "MAM-pretrained scTransformer − logistic regression"),
        ("label_efficiency", "mam", "scanvi", "MAM-pretrained scTransformer − scANVI"),
        ("cross_study", "mam", "none", "cross-study: MAM pretraining on pbmc3k + the four sets − none"),
        ("cross_study", "uniform", "none", "cross-study: uniform pretraining on pbmc3k + the four sets − none"),
        ("cross_study", "mam", "uniform", "cross-study: MAM − uniform masking"),
        ("cross_study", "mam+query", "none", "cross-study: MAM pretraining with the query's cells − none"),
        ("cross_study", "mam+query", "mam", "cross-study: adding the query's cells to the corpus"),
        ("cross_study", "mam+query/shuffled", "mam+query", "cross-study, MAM-pretrained: shuffled − GRN mask"),
        ("cross_study", "none/shuffled", "none", "cross-study, no pretraining: shuffled − GRN mask"),
        ("cross_study", "mam+query/counts", "mam+query", "cross-study: count-likelihood − log-expression target"),
        ("cross_study", "mam+query/bins", "mam+query", "cross-study: binned − log-expression target"),
        (
            "cross_study",
            "mam+query",
            "logistic_regression",
            "cross-study: MAM with the query's cells − logistic regression",
        ),
        ("darmanis", "mam", "none", "Darmanis held-out donors: MAM pretraining on its own cells − none"),
        ("darmanis", "mam", "logistic_regression", "Darmanis held-out donors: MAM-pretrained − logistic regression"),
        ("darmanis", "uniform", "none", "Darmanis held-out donors: uniform pretraining − none"),
        ("darmanis", "mam", "uniform", "Darmanis held-out donors: MAM − uniform masking"),
        ("darmanis", "mam/counts", "none", "Darmanis held-out donors: MAM with the count target − none"),
        ("darmanis", "mam/counts", "mam", "Darmanis held-out donors: count-likelihood − log-expression target"),
        ("cross_study", "mam+query", "scanvi+query", "cross-study: MAM with the query's cells − scANVI with them"),
        ("cross_study", "none", "scanvi", "cross-study: no pretraining − scANVI (scVI on pbmc3k + the four sets)"),
    ]
    for experiment, a, b, what in checks:
        phrase = _pooled(frame, experiment, a, b)
        if phrase is not None:
            lines.append(f"- {what}: macro-F1 {phrase}.")
    return "\n".join(lines) if lines else "_No paired records yet._"


def write_report(records: Sequence[dict], path: Path) -> None:
    """Write the markdown report of ``records`` to ``path`` (and its figure beside it)."""
    frame = _frame(records)
    text = [
        "# Pretraining: uniform vs MAM masking, and the peers",
        "",
        "Generated by `python benchmarks/pretraining.py --report-only` from `benchmarks/results/pretraining.jsonl`;",
        "the experiments and their settings are described in `benchmarks/pretraining.py`. Do not edit by hand.",
        "",
    ]
    if frame.empty:
        path.write_text("\n".join(text + ["_No records yet._", ""]))
        return
    text += [
        "## Reading (generated from the paired records)",
        "",
        "Differences in macro-F1 between two arms of the same split, seed and labelled cells, pooled over the",
        "label fractions and seeds both have (a pair: one fraction of one seed).",
        "",
        reading(frame),
        "",
        "## Label efficiency on pbmc3k",
        "",
        *(
            [f"![label efficiency]({figure.name})", ""]
            if label_efficiency_figure(frame, figure := path.with_name(path.stem + "_label_efficiency.png"))
            else []
        ),
        "The same held-out 20% for every fraction; the labelled cells are a stratified share of the training 80%",
        "(at least 2 of every type). Pretraining corpus: the training cells (labels unused) and the four unlabelled",
        "10x PBMC sets. Rare types: the third of pbmc3k's types with the fewest training cells.",
        "",
        label_efficiency_tables(frame),
        "",
        "**Paired by seed** (macro-F1; scTransformer arms of a seed share the split, labelled cells, panel and mask)",
        "",
        paired_table(frame, "label_efficiency"),
        "",
        "## Cross-study: pbmc3k → pbmc68k_reduced",
        "",
        "`mam+query`: the query's own cells are in the pretraining corpus (no query label is read). `/shuffled`:",
        "the degree-preserving shuffle of the GRN mask. `/counts`, `/bins`: other reconstruction targets.",
        "",
        arms_table(frame, "cross_study", recall=True),
        "",
        paired_table(frame, "cross_study"),
        "",
        "## Darmanis 2015: held-out donor groups",
        "",
        "Corpus: Darmanis' own cells, the held-out donors' included (no other brain data with many genes is",
        "available offline).",
        "",
        arms_table(frame, "darmanis"),
        "",
        paired_table(frame, "darmanis"),
        "",
        "## Gene embeddings",
        "",
        "`sct.tl.gene_embedding_audit` (spectral projection, 50 permutations; markers: pbmc3k's t-test top 25).",
        "",
        audit_table(frame),
        "",
        "## What MAM masks",
        "",
        "Preference: a gene's probability of being masked over a uniform choice, averaged over the cells",
        "expressing it (`model.get_masking_preference` on the training cells), for genes expressed in at least 2%",
        "of them; summarised by `sct.tl.masking_preference_summary` (HVG: the 2,000 panel genes of highest",
        "Seurat-normalised dispersion among these cells).",
        "",
        masking_table(frame),
        "",
        "## Cost",
        "",
        cost_table(frame),
        "",
    ]
    path.write_text("\n".join(text))
