"""Prediction confidence: histograms with the "Unknown" threshold, and on the UMAP."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from anndata import AnnData

from sctransformer_tools._constants import ADATA_KEYS
from sctransformer_tools._docs import dsp

from ._utils import finish, new_axes

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def _column(adata: AnnData, key: str, suffix: str) -> str:
    """``obs`` column of a prediction result: ``f"{key}_{suffix}"`` (``key`` = ``key_added`` of predict), or ``key``."""
    for column in (f"{key}_{suffix}", key):
        if column in adata.obs:
            return column
    raise KeyError(
        f"adata.obs[{key + '_' + suffix!r}] not found: run `model.predict(adata)` first"
        + ("" if key == ADATA_KEYS.PREFIX else f" (with key_added={key!r})")
        + "."
    )


def _group_colors(adata: AnnData, groupby: str, categories: list[str]) -> list[str]:
    """Colours of ``groupby``'s categories: scanpy's ``uns[f"{groupby}_colors"]`` if set, else the package's."""
    from ._labels import label_colors

    stored = adata.uns.get(f"{groupby}_colors")
    column = adata.obs[groupby]
    if stored is not None and hasattr(column, "cat") and len(stored) == len(column.cat.categories):
        lookup = dict(zip(column.cat.categories.astype(str), stored, strict=True))
        return [lookup[c] for c in categories]
    lookup = label_colors(categories)
    return [lookup[c] for c in categories]


@dsp.dedent
def confidence(
    adata: AnnData,
    key: str = ADATA_KEYS.PREFIX,
    groupby: str | None = None,
    threshold: float | None = None,
    *,
    bins: int = 30,
    ax: Axes | None = None,
    show: bool | None = None,
    save: bool | str | os.PathLike | None = None,
) -> Axes | None:
    """Prediction confidence: a histogram, or one violin per group, with the "Unknown" threshold.

    With ``groupby`` each group gets its own row (a violin of its cells' confidences, its median as a dot,
    groups ordered by median, least confident at the bottom, in the group's colours), and with ``threshold``
    the share of each group's cells below it is written at the right.

    Parameters
    ----------
    adata
        AnnData on which ``model.predict(adata)`` was run.
    key
        ``key_added`` of :meth:`~sctransformer_tools.SCTransformer.predict`: the confidence is read from
        ``obs[f"{key}_confidence"]`` (or ``obs[key]`` if that is a column).
    groupby
        ``obs`` column (e.g. ``"sctransformer_prediction"`` or the true labels): one row per group.
    threshold
        Confidence below which cells are called "Unknown" (``unknown_threshold`` of ``predict``): drawn
        as a vertical line, with the fraction of cells below it in the legend.
    bins
        Histogram bins over [0, 1] (without ``groupby``).
    %(param_ax)s
    %(param_show)s
    %(param_save)s

    Returns
    -------
    The Axes when ``show`` is ``False``.

    Examples
    --------
    >>> import sctransformer_tools as sct
    >>> model, adata = sct.ds.toy_model()  # a tiny trained model and its data (pbmc68k_reduced)
    >>> _ = model.predict(adata, unknown_threshold=0.5)
    >>> ax = sct.pl.confidence(adata, groupby="bulk_labels", threshold=0.5, show=False)
    """
    key = _column(adata, key, "confidence")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold is a probability between 0 and 1, got {threshold}.")
    values = adata.obs[key].to_numpy(dtype=float)
    if groupby is None:
        fig, ax = new_axes(ax, (5.0, 3.2))
        ax.hist(values, bins=np.linspace(0, 1, bins + 1), color="#5d6d7e", alpha=0.85)
        ax.set_xlabel("confidence")
        ax.set_ylabel("cells")
        if threshold is not None:
            below = float((values < threshold).mean())
            ax.axvline(threshold, color="black", ls="--", lw=1.2, label=f"Unknown below {threshold:g} ({below:.1%})")
            ax.legend(frameon=False, fontsize=8, loc="upper left")
        ax.set_xlim(0, 1)
        return finish(ax, fig, "confidence", show, save)
    if groupby not in adata.obs:
        raise KeyError(f"groupby column {groupby!r} not found in adata.obs.")
    labels = adata.obs[groupby].astype(str).to_numpy()
    column = adata.obs[groupby]
    categories = [str(c) for c in (column.cat.categories if hasattr(column, "cat") else np.unique(labels))]
    categories = [c for c in categories if (labels == c).any()]
    medians = {c: float(np.median(values[labels == c])) for c in categories}
    order = sorted(categories, key=lambda c: medians[c])  # least confident at the bottom
    colors = dict(zip(categories, _group_colors(adata, groupby, categories), strict=True))
    fig, ax = new_axes(ax, (6.0, 0.9 + 0.42 * len(order)))
    positions = np.arange(len(order))
    groups = [values[labels == c] for c in order]
    several = [i for i, g in enumerate(groups) if len(g) > 1]
    if several:
        parts = ax.violinplot(
            [groups[i] for i in several],
            positions=positions[several],
            vert=False,
            widths=0.8,
            showextrema=False,
            bw_method=0.3,
        )
        for body, i in zip(parts["bodies"], several, strict=True):
            body.set_facecolor(colors[order[i]])
            body.set_edgecolor("#444444")
            body.set_alpha(0.85)
    for i, group in enumerate(groups):  # medians (and single cells) as dots
        ax.plot(np.median(group), i, "o", color="white", mec="#222222", ms=4, zorder=3)
    ax.set_yticks(positions, [f"{c} ({len(g):,})" for c, g in zip(order, groups, strict=True)])
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.6, len(order) - 0.4)
    ax.set_xlabel("confidence")
    if threshold is not None:
        ax.axvline(threshold, color="black", ls="--", lw=1.0)
        for i, group in enumerate(groups):
            ax.text(
                1.01,
                i,
                f"{(group < threshold).mean():.0%}",
                va="center",
                fontsize=8,
                transform=ax.get_yaxis_transform(),
            )
        ax.set_title(f"share below {threshold:g} (called Unknown) at right", fontsize=9, loc="right")
    return finish(ax, fig, "confidence", show, save)


