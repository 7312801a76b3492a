"""The pretraining study's records and report (``docs/results/pretraining.md``), generated from the records only.

Records of two estimators are kept apart, never paired nor pooled together:

- **today's** (``study_version`` = :data:`STUDY_VERSION`, with the ``code`` commit that made them): MAM's exact
  Plackett-Luce estimator with a leave-one-out baseline and the per-gene relative reward, the ``mam_shuffled``
  control, uniform masking read twice per cell like MAM, the masking read-out as Monte-Carlo inclusion rates
  (``mask_*`` fields), the gene-embedding audit as the scGPT study measures it (``audit_<representation>_<test>_*``),
  the reconstruction target chosen on a validation split (experiment ``target_selection``);
- **the 0.2 estimator's** (records without ``study_version``): a biased policy gradient (sum of the chosen tokens'
  softmax log-probabilities, moving-average baseline), the raw loss as reward, the masking "preference" (softmax
  probability x token count: not a rate; ``pref_*`` fields), the pairwise-proximity audit of the gene table
  (``audit_tf_target_*``, ``audit_markers_*``) and the target compared on the test split. They are shown in a part
  of their own, labelled superseded.

Every "higher / lower / tied" count is :func:`harness.stats.difference_stats`'s: a paired difference smaller than
:data:`harness.stats.TIE` in absolute value is a tie.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .stats import TIE, difference_stats

#: ``study_version`` of the records made with today's estimator (records without it are the 0.2 estimator's).
STUDY_VERSION = 2
#: How the report names the records without ``study_version``.
SUPERSEDED = "0.2 estimator (biased; superseded)"
#: Reconstruction targets compared by the ``target_selection`` experiment; the incumbent first.
TARGETS = ("counts", "log_expression", "bins")
#: The incumbent of the ``target_selection`` rule: 0.2's default target for models that read counts, which 0.2
#: chose on the split it reported. ``SCTransformer.pretrain`` defaults to the rule's pick (a test checks that).
DEFAULT_TARGET = "counts"
#: The scGPT spectral-geometry study's AUROCs for scGPT's contextual gene states (Kendiukhov 2026,
#: arXiv:2602.22247): comparable only with ``test="class_separation"`` on contextual states.
SCGPT_ANCHORS = {"tf_vs_target": 0.744, "marker_clustering": 0.851}
#: scTransformer arms of today's records, in the order the figures colour them.
ARMS_ORDER = ("none", "uniform", "mam", "mam_shuffled")
#: Tests of the class-separation audit, as the records name them.
AUDIT_TESTS = {"tf_vs_target": "TF vs target", "marker_clustering": "marker clustering"}
_AUDIT_FIELD = re.compile(
    r"^audit_(?P<rep>.+)_(?P<test>tf_vs_target|marker_clustering)_(?P<col>auroc|auroc_sd|null_mean|null_sd|p_value)$"
)
METRICS = ("macro_f1", "accuracy", "rare_f1")

#: Arms of today's records, as the report names them.
ARM_NAMES = {
    "none": "scTransformer, no pretraining",
    "uniform": "scTransformer, uniform masking",
    "mam": "scTransformer, MAM",
    "mam_shuffled": "scTransformer, MAM with shuffled reward (control)",
    "logistic_regression": "logistic regression",
    "celltypist": "CellTypist",
    "scanvi": "scANVI (scVI pretrained on the corpus)",
}
#: Arms of the 0.2 estimator's records.
OLD_ARM_NAMES = {
    "none": "scTransformer, no pretraining",
    "uniform": "scTransformer, uniform pretraining (log-expression target)",
    "mam": "scTransformer, MAM pretraining (log-expression target)",
    "mam/counts": "scTransformer, MAM pretraining (count target)",
    "logistic_regression": "logistic regression",
    "celltypist": "CellTypist",
    "scanvi": "scANVI (scVI pretrained on the corpus)",
}
#: Paired comparisons of today's arms (``a − b``), where both are recorded.
COMPARISONS = (
    ("uniform", "none"),
    ("mam", "none"),
    ("mam_shuffled", "none"),
    ("mam", "uniform"),
    ("mam", "mam_shuffled"),
    ("mam_shuffled", "uniform"),
    ("mam+query", "mam"),
    ("mam+query", "none"),
)
OLD_COMPARISONS = (
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
#: The generated reading of today's records: (experiment, a, b, what).
CHECKS = (
    ("label_efficiency", "uniform", "none", "pbmc3k, all label shares: uniform masking − no pretraining"),
    ("label_efficiency", "mam", "none", "pbmc3k, all label shares: MAM − no pretraining"),
    ("label_efficiency", "mam_shuffled", "none", "pbmc3k, all label shares: MAM with shuffled reward − no pretraining"),
    ("label_efficiency", "mam", "uniform", "pbmc3k, all label shares: MAM − uniform masking"),
    ("label_efficiency", "mam", "mam_shuffled", "pbmc3k, all label shares: MAM − MAM with shuffled reward"),
    ("label_efficiency", "mam", "logistic_regression", "pbmc3k: MAM − logistic regression"),
    ("label_efficiency", "mam", "scanvi", "pbmc3k: MAM − scANVI"),
    ("cross_study", "uniform", "none", "cross-study: uniform masking − no pretraining"),
    ("cross_study", "mam", "none", "cross-study: MAM − no pretraining"),
    ("cross_study", "mam_shuffled", "none", "cross-study: MAM with shuffled reward − no pretraining"),
    ("cross_study", "mam", "uniform", "cross-study: MAM − uniform masking"),
    ("cross_study", "mam", "mam_shuffled", "cross-study: MAM − MAM with shuffled reward"),
    ("cross_study", "mam+query", "mam", "cross-study: adding the query's cells to MAM's corpus"),
    ("cross_study", "mam+query", "none", "cross-study: MAM with the query's cells − no pretraining"),
    ("cross_study", "mam", "logistic_regression", "cross-study: MAM − logistic regression"),
    ("cross_study", "mam+query", "scanvi+query", "cross-study: MAM with the query's cells − scANVI with them"),
    ("darmanis", "uniform", "none", "Darmanis held-out donors: uniform masking − no pretraining"),
    ("darmanis", "mam", "none", "Darmanis held-out donors: MAM − no pretraining"),
    ("darmanis", "mam_shuffled", "none", "Darmanis held-out donors: MAM with shuffled reward − no pretraining"),
    ("darmanis", "mam", "uniform", "Darmanis held-out donors: MAM − uniform masking"),
    ("darmanis", "mam", "mam_shuffled", "Darmanis held-out donors: MAM − MAM with shuffled reward"),
    ("darmanis", "mam", "logistic_regression", "Darmanis held-out donors: MAM − logistic regression"),
)
#: The generated reading of the 0.2 estimator's records.
OLD_CHECKS = (
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
)
#: The README's (and the user contract's) paragraph: (experiment, a, b, label fractions or None: all, what).
HEADLINE = (
    ("label_efficiency", "uniform", "none", None, "uniform masking"),
    ("label_efficiency", "mam", "none", None, "MAM"),
    ("label_efficiency", "mam_shuffled", "none", None, "MAM with shuffled reward"),
    ("cross_study", "uniform", "none", None, "uniform masking"),
    ("cross_study", "mam", "none", None, "MAM"),
    ("cross_study", "mam_shuffled", "none", None, "MAM with shuffled reward"),
    ("darmanis", "uniform", "none", None, "uniform masking"),
    ("darmanis", "mam", "none", None, "MAM"),
    ("darmanis", "mam_shuffled", "none", None, "MAM with shuffled reward"),
)
OLD_HEADLINE = (
    ("label_efficiency", "uniform", "none", None, "uniform masking"),
    ("label_efficiency", "mam", "none", None, "MAM"),
    ("label_efficiency", "mam/counts", "none", None, "MAM with the count target"),
    ("cross_study", "uniform", "none", None, "uniform masking"),
    ("cross_study", "mam", "none", None, "MAM"),
    ("darmanis", "uniform", "none", None, "uniform masking"),
    ("darmanis", "mam", "none", None, "MAM"),
    ("darmanis", "mam/counts", "none", None, "MAM with the count target"),
)
EXPERIMENT_NAMES = {
    "label_efficiency": "pbmc3k (four label shares)",
    "cross_study": "pbmc3k → pbmc68k",
    "darmanis": "Darmanis held-out donors",
}


# ------------------------------------------------------------------------------------------------ records
def identity(rec: dict) -> tuple:
    """What identifies a run: its estimator version, experiment, kind, method, arm, label fraction and seed."""
    keys = ("study_version", "experiment", "kind", "method", "arm", "fraction", "seed")
    return tuple(str(rec.get(k)) for k in keys)


def load_records(path: Path) -> list[dict]:
    """Every record of the JSON-lines file ``path``; a later record of the same run replaces an earlier one."""
    path = Path(path)
    if not path.exists():
        return []
    latest = {}
    for line in path.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            latest[identity(rec)] = rec
    return list(latest.values())


def versions(records: Sequence[dict]) -> tuple[list[dict], list[dict], list[dict]]:
    """Today's records, the 0.2 estimator's (no ``study_version``) and any other version's, in that order."""
    current = [r for r in records if r.get("study_version") == STUDY_VERSION]
    old = [r for r in records if r.get("study_version") is None]
    other = [r for r in records if r.get("study_version") not in (None, STUDY_VERSION)]
    return current, old, other


