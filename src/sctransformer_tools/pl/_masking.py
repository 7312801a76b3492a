"""How often MAM's learned masking policy masks each gene, against its expression and its place in the regulons."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from sctransformer_tools._docs import dsp

from ._utils import finish, new_axes

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes

#: Colour of each kind of gene (TFs first: a TF that is also a target is drawn as a TF).
_KINDS = {"TF": "#d62728", "regulon target": "#1f77b4", "other panel gene": "#bdbdbd"}


@dsp.dedent
def masking_preference(
    data: AnnData | pd.DataFrame,
    *,
    key: str = "sctransformer_masking",
    x: str = "mean_expression",
    y: str = "ratio_to_uniform",
    n_labels: int = 10,
    ax: Axes | None = None,
    show: bool | None = None,
    save: bool | str | os.PathLike | None = None,
) -> Axes | None:
    """How often MAM masks each panel gene (relative to uniform masking) against its expression, TFs and regulon
    targets coloured.

    ``y="ratio_to_uniform"``: a gene's Monte-Carlo inclusion rate over its cells' uniform rate ``k / n``; the dashed
    line at 1 marks uniform masking. ``y="inclusion_rate"``: the rate itself (the dashed line is the genes' median
    uniform rate). The title gives Spearman's rank correlation of ``y`` with ``x``; the ``n_labels`` genes of
    highest ``y`` are named.

    Parameters
    ----------
    data
        An AnnData holding :meth:`~sctransformer_tools.SCTransformer.get_masking_preference`'s result under
        ``uns[key]``, or the table it returned.
    key
        ``uns`` key of the result.
    x
        Column for the horizontal axis: ``"mean_expression"`` (log-normalised, over expressing cells) or
        ``"detection"`` (share of cells expressing the gene).
    y
        Column for the vertical axis: ``"ratio_to_uniform"`` or ``"inclusion_rate"``.
    n_labels
        Genes named on the plot.
    %(param_ax)s
    %(param_show)s
    %(param_save)s

    Returns
    -------
    The Axes when ``show`` is ``False``.

    Examples
    --------
    >>> import sctransformer_tools as sct
    >>> model, adata = sct.ds.toy_model()  # a tiny model, MAM-pretrained then trained, and its data
    >>> _ = model.get_masking_preference(adata, n_draws=8)
    >>> ax = sct.pl.masking_preference(adata, show=False)
    """
    from scipy.stats import spearmanr

    from sctransformer_tools.tl._masking import preference_table

    genes = preference_table(data, key)
    if x not in ("mean_expression", "detection"):
        raise ValueError(f"x must be 'mean_expression' or 'detection', got {x!r}.")
    if y not in ("ratio_to_uniform", "inclusion_rate"):
        raise ValueError(f"y must be 'ratio_to_uniform' or 'inclusion_rate', got {y!r}.")
    genes = genes.dropna(subset=[y, x])
    kind = np.where(genes["is_tf"], "TF", np.where(genes["is_target"], "regulon target", "other panel gene"))
    created = ax is None
    fig, ax = new_axes(ax, (5.2, 4.6))
    for name, color in reversed(_KINDS.items()):
        sel = kind == name
        if sel.any():
            ax.scatter(
                genes[x][sel],
                genes[y][sel],
                s=10,
                color=color,
                label=f"{name} ({sel.sum()})",
                alpha=0.8,
                linewidths=0,
            )
    uniform = 1.0 if y == "ratio_to_uniform" else float(genes["uniform_rate"].median())
    ax.axhline(uniform, color="black", ls="--", lw=0.8)
    for _, row in genes.nlargest(n_labels, y).iterrows():
        ax.annotate(str(row["symbol"]), (row[x], row[y]), fontsize=7, xytext=(2, 2), textcoords="offset points")
    rho = spearmanr(genes[x], genes[y]).statistic if len(genes) > 2 else float("nan")
    ax.set_xlabel(
        "log-normalised expression\n(mean over expressing cells)" if x == "mean_expression" else "detection rate"
    )
    ax.set_ylabel("masking rate / uniform rate" if y == "ratio_to_uniform" else "masking rate (share of draws)")
    ax.set_title(f"How often MAM masks each gene\n(Spearman with {x.replace('_', ' ')}: {rho:.2f})")
    ax.legend(frameon=False, fontsize=8)
    if created:  # keep the title and axis labels inside the figure at scanpy's larger font sizes
        fig.tight_layout()
    return finish(ax, fig, "masking_preference", show, save)
