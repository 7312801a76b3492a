"""The report's figures: a metric per method and dataset, attention AUROC against its null, test-cell UMAPs.

The functions draw with :mod:`matplotlib.pyplot` and leave the backend alone (a script sets ``Agg`` once).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .records import HEADERS, numeric, order_frame, records_frame
from .records import main_regulons as main_regulons_of


def plot_metric_bars(
    records: Iterable[Mapping],
    path: str | os.PathLike,
    metric: str = "macro_f1",
    profile: str | None = None,
    main_regulons: str | None = None,
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
    main_regulons
        Regulon set drawn plain; scTransformer bars of other sets are hatched (default:
        :func:`~harness.records.main_regulons`).

    Returns
    -------
    The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    frame = records_frame(records)
    if profile is not None:
        frame = frame[frame["profile"] == profile]
    frame = order_frame(frame.dropna(subset=[metric]))
    main = main_regulons_of(frame, main_regulons)
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
            reg = sub.loc[sub["variant"] == v, "regulons"].iloc[0]
            hatch = "//" if isinstance(mask, str) and reg != main else None
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
        ax.set_ylabel(HEADERS.get(metric, metric))
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
        null = numeric(g, "attention_auroc_null").to_numpy()
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
    """Panels of saved test-cell UMAPs (from :func:`harness.study.evaluate`'s ``umap_dir``), coloured by true label.

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