@dsp.dedent
def umap_confidence(
    adata: AnnData,
    key: str = ADATA_KEYS.PREFIX,
    *,
    basis: str = "umap",
    ax: Sequence[Axes] | None = None,
    show: bool | None = None,
    save: bool | str | os.PathLike | None = None,
    **kwargs,
) -> list[Axes] | None:
    """Predicted cell type and its confidence side by side on the UMAP (``sc.pl.embedding``).

    Parameters
    ----------
    adata
        AnnData with predictions (``model.predict(adata)``) and a UMAP (``obsm["X_umap"]``, e.g.
        ``sc.pp.neighbors(adata, use_rep="X_sctransformer"); sc.tl.umap(adata)``).
    key
        ``key_added`` of :meth:`~sctransformer_tools.SCTransformer.predict`: reads ``obs[f"{key}_prediction"]``
        and ``obs[f"{key}_confidence"]``.
    basis
        Embedding in ``obsm[f"X_{basis}"]``.
    ax
        Two Axes (prediction, confidence); new ones by default.
    %(param_show)s
    %(param_save)s
    **kwargs
        Passed to :func:`scanpy.pl.embedding` (``size``, ``legend_loc``, ...).

    Returns
    -------
    The two Axes when ``show`` is ``False``.

    Examples
    --------
    >>> import scanpy as sc
    >>> import sctransformer_tools as sct
    >>> model, adata = sct.ds.toy_model()  # a tiny trained model and its data (pbmc68k_reduced)
    >>> _ = model.predict(adata)
    >>> _ = model.get_latent_representation(adata)
    >>> sc.pp.neighbors(adata, use_rep="X_sctransformer")
    >>> sc.tl.umap(adata)
    >>> axes = sct.pl.umap_confidence(adata, show=False)
    """
    import matplotlib.pyplot as plt
    import scanpy as sc

    prediction_key = _column(adata, key, "prediction")
    confidence_key = _column(adata, key, "confidence")
    if f"X_{basis}" not in adata.obsm:
        raise KeyError(
            f"adata.obsm['X_{basis}'] not found: run `sc.pp.neighbors(adata, use_rep='X_sctransformer')` "
            f"and `sc.tl.{basis}(adata)` first."
        )
    kwargs = {"vmin": 0.0, "vmax": 1.0, "color_map": "viridis"} | kwargs
    if ax is None:
        fig, axes = plt.subplots(1, 2, figsize=(10.0, 4.0))
        axes = list(axes)
    else:
        axes = list(np.ravel(ax))
        if len(axes) != 2:
            raise ValueError(f"ax must hold two Axes (prediction, confidence), got {len(axes)}.")
        fig = axes[0].figure
    for axis, color in zip(axes, (prediction_key, confidence_key), strict=True):
        extra = kwargs if color == confidence_key else {k: v for k, v in kwargs.items() if k not in ("vmin", "vmax")}
        sc.pl.embedding(adata, basis, color=color, ax=axis, show=False, **extra)
    fig.tight_layout()
    return finish(axes, fig, f"{basis}_confidence", show, save)