def _frame(records: Sequence[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(list(records))
    for col in ("experiment", "kind", "method", "arm", "fraction", "seed", "macro_f1", "accuracy", "rare_f1"):
        if col not in frame:
            frame[col] = np.nan
    return frame


# ------------------------------------------------------------------------------------------------ statistics
def _variant(row: pd.Series) -> str:
    """The arm of an scTransformer or peer run (a peer with one arm per split is named by its method)."""
    return (
        row["arm"] if row["method"] == "sctransformer" or row["arm"] not in ("peer", row["method"]) else row["method"]
    )


def _classifiers(frame: pd.DataFrame, experiment: str) -> pd.DataFrame:
    sub = frame[(frame["experiment"] == experiment) & (frame["kind"] == "classifier")].copy()
    if not sub.empty:
        sub["variant"] = sub.apply(_variant, axis=1)
    return sub


def paired_differences(
    frame: pd.DataFrame, experiment: str, a: str, b: str, fractions=None, metric: str = "macro_f1"
) -> pd.Series:
    """``a − b`` per (label fraction, seed) both have (``fractions``: only those)."""
    sub = _classifiers(frame, experiment)
    if sub.empty:
        return pd.Series(dtype=float)
    wide = sub.pivot_table(index=["fraction", "seed"], columns="variant", values=metric)
    if a not in wide or b not in wide:
        return pd.Series(dtype=float)
    diff = (wide[a] - wide[b]).dropna()
    if fractions is not None:
        diff = diff[diff.index.get_level_values("fraction").isin(list(fractions))]
    return diff


def pooled_stats(
    records: Sequence[dict] | pd.DataFrame, experiment: str, a: str, b: str, fractions=None, metric: str = "macro_f1"
) -> dict | None:
    """:func:`harness.stats.difference_stats` of ``a − b`` pooled over the (label fraction, seed) pairs both have.

    Examples
    --------
    >>> from harness.pretraining_report import pooled_stats
    >>> rec = lambda arm, seed, f1: {
    ...     "experiment": "e",
    ...     "kind": "classifier",
    ...     "method": "sctransformer",
    ...     "arm": arm,
    ...     "fraction": 1.0,
    ...     "seed": seed,
    ...     "macro_f1": f1,
    ... }
    >>> recs = [rec("mam", 0, 0.80), rec("none", 0, 0.79), rec("mam", 1, 0.8003), rec("none", 1, 0.80)]
    >>> s = pooled_stats(recs, "e", "mam", "none")
    >>> s["wins"], s["losses"], s["ties"]  # +0.0003 is a tie (|difference| < 5e-4)
    (1, 0, 1)
    """
    frame = records if isinstance(records, pd.DataFrame) else _frame(records)
    diff = paired_differences(frame, experiment, a, b, fractions, metric)
    return difference_stats(diff.to_numpy(dtype=float)) if len(diff) else None


def phrase(stats: dict, sd: bool = True) -> str:
    """A paired comparison in words: mean difference (sd), and pairs higher, lower and tied.

    Examples
    --------
    >>> from harness.pretraining_report import phrase
    >>> phrase({"mean": 0.0076, "sd": 0.045, "wins": 7, "losses": 5, "ties": 0, "n_pairs": 12})
    '+0.008, sd 0.045; higher in 7, lower in 5, tied in 0 of 12 pairs'
    """
    spread = f", sd {stats['sd']:.3f}" if sd and stats["n_pairs"] > 1 else ""
    return (
        f"{stats['mean']:+.3f}{spread}; higher in {stats['wins']}, lower in {stats['losses']}, "
        f"tied in {stats['ties']} of {stats['n_pairs']} pairs"
    )


def pairs_phrase(stats: dict) -> str:
    """The pairs of a paired comparison in words, as prose outside the report cites them.

    Examples
    --------
    >>> from harness.pretraining_report import pairs_phrase
    >>> pairs_phrase({"mean": 0.021, "wins": 7, "losses": 5, "ties": 0, "n_pairs": 12})
    '+0.021; higher in 7, lower in 5, tied in 0 of 12 pairs'
    """
    return phrase(stats, sd=False)


def _counts(stats: dict) -> str:
    return f"{stats['wins']} / {stats['losses']} / {stats['ties']}"


# ------------------------------------------------------------------------------------------------ tables
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


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    return frame[name] if name in frame else pd.Series(np.nan, index=frame.index)


def label_efficiency_tables(frame: pd.DataFrame, names: dict[str, str]) -> str:
    """Macro-F1, rare-type F1 and accuracy per method and label fraction (mean ± sd over seeds)."""
    le = _classifiers(frame, "label_efficiency")
    if le.empty:
        return "_No label-efficiency records yet._"
    fractions = sorted(le["fraction"].dropna().unique())
    out = []
    for metric, title in (("macro_f1", "macro-F1"), ("rare_f1", "rare-type F1"), ("accuracy", "accuracy")):
        rows = []
        for variant in names:
            sub = le[le["variant"] == variant]
            if sub.empty:
                continue
            row = [names[variant]]
            for f in fractions:
                row.append(_ms(sub[sub["fraction"] == f][metric]))
            row.append(str(sub["seed"].nunique()))
            rows.append(row)
        none = le[le["variant"] == "none"]
        labelled = _column(none, "n_labelled").groupby(none["fraction"]).mean().dropna()
        header = ["method"] + [
            f"{f:.0%} ({labelled.get(f, np.nan):.0f} cells)" if f in labelled else f"{f:.0%}" for f in fractions
        ]
        out.append(f"**{title}** (mean ± sd over seeds)\n\n" + _table(rows, header + ["seeds"]))
    return "\n\n".join(out)


def paired_table(
    frame: pd.DataFrame,
    experiment: str,
    comparisons=COMPARISONS,
    names: dict[str, str] = ARM_NAMES,
    metric: str = "macro_f1",
) -> str:
    """Differences between arms of the same seed (and label fraction): mean, sd, range, higher / lower / tied."""
    sub = _classifiers(frame, experiment)
    if sub.empty:
        return "_No records yet._"
    wide = sub.pivot_table(index=["fraction", "seed"], columns="variant", values=metric)
    rows = []
    arms = list(wide.columns)
    ours = list(dict.fromkeys(sub.loc[sub["method"] == "sctransformer", "variant"]))  # in record order
    pairs = [(a, b) for a, b in (*comparisons, *PEER_COMPARISONS) if a in arms and b in arms]
    pairs += [(a, "none") for a in ours if a not in names and "/" not in a and "none" in arms]
    pairs += [(a, a.split("/")[0]) for a in arms if "/" in a and a.split("/")[0] in arms]
    pairs += [
        (a, "none/" + a.split("/")[1])
        for a in arms
        if "/" in a and "none/" + a.split("/")[1] in arms and a[:4] != "none"
    ]
    pairs = list(dict.fromkeys(pairs))
    for fraction, block in wide.groupby(level="fraction"):
        for a, b in pairs:
            diff = (block[a] - block[b]).dropna()
            if diff.empty:
                continue
            stats = difference_stats(diff.to_numpy(dtype=float))
            rows.append(
                [
                    f"{fraction:.0%}",
                    f"{a} − {b}",
                    f"{stats['mean']:+.3f}",
                    f"{stats['sd']:.3f}" if len(diff) > 1 else "–",
                    f"{diff.min():+.3f} … {diff.max():+.3f}",
                    f"{_counts(stats)} of {stats['n_pairs']}",
                ]
            )
    return _table(rows, ["labels", "comparison", "mean Δ", "sd", "range", "higher / lower / tied"])


def arms_table(frame: pd.DataFrame, experiment: str, recall: bool = False) -> str:
    """Per arm: macro-F1, accuracy, rare-type F1 (and per-type recall) over seeds."""
    sub = frame[(frame["experiment"] == experiment) & (frame["kind"] == "classifier")]
    if sub.empty:
        return "_No records yet._"
    types = []
    if recall and "recall" in sub:
        types = sorted({t for r in sub["recall"].dropna() for t in r})
    rows = []
    for arm, block in sub.groupby("arm", sort=False):
        row = [arm, _ms(block["macro_f1"]), _ms(block["accuracy"]), _ms(block["rare_f1"])]
        for t in types:
            row.append(_ms(block["recall"].map(lambda r, t=t: (r or {}).get(t, np.nan)), 2))
        row.append(str(block["seed"].nunique()))
        rows.append(row)
    return _table(rows, ["arm", "macro-F1", "accuracy", "rare-type F1"] + [f"recall {t}" for t in types] + ["seeds"])


def _reading(frame: pd.DataFrame, checks) -> str:
    lines = []
    for experiment, a, b, what in checks:
        stats = pooled_stats(frame, experiment, a, b)
        if stats is not None:
            lines.append(f"- {what}: macro-F1 {phrase(stats)}.")
    return "\n".join(lines) if lines else "_No paired records yet._"


def reading(frame: pd.DataFrame) -> str:
    """Sentences generated from the paired differences (macro-F1) of today's records."""
    return _reading(frame, CHECKS)


def old_reading(frame: pd.DataFrame) -> str:
    """Sentences generated from the paired differences (macro-F1) of the 0.2 estimator's records."""
    return _reading(frame, OLD_CHECKS)


def _finish_figure(fig, axes, path: Path, ylabel: str, legend_height: float) -> None:
    """Label the first panel, put the first panel's legend under the panels, save at the report's resolution."""
    import matplotlib.pyplot as plt

    axes[0].set_ylabel(ylabel)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, legend_height, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def label_efficiency_figure(frame: pd.DataFrame, path: Path, names: dict[str, str], title: str = "") -> bool:
    """Macro-F1 and rare-type F1 against the share of labelled cells, one line per method (mean ± sd over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    le = _classifiers(frame, "label_efficiency")
    if le.empty:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.2), sharey=True)
    styles = {"logistic_regression": "--", "celltypist": "--", "scanvi": ":"}  # scTransformer arms: solid
    for ax, metric, name in zip(axes, ("macro_f1", "rare_f1"), ("macro-F1", "rare-type F1"), strict=True):
        for variant, label in names.items():
            sub = le[le["variant"] == variant]
            if sub.empty:
                continue
            stats = sub.groupby("fraction")[metric].agg(["mean", "std"]).sort_index()
            ax.errorbar(
                stats.index * 100,
                stats["mean"],
                yerr=stats["std"].fillna(0),
                label=label,
                linestyle=styles.get(variant, "-"),
                marker="o",
                markersize=4,
                capsize=3,
            )
        ax.set_xscale("log")
        ax.set_xticks([1, 5, 20, 100], ["1%", "5%", "20%", "100%"])
        ax.set_xlabel("training labels kept")
        ax.set_title(f"pbmc3k held-out 20%: {name}{title}")
        ax.grid(alpha=0.3)
    _finish_figure(fig, axes, path, "score (mean ± sd over seeds)", legend_height=0.16)
    return True


def cost_table(frame: pd.DataFrame) -> str:
    """Pretraining wall time and throughput, and fine-tuning time, per experiment and arm."""
    sub = frame[(frame["kind"] == "backbone") & _column(frame, "pretrain_s").notna()]
    if sub.empty:
        return "_No pretraining records yet._"
    rows = []
    for (experiment, arm), block in sub.groupby(["experiment", "arm"], sort=False):
        draws = _column(block, "n_draws").dropna()
        rows.append(
            [
                experiment,
                arm,
                f"{block['pretrain_cells'].mean():,.0f}",
                f"{block['pretrain_epochs'].mean():.0f}",
                f"{draws.iloc[0]:.0f}" if len(draws) else "–",
                _ms(block["pretrain_s"], 0),
                _ms(block["pretrain_cells_per_s"], 0),
                ", ".join(sorted({f"{t} thread(s)" for t in block["threads"]})),
            ]
        )
    header = ["experiment", "arm", "corpus cells", "epochs", "draws per cell", "wall s", "cells read / s", "threads"]
    table = _table(rows, header)
    tuned = frame[(frame["kind"] == "classifier") & (frame["method"] == "sctransformer") & (frame["fraction"] == 1.0)]
    if not tuned.empty:
        rows = [
            [experiment, arm, f"{block['n_labelled'].mean():,.0f}", _ms(block["train_s"], 0), str(len(block))]
            for (experiment, arm), block in tuned.groupby(["experiment", "arm"], sort=False)
        ]
        table += "\n\nFine-tuning on all labels (`train()` defaults), the same processes:\n\n" + _table(
            rows, ["experiment", "arm", "labelled cells", "train s", "runs"]
        )
    cpus = sorted(set(frame["machine"].dropna())) if "machine" in frame else []
    return table + f"\n\nCPU: {', '.join(cpus)}. Wall times are of one process; see the threads column."


# ------------------------------------------------------------------------------------------------ target choice
#: Seeds every target needs before ``target_selection`` picks one.
MIN_SEEDS = 3


def target_selection(records: Sequence[dict] | pd.DataFrame, min_seeds: int = MIN_SEEDS) -> dict:
    """What the ``target_selection`` records (today's, validation cells only) say about the reconstruction target.

    The rule: the target of highest validation macro-F1, pooled over label shares and seeds, once every target has
    the same (label share, seed) runs, of at least ``min_seeds`` seeds; 0.2's default (:data:`DEFAULT_TARGET`) stays unless that target is
    ahead of it by at least :data:`harness.stats.TIE` (paired mean).

    Returns
    -------
    ``status`` (``"not yet run"``, ``"incomplete"`` or ``"complete"``), ``target`` (the pick; the default until
    complete), ``means`` (target -> pooled mean), ``vs_default`` (target -> paired stats against the default),
    ``n_runs`` and ``expected``.
    """
    frame = records if isinstance(records, pd.DataFrame) else _frame(records)
    frame = frame[frame["study_version"] == STUDY_VERSION] if "study_version" in frame else frame.iloc[0:0]
    sub = _classifiers(frame, "target_selection")
    out = {"status": "not yet run", "target": DEFAULT_TARGET, "means": {}, "vs_default": {}, "n_runs": len(sub)}
    if sub.empty:
        out["expected"] = 0
        return out
    sub = sub[sub["target"].isin(TARGETS)]
    runs = {t: set(zip(g["fraction"], g["seed"], strict=True)) for t, g in sub.groupby("target")}
    every = set().union(*runs.values())
    out["expected"] = len(every) * len(TARGETS)
    for target, g in sub.groupby("target"):
        out["means"][target] = float(g["macro_f1"].mean())
    for target in TARGETS:
        if target != DEFAULT_TARGET:
            stats = pooled_stats(frame, "target_selection", f"mam/{target}", f"mam/{DEFAULT_TARGET}")
            if stats is not None:
                out["vs_default"][target] = stats
    if any(runs.get(t, set()) != every for t in TARGETS) or len({seed for _, seed in every}) < min_seeds:
        out["status"] = "incomplete"
        return out
    out["status"] = "complete"
    best = max(TARGETS, key=lambda t: out["means"][t])
    ahead = out["vs_default"].get(best, {"mean": 0.0})["mean"] >= TIE
    out["target"] = best if best != DEFAULT_TARGET and ahead else DEFAULT_TARGET
    return out


def target_section(frame: pd.DataFrame, used: list[str]) -> str:
    """The reconstruction target: what the validation split picks, and what the reported experiments used."""
    choice = target_selection(frame)
    text = [
        "MAM with each reconstruction target (`counts`, `log_expression`, `bins`), scored on a validation split",
        "carved from pbmc3k's training cells (the evaluation's 80/20 split, its training 80% split again 75/25,",
        "stratified; the test 20% is never read): pretrained on the fit cells and the four unlabelled sets, fine-tuned",
        "on 1%, 5%, 20% and 100% of the fit cells' labels. The rule: the target of highest validation macro-F1 pooled",
        f"over label shares and seeds; 0.2's default (`{DEFAULT_TARGET}`) stays unless another is ahead of it",
        f"by at least {TIE} (paired mean). No target is picked before every target has the same runs, on at least",
        f"{MIN_SEEDS} seeds.",
        "",
    ]
    if choice["status"] == "not yet run":
        text.append(
            "**Not yet run** (`python benchmarks/pretraining.py --experiments target_selection --seeds 0 1 2`): the "
            f"default target stays `{DEFAULT_TARGET}`, which 0.2 chose on the test split it reported (see the "
            "superseded part)."
        )
    else:
        sub = _classifiers(frame, "target_selection")
        rows = []
        for target in TARGETS:
            g = sub[sub["target"] == target]
            if g.empty:
                continue
            row = [target, *(_ms(g[g["fraction"] == f]["macro_f1"]) for f in sorted(sub["fraction"].unique()))]
            stats = choice["vs_default"].get(target)
            row += [_ms(g["macro_f1"]), phrase(stats) if stats else "–", str(g["seed"].nunique())]
            rows.append(row)
        header = ["target", *(f"{f:.0%}" for f in sorted(sub["fraction"].unique()))]
        header += ["pooled", f"paired − {DEFAULT_TARGET}", "seeds"]
        text += ["Validation macro-F1 (mean ± sd over seeds):", "", _table(rows, header), ""]
        if choice["status"] == "incomplete":
            seeds = sub["seed"].nunique()
            text.append(
                f"**Incomplete** ({choice['n_runs']} of {choice['expected']} runs, {seeds} seed(s)): no target is "
                f"picked yet; the default stays `{DEFAULT_TARGET}`."
            )
        elif choice["target"] == DEFAULT_TARGET:
            text.append(f"**The validation split picks `{choice['target']}`, 0.2's default.**")
        else:
            text.append(
                f"**The validation split picks `{choice['target']}`, not 0.2's default `{DEFAULT_TARGET}`**:"
                f" since 0.3, `SCTransformer.pretrain` reconstructs `{choice['target']}` unless told otherwise."
            )
    if used:
        text += ["", "The experiments below were run with the target " + ", ".join(f"`{t}`" for t in used) + "."]
    return "\n".join(text)


# ------------------------------------------------------------------------------------------------ audit
def _state(row: pd.Series) -> str:
    if row["kind"] == "backbone":
        return "untrained encoder" if pd.isna(row.get("masking")) else "pretrained encoder"
    return "fine-tuned on all labels"


def audit_long(frame: pd.DataFrame) -> pd.DataFrame:
    """The class-separation audit fields of today's records, one row per record x representation x test x column."""
    fields = [(c, m) for c in frame.columns if (m := _AUDIT_FIELD.match(c))]
    rows = []
    for _, rec in frame.iterrows():
        for column, match in fields:
            value = rec[column]
            if value is None or (isinstance(value, float) and np.isnan(value)):
                continue
            rows.append(
                {
                    "experiment": rec["experiment"],
                    "arm": rec["arm"],
                    "state": _state(rec),
                    "seed": rec["seed"],
                    "representation": match["rep"],
                    "test": match["test"],
                    "column": match["col"],
                    "value": float(value),
                }
            )
    return pd.DataFrame(
        rows, columns=["experiment", "arm", "state", "seed", "representation", "test", "column", "value"]
    )


def _depth(name: str) -> tuple[int, int]:
    if name == "gene_embedding":
        return (0, 0)
    if name == "input":
        return (1, 0)
    found = re.match(r"block_(\d+)$", name)
    return (2, int(found.group(1))) if found else (3, 0)


def audit_tables(frame: pd.DataFrame) -> str:
    """AUROC per representation (gene table, then the contextual states by depth) for each test, beside scGPT's."""
    long = audit_long(frame)
    if long.empty:
        return "_No audit records yet._"
    reps = sorted(long["representation"].unique(), key=_depth)
    out = []
    for test, title in AUDIT_TESTS.items():
        sub = long[(long["test"] == test)]
        if sub.empty:
            continue
        rows = []
        for (experiment, arm, state), block in sub.groupby(["experiment", "arm", "state"], sort=False):
            auroc = block[block["column"] == "auroc"]
            null = block[block["column"] == "null_mean"]["value"]
            row = [experiment, arm, state]
            row += [_ms(auroc[auroc["representation"] == rep]["value"]) for rep in reps]
            row += [f"{null.min():.3f} … {null.max():.3f}" if len(null) else "–", str(auroc["seed"].nunique())]
            rows.append(row)
        contextual = [rep for rep in reps if rep != "gene_embedding"]
        header = ["experiment", "arm", "model", *(("gene table" if r == "gene_embedding" else r) for r in reps)]
        header += ["null means", "seeds"]
        out.append(
            f"**{title}** AUROC (mean ± sd over seeds; null: classes or marker genes permuted, 50 permutations)\n\n"
            + _table(rows, header)
            + f"\n\nAnchor, the same test on scGPT's contextual gene states (Kendiukhov 2026, arXiv:2602.22247):"
            f" **{SCGPT_ANCHORS[test]:.3f}**. Comparable with the contextual columns here ({', '.join(contextual)}),"
            " with another model, genes and data; the gene table has no counterpart there."
        )
    return "\n\n".join(out)


def audit_figure(frame: pd.DataFrame, path: Path, experiment: str = "label_efficiency") -> bool:
    """AUROC of each class-separation test by representation (gene table, then depth), one line per arm and state.

    Mean ± sd over seeds; the encoders (untrained for ``none``, pretrained otherwise) solid, the same arms
    fine-tuned on all labels dashed; the permutation null (grey band: the range of the null means) and scGPT's
    anchor (a horizontal line, beside the contextual states only) on each panel.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    long = audit_long(frame)
    long = long[(long["experiment"] == experiment)] if not long.empty else long
    if long.empty:
        return False
    reps = sorted(long["representation"].unique(), key=_depth)
    x = {rep: i for i, rep in enumerate(reps)}
    fig, axes = plt.subplots(1, len(AUDIT_TESTS), figsize=(5.2 * len(AUDIT_TESTS), 4.8), sharey=True)
    colours = dict(zip(ARMS_ORDER, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False))
    for ax, (test, title) in zip(axes, AUDIT_TESTS.items(), strict=True):
        sub = long[long["test"] == test]
        null = sub[sub["column"] == "null_mean"]["value"]
        if len(null):
            ax.axhspan(null.min(), null.max(), color="0.85", label="permutation null (range of means)")
        contextual = [x[rep] for rep in reps if rep != "gene_embedding"]
        if contextual:
            ax.hlines(
                SCGPT_ANCHORS[test],
                min(contextual) - 0.2,
                max(contextual) + 0.2,
                colors="black",
                linestyles=":",
                label="scGPT, contextual states (anchor)",
            )
        auroc = sub[sub["column"] == "auroc"]
        for (arm, state), block in auroc.groupby(["arm", "state"], sort=False):
            stats = block.groupby("representation")["value"].agg(["mean", "std"])
            stats = stats.loc[sorted(stats.index, key=_depth)]
            ax.errorbar(
                [x[r] for r in stats.index],
                stats["mean"],
                yerr=stats["std"].fillna(0),
                color=colours.get(arm),
                linestyle="--" if state == "fine-tuned on all labels" else "-",
                marker="o",
                markersize=4,
                capsize=3,
                label=f"{arm}, {state}",
            )
        ax.set_xticks(range(len(reps)), [("gene table" if r == "gene_embedding" else r) for r in reps], rotation=30)
        ax.set_title(f"{title}: {EXPERIMENT_NAMES.get(experiment, experiment)}")
        ax.grid(alpha=0.3)
    _finish_figure(fig, axes, path, "AUROC (mean ± sd over seeds)", legend_height=0.24)
    return True


# ------------------------------------------------------------------------------------------------ masking
#: Gene classes of the masking read-out (record field suffix -> label).
MASK_CLASSES = {"tf": "TF", "target": "target", "hvg": "HVG", "ribo_mito": "ribosomal/MT"}


def masking_table(frame: pd.DataFrame) -> str:
    """What MAM (and its shuffled-reward control) masks: Monte-Carlo inclusion rates over the uniform rate."""
    if "mask_spearman_mean_expression" not in frame:
        return "_No masking read-out yet._"
    sub = frame[frame["mask_spearman_mean_expression"].notna()]
    rows, tops = [], []
    for (experiment, arm), block in sub.groupby(["experiment", "arm"], sort=False):
        row = [
            experiment,
            arm,
            _ms(block["mask_spearman_mean_expression"], 2),
            _ms(block["mask_spearman_detection"], 2),
            _ms(_column(block, "mask_spearman_dispersion"), 2),
        ]
        for field in MASK_CLASSES:
            row.append(
                _ms(block[f"mask_ratio_median_{field}"], 2) + " / " + _ms(block[f"mask_ratio_median_not_{field}"], 2)
            )
        row += [
            _ms(block["mask_share_above_uniform"], 2),
            _ms(block["mask_top50_ribo_mito"], 1),
            _ms(block["mask_max_ratio"], 2),
            _ms(block["mask_max_rate"], 2),
            _ms(block["mask_uniform_rate_median"], 3),
            str(block["seed"].nunique()),
        ]
        rows.append(row)
        sets = [{g for g, *_ in top} for top in block["mask_top"].dropna()]
        common = sorted(set.intersection(*sets)) if sets else []
        first = block.sort_values("seed").iloc[0]
        tops.append(
            f"- **{experiment}, {arm}**: top 20 of seed {int(first['seed'])} (ratio to uniform): "
            + ", ".join(f"{g} ({r:.2f})" for g, r, *_ in first["mask_top"])
            + f". In the top 20 of every seed ({len(sets)}): {', '.join(common) if common else 'none'}."
        )
    header = ["experiment", "arm", "Spearman vs mean expression", "vs detection", "vs dispersion"]
    header += [f"median {name} / not" for name in MASK_CLASSES.values()]
    header += ["share of genes above uniform", "ribosomal/MT in top 50", "max ratio", "max rate", "median k / n"]
    header += ["seeds"]
    return _table(rows, header) + "\n\n" + "\n".join(tops)


def old_audit_table(frame: pd.DataFrame) -> str:
    """The 0.2 records' pairwise-proximity audit of the static gene table (no anchor: another test than scGPT's)."""
    if "audit_tf_target_auroc" not in frame:
        return "_No audit records._"
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
                _ms(_column(block, "audit_tf_target_null_mean")),
                _ms(_column(block, "audit_markers_auroc")),
                str(block["seed"].nunique()),
            ]
        )
    header = ["experiment", "arm", "model", "TF → target pair AUROC", "null", "marker pair AUROC", "seeds"]
    return _table(rows, header)


#: The share of each cell's tokens the 0.2 records masked (``pretrain``'s default then and now).
OLD_MASK_RATIO = 0.15


def _above_bound(frame: pd.DataFrame) -> str:
    """How many of the 0.2 records' largest preferences exceed ``1 / mask_ratio``, as "k of n"."""
    values = pd.to_numeric(_column(frame, "pref_max"), errors="coerce").dropna()
    return f"{int((values > 1 / OLD_MASK_RATIO).sum())} of these {len(values)}"


def old_masking_table(frame: pd.DataFrame) -> str:
    """The 0.2 records' masking "preference" (softmax probability x token count; not a masking rate)."""
    if "pref_spearman_mean_expression" not in frame:
        return "_No MAM records._"
    sub = frame[frame["pref_spearman_mean_expression"].notna()]
    rows, tops = [], []
    for (experiment, arm), block in sub.groupby(["experiment", "arm"], sort=False):
        rows.append(
            [
                experiment,
                arm,
                _ms(block["pref_spearman_mean_expression"], 2),
                _ms(block["pref_spearman_detection"], 2),
                _ms(_column(block, "pref_spearman_dispersion"), 2),
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
        " definition)._"
        if stale
        else ""
    )
    if "pref_rerun_validation_mse" in sub and sub["pref_rerun_validation_mse"].notna().any():
        rerun = sub[sub["pref_rerun_validation_mse"].notna()]
        gap = (rerun["pref_rerun_validation_mse"] / rerun["pretrain_validation_mse"] - 1).abs().max()
        note += (
            f"\n\n{len(rerun)} of these summaries were computed after the fact (0.2's `--refresh-masking`) on"
            " backbones pretrained again with the same seed and settings; CPU training is not bit-reproducible, and"
            f" their validation MSE differed from the recorded run's by at most {gap:.1%}."
        )
    return _table(rows, header) + note + "\n\n" + "\n".join(tops)


# ------------------------------------------------------------------------------------------------ headline
def headline(records: Sequence[dict]) -> str:
    """The README's paragraph on pretraining: pretrained arms minus no pretraining, pooled per experiment.

    From today's records where they exist, else from the 0.2 estimator's, said to be superseded (and that their
    uniform and MAM arms predicted log-normalised expression).
    """
    current, old, _ = versions(records)
    frame, checks = _frame(current), HEADLINE
    if any(pooled_stats(frame, e, a, b, f) for e, a, b, f, _ in HEADLINE):
        backbones = frame[(frame["kind"] == "backbone") & (frame["experiment"] != "target_selection")]
        targets = sorted(set(_column(backbones, "target").dropna()))
        lead = "With today's MAM estimator" + (f" (target {', '.join(targets)})" if targets else "")
    else:
        frame, checks = _frame(old), OLD_HEADLINE
        lead = (
            "Not yet measured with today's MAM estimator (reruns pending). With MAM's 0.2 estimator (biased;"
            " superseded), whose uniform and MAM arms predicted log-normalised expression"
        )
    parts = []
    for experiment in EXPERIMENT_NAMES:
        items = [
            f"{what} {stats['mean']:+.3f} ({_counts(stats)} of {stats['n_pairs']})"
            for e, a, b, fractions, what in checks
            if e == experiment and (stats := pooled_stats(frame, e, a, b, fractions))
        ]
        if items:
            parts.append(f"{EXPERIMENT_NAMES[experiment]}: " + ", ".join(items))
    if not parts:
        return "Not yet measured: no record of the label-efficiency, cross-study or Darmanis experiments yet."
    text = (
        f"{lead}, macro-F1 of each pretrained arm minus training from scratch, paired by seed and label share"
        f" (mean; pairs higher / lower / tied, a tie being |difference| < {TIE}): " + "; ".join(parts) + "."
    )
    low = [
        f"{f:.0%} of the labels {stats['mean']:+.3f} ({_counts(stats)} of {stats['n_pairs']})"
        for f in (0.01, 0.05)
        if (stats := pooled_stats(frame, "label_efficiency", "scanvi", "mam", [f]))
    ]
    if low:
        text += " Semi-supervised scANVI minus MAM on pbmc3k: " + ", ".join(low) + "."
    return text


def query_cells_reading(records: Sequence[dict]) -> str:
    """The pretraining tutorial's sentence on adding the query's own cells to the corpus (cross-study, paired).

    MAM with the query's cells minus MAM without them, from today's records where they exist, else the 0.2
    estimator's (said to be superseded).
    """
    current, old, _ = versions(records)
    stats = pooled_stats(_frame(current), "cross_study", "mam+query", "mam")
    lead = "with today's estimator"
    if stats is None:
        stats, lead = pooled_stats(_frame(old), "cross_study", "mam+query", "mam"), f"with the {SUPERSEDED}"
    if stats is None:
        return "Not yet measured: no cross-study record with and without the query's cells."
    return f"{lead}, adding them changed macro-F1 by {pairs_phrase(stats)}."


# ------------------------------------------------------------------------------------------------ the report
def _current_part(frame: pd.DataFrame, path: Path) -> list[str]:
    """The sections of today's records."""
    classifiers = frame[frame["kind"] == "classifier"]
    reported = classifiers[classifiers["experiment"] != "target_selection"]
    if reported.empty:
        return [
            "_Not yet run with today's estimator._ Commands (3 seeds; `--threads 1` runs each on one core):",
            "",
            "```bash",
            "python benchmarks/pretraining.py --experiments target_selection --seeds 0 1 2",
            "python benchmarks/pretraining.py --experiments label_efficiency cross_study darmanis --seeds 0 1 2",
            "```",
            "",
        ]
    figure = path.with_name(path.stem + "_label_efficiency.png")
    audit = path.with_name(path.stem + "_audit.png")
    return [
        "### Reading (generated from the paired records)",
        "",
        "Differences in macro-F1 between two arms of the same split, seed and labelled cells, pooled over the",
        "label fractions and seeds both have (a pair: one fraction of one seed).",
        "",
        reading(frame),
        "",
        "### Label efficiency on pbmc3k",
        "",
        *([f"![label efficiency]({figure.name})", ""] if label_efficiency_figure(frame, figure, ARM_NAMES) else []),
        "The same held-out 20% for every fraction; the labelled cells are a stratified share of the training 80%",
        "(at least 2 of every type). Pretraining corpus: the training cells (labels unused) and the four unlabelled",
        "10x PBMC sets. Uniform masking reads each cell twice per step, as MAM does (equal encoder cost). Rare",
        "types: the third of pbmc3k's types with the fewest training cells.",
        "",
        label_efficiency_tables(frame, ARM_NAMES),
        "",
        "**Paired by seed** (macro-F1; scTransformer arms of a seed share the split, labelled cells, panel and mask)",
        "",
        paired_table(frame, "label_efficiency"),
        "",
        "### Cross-study: pbmc3k → pbmc68k_reduced",
        "",
        "`mam+query`: the query's own cells are in the pretraining corpus (no query label is read). `/shuffled`:",
        "the degree-preserving shuffle of the GRN mask.",
        "",
        arms_table(frame, "cross_study", recall=True),
        "",
        paired_table(frame, "cross_study"),
        "",
        "### Darmanis 2015: held-out donor groups",
        "",
        "Corpus: Darmanis' own cells, the held-out donors' included (no other brain data with many genes is",
        "available offline).",
        "",
        arms_table(frame, "darmanis"),
        "",
        paired_table(frame, "darmanis"),
        "",
        "### Gene representations, layer by layer",
        "",
        '`sct.tl.gene_embedding_audit(test="class_separation")`, as the scGPT spectral-geometry study measures it:',
        "TF vs target, the cross-validated AUROC of a linear discriminant of the two gene classes in a 6-dimensional",
        "spectral subspace; marker clustering, same-type against different-type marker pairs in that subspace",
        "(markers: the training cells' t-test top 25 per type). Per representation: the static gene table and the",
        "contextual gene states entering the first block (`input`) and after each block, read on up to 2,000 of the",
        "training cells.",
        "",
        *([f"![gene-embedding audit]({audit.name})", ""] if audit_figure(frame, audit) else []),
        audit_tables(frame),
        "",
        "### What MAM masks",
        "",
        "`model.get_masking_preference` (32 draws of the model's own sampler per cell, on the training cells): a",
        "gene's inclusion rate is the share of draws that mask it, averaged over the cells expressing it; its ratio",
        "to uniform divides by each cell's `k / n` (1: as often as at random; at most `n / k`). Summarised by",
        "`sct.tl.masking_preference_summary` over genes expressed in at least 2% of the cells (HVG: the 2,000 panel",
        "genes of highest normalised dispersion among them). The shuffled-reward arm is the control: what MAM",
        "masks beyond it is what its reward taught it.",
        "",
        masking_table(frame),
        "",
        "### Cost",
        "",
        cost_table(frame),
        "",
    ]


def _old_part(frame: pd.DataFrame, path: Path) -> list[str]:
    """The sections of the 0.2 estimator's records."""
    figure = path.with_name(path.stem + "_label_efficiency_superseded.png")
    drawn = label_efficiency_figure(frame, figure, OLD_ARM_NAMES, title=" (0.2 estimator)")
    return [
        "These records were made before issue 24, and are kept for the record only: MAM's policy gradient summed the",
        "chosen tokens' softmax log-probabilities (not the probability of a draw without replacement) with one",
        "moving-average baseline, which moves the policy with no reward signal; its reward was the raw loss, which",
        "grows with expression by construction; uniform masking read each cell once; the reconstruction targets",
        "were compared on the test split reported here. Nothing here is paired with today's records.",
        "",
        "### Reading (generated from the paired records)",
        "",
        old_reading(frame),
        "",
        "### Label efficiency on pbmc3k",
        "",
        *([f"![label efficiency, 0.2 estimator]({figure.name})", ""] if drawn else []),
        "The same held-out 20% for every fraction; the labelled cells are a stratified share of the training 80%",
        "(at least 2 of every type). Pretraining corpus: the training cells (labels unused) and the four unlabelled",
        "10x PBMC sets. Rare types: the third of pbmc3k's types with the fewest training cells.",
        "",
        label_efficiency_tables(frame, OLD_ARM_NAMES),
        "",
        "**Paired by seed** (macro-F1)",
        "",
        paired_table(frame, "label_efficiency", OLD_COMPARISONS, OLD_ARM_NAMES),
        "",
        "### Cross-study: pbmc3k → pbmc68k_reduced",
        "",
        "`mam+query`: the query's own cells are in the pretraining corpus (no query label is read). `/shuffled`:",
        "the degree-preserving shuffle of the GRN mask. `/counts`, `/bins`: other reconstruction targets (compared",
        "on this test split).",
        "",
        arms_table(frame, "cross_study", recall=True),
        "",
        paired_table(frame, "cross_study", OLD_COMPARISONS, OLD_ARM_NAMES),
        "",
        "### Darmanis 2015: held-out donor groups",
        "",
        "Corpus: Darmanis' own cells, the held-out donors' included.",
        "",
        arms_table(frame, "darmanis"),
        "",
        paired_table(frame, "darmanis", OLD_COMPARISONS, OLD_ARM_NAMES),
        "",
        "### Gene embeddings (pairwise proximity of the static table; not the scGPT study's test)",
        "",
        '`sct.tl.gene_embedding_audit(test="pairwise_proximity")` as it was: are TF → target pairs (and same-type',
        "marker pairs) closer than random pairs in a 16-dimensional spectral embedding of the static gene table?",
        "Another question than the scGPT study's (two well-separated classes score low here), so no anchor is shown.",
        "",
        old_audit_table(frame),
        "",
        '### What MAM masked (the former "preference")',
        "",
        "Preference: the softmax probability of a token times the cell's token count, averaged over the cells",
        "expressing the gene. It is not a masking rate: drawing `k` of a cell's `n` tokens masks a token at most",
        f"`n / k` times as often as at random, about 1 / {OLD_MASK_RATIO} = {1 / OLD_MASK_RATIO:.1f} here, and"
        f" {_above_bound(frame)} records' largest preference exceeds it.",
        "",
        old_masking_table(frame),
        "",
        "### Cost",
        "",
        cost_table(frame),
        "",
    ]


def write_report(records: Sequence[dict], path: Path) -> None:
    """Write the markdown report of ``records`` to ``path`` (and its figures beside it)."""
    path = Path(path)
    current, old, other = versions(records)
    text = [
        "# Pretraining: uniform vs MAM masking, and the peers",
        "",
        "Generated by `python benchmarks/pretraining.py --report-only` from `benchmarks/results/pretraining.jsonl`;",
        "the experiments and their settings are described in `benchmarks/pretraining.py`. Do not edit by hand.",
        "",
    ]
    if not records:
        path.write_text("\n".join([*text, "_No records yet._", ""]))
        return
    text += [
        f"Records: {len(current)} made with today's MAM estimator (`study_version` {STUDY_VERSION}), {len(old)} with",
        f"the {SUPERSEDED}" + (f", {len(other)} of other versions (not shown)" if other else "") + ". They are",
        'reported apart and never paired. "Higher / lower / tied" counts paired differences (same split, seed and',
        f"labelled cells); a difference smaller than {TIE} in absolute value is a tie (`harness.stats.TIE`).",
        "",
        "## Summary",
        "",
        headline(records),
        "",
        "## Reconstruction target, chosen on a validation split",
        "",
    ]
    frame = _frame(current)
    reported = frame[(frame["kind"] == "backbone") & (frame["experiment"] != "target_selection")]
    used = sorted(set(_column(reported, "target").dropna()))
    text += [target_section(frame, used), "", "## Today's estimator", ""]
    text += _current_part(frame, path)
    if old:
        text += [f"## {SUPERSEDED[0].upper()}{SUPERSEDED[1:]}", ""]
        text += _old_part(_frame(old), path)
    path.write_text("\n".join(text))
