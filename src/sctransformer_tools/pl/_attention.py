"""Plots of the TF -> target attention per group: heatmap, network of one group, dot plot of regulators."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from sctransformer_tools._constants import ADATA_KEYS
from sctransformer_tools._docs import dsp
from sctransformer_tools.tl._tf_programs import tf_programs, tf_table
from sctransformer_tools.tl._utils import RankBy, attention_tables, check_by, contrast, zscore

from ._utils import finish, new_axes

if TYPE_CHECKING:
    from matplotlib.axes import Axes

#: Colours of edge signs in :func:`tf_network`.
SIGN_COLORS = {"activation": "#c0392b", "repression": "#2e86c1", "unsigned": "#7f8c8d"}


def _top_tfs(
    adata: AnnData, key: str, n_top: int, by: str, groups: Sequence[str] | None
) -> tuple[list[str], list[str]]:
    """TFs to show (the top ``n_top`` of each group, in group order, without repeats) and the groups."""
    programs = tf_programs(adata, key, n_top=n_top, by=by, groups=groups)
    tfs = list(dict.fromkeys(programs["tf"].tolist()))
    return tfs, [str(g) for g in programs["group"].cat.categories]


@dsp.dedent
def attention_heatmap(
    adata: AnnData,
    key: str = ADATA_KEYS.ATTENTION,
    n_top: int = 5,
    *,
    by: RankBy = "specificity",
    standardize: bool = True,
    groups: Sequence[str] | None = None,
    cmap: str | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: bool | str | os.PathLike | None = None,
) -> Axes | None:
    """Heatmap of the attention mass of TFs (rows) per group (columns).

    Rows are the top ``n_top`` TFs of each group (:func:`~sctransformer_tools.tl.tf_programs`, ranked
    ``by``), in the order of the groups, so that a block diagonal shows group-specific programs.

    Parameters
    ----------
    adata
        AnnData on which ``model.get_attention(adata, groupby=...)`` was run.
    key
        ``uns`` key of the attention result.
    n_top
        TFs per group.
    by
        Ranking of :func:`~sctransformer_tools.tl.tf_programs`: ``"specificity"``, ``"zscore"`` or ``"mass"``.
    standardize
        Show each TF's mass z-scored across groups (diverging colours); ``False``: the raw mass.
    groups
        Groups (columns) to show; all by default.
    cmap
        Colormap (default ``"RdBu_r"`` when standardised, else ``"viridis"``).
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
    >>> _ = model.get_attention(adata, groupby="bulk_labels")
    >>> ax = sct.pl.attention_heatmap(adata, n_top=3, show=False)
    """
    tfs, names = _top_tfs(adata, key, n_top, by, groups)
    score = tf_table(adata, key)["score"]
    values = zscore(score)[names].loc[tfs] if standardize else score[names].loc[tfs]
    fig, ax = new_axes(ax, (1.2 + 0.45 * len(names), 1.5 + 0.22 * len(tfs)))
    if standardize:
        limit = float(np.nanmax(np.abs(values.to_numpy()))) or 1.0
        image = ax.imshow(values.to_numpy(), aspect="auto", cmap=cmap or "RdBu_r", vmin=-limit, vmax=limit)
    else:
        image = ax.imshow(values.to_numpy(), aspect="auto", cmap=cmap or "viridis")
    ax.set_xticks(np.arange(len(names)), names, rotation=90)
    ax.set_yticks(np.arange(len(tfs)), tfs)
    ax.grid(False)  # scanpy's figure parameters turn grids on; they would cut through the cells
    ax.set_xlabel(attention_tables(adata, key).get("params", {}).get("groupby") or "group")
    ax.set_ylabel("TF")
    fig.colorbar(image, ax=ax, label="attention mass (z-score across groups)" if standardize else "attention mass")
    return finish(ax, fig, "attention_heatmap", show, save)


def _barycentre_order(tfs: list[str], edges: pd.DataFrame) -> list[str]:
    """Targets ordered by the mean position of their TFs (fewer crossings in a two-column layout)."""
    pos = {tf: i for i, tf in enumerate(tfs)}
    centre = edges.assign(p=edges["source"].map(pos)).groupby("target")["p"].mean()
    return centre.sort_values(kind="stable").index.tolist()


@dsp.dedent
def tf_network(
    adata: AnnData,
    group: str,
    key: str = ADATA_KEYS.ATTENTION,
    n_top_edges: int = 30,
    *,
    by: RankBy = "specificity",
    tfs: Sequence[str] | None = None,
    min_coverage: float = 0.0,
    ax: Axes | None = None,
    show: bool | None = None,
    save: bool | str | os.PathLike | None = None,
) -> Axes | None:
    """The TF -> target edges that characterise one group, drawn as a two-column network.

    Edges are ranked ``by`` specificity by default: the edge's attention in the group minus its mean over the
    other groups, so that edges every group attends to (hub TFs such as JUN or FOS onto ribosomal and
    cytoskeletal genes) do not crowd out the group's own programs; ``by="mass"`` ranks by raw attention.
    TFs are on the left (ordered by their total drawn attention), targets on the right (ordered by the mean
    position of their TFs, to limit crossings). Edge width is proportional to the attention score of the edge
    in the group; edge colour is the regulon sign (red: activation, blue: repression, grey: unsigned). Drawn
    with matplotlib alone (no networkx needed).

    Parameters
    ----------
    adata
        AnnData on which ``model.get_attention(adata, groupby=...)`` was run.
    group
        The group to draw (a column of ``adata.uns[key]["scores"]``).
    key
        ``uns`` key of the attention result.
    n_top_edges
        Edges drawn (the first ``n_top_edges`` by the ranking).
    by
        ``"specificity"`` (the group's score minus the mean over the other groups), ``"zscore"`` (across groups)
        or ``"mass"`` (the group's raw attention score).
    tfs
        Only edges of these TFs.
    min_coverage
        Only edges whose genes are both expressed in at least this fraction of the group's cells.
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
    >>> _ = model.get_attention(adata, groupby="bulk_labels")
    >>> ax = sct.pl.tf_network(adata, "CD14+ Monocyte", n_top_edges=20, show=False)
    """
    from matplotlib.lines import Line2D

    result = attention_tables(adata, key)
    scores, coverage, edges = result["scores"], result["coverage"], result["edges"]
    if group not in scores.columns:
        raise KeyError(f"group {group!r} is not a group of adata.uns[{key!r}] (groups: {list(scores.columns)}).")
    check_by(by)
    rank = contrast(scores, by)
    table = edges[["source", "target", "weight"]].assign(
        score=scores[group].to_numpy(), coverage=coverage[group].to_numpy(), rank=rank[group].to_numpy()
    )
    keep = (table["score"] > 0) & (table["coverage"] >= min_coverage)
    if tfs is not None:
        keep &= table["source"].isin(list(tfs))
    table = table[keep].nlargest(n_top_edges, "rank")
    if table.empty:
        raise ValueError(
            f"No edge of group {group!r} has attention > 0"
            + (f" and coverage >= {min_coverage}" if min_coverage else "")
            + (" among the given tfs" if tfs is not None else "")
            + ": lower min_coverage or choose other TFs."
        )
    tf_order = table.groupby("source")["score"].sum().sort_values(ascending=False, kind="stable").index.tolist()
    target_order = _barycentre_order(tf_order, table)
    n_rows = max(len(tf_order), len(target_order))
    fig, ax = new_axes(ax, (6.0, 1.0 + 0.28 * n_rows))

    def ys(n: int) -> np.ndarray:  # centred columns
        return np.linspace(0, n_rows - 1, n) if n > 1 else np.array([(n_rows - 1) / 2])

    y_tf = dict(zip(tf_order, ys(len(tf_order)), strict=True))
    y_target = dict(zip(target_order, ys(len(target_order)), strict=True))
    width = 0.6 + 5.0 * table["score"] / table["score"].max()
    for (_, edge), lw in zip(table.iterrows(), width, strict=True):
        sign = "activation" if edge["weight"] > 0 else "repression" if edge["weight"] < 0 else "unsigned"
        ax.plot(
            [0, 1],
            [y_tf[edge["source"]], y_target[edge["target"]]],
            color=SIGN_COLORS[sign],
            lw=lw,
            alpha=0.6,
            zorder=1,
        )
    ax.scatter(np.zeros(len(tf_order)), list(y_tf.values()), s=120, marker="s", color="#34495e", zorder=2)
    ax.scatter(np.ones(len(target_order)), list(y_target.values()), s=60, marker="o", color="#95a5a6", zorder=2)
    for name, y in y_tf.items():
        ax.text(-0.05, y, name, ha="right", va="center", fontsize=9, fontweight="bold")
    for name, y in y_target.items():
        ax.text(1.05, y, name, ha="left", va="center", fontsize=8)
    ax.set_xlim(-0.6, 1.6)
    ax.set_ylim(n_rows - 0.5, -0.5)
    ax.set_axis_off()
    ax.set_title(f"{group}: top {len(table)} TF -> target edges by {by}")
    signs = {
        "activation" if w > 0 else "repression" if w < 0 else "unsigned" for w in table["weight"].to_numpy(dtype=float)
    }
    handles = [Line2D([], [], color=SIGN_COLORS[s], lw=3, label=s) for s in SIGN_COLORS if s in signs]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(handles), frameon=False)
    return finish(ax, fig, f"tf_network_{group}", show, save)


@dsp.dedent
def top_regulators(
    adata: AnnData,
    key: str = ADATA_KEYS.ATTENTION,
    n_top: int = 3,
    *,
    by: RankBy = "specificity",
    standard_scale: Literal["tf"] | None = "tf",
    groups: Sequence[str] | None = None,
    cmap: str = "Reds",
    ax: Axes | None = None,
    show: bool | None = None,
    save: bool | str | os.PathLike | None = None,
) -> Axes | None:
    """Dot plot of the top regulators of each group (TFs x groups), in the style of ``sc.pl.dotplot``.

    Dot size is the TF's coverage in the group (mean, over its edges, of the fraction of the group's
    cells expressing both TF and target; the largest dot is the largest coverage shown, rounded up to
    5%%); colour is its attention mass, scaled per TF to 0..1 across groups by default.

    Parameters
    ----------
    adata
        AnnData on which ``model.get_attention(adata, groupby=...)`` was run.
    key
        ``uns`` key of the attention result.
    n_top
        TFs per group (ranked ``by``, see :func:`~sctransformer_tools.tl.tf_programs`).
    by
        ``"specificity"``, ``"zscore"`` or ``"mass"``.
    standard_scale
        ``"tf"``: scale each TF's mass to 0..1 across the groups shown; ``None``: raw mass.
    groups
        Groups (columns) to show; all by default.
    cmap
        Colormap of the mass.
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
    >>> _ = model.get_attention(adata, groupby="bulk_labels")
    >>> ax = sct.pl.top_regulators(adata, n_top=2, show=False)
    """
    if standard_scale not in ("tf", None):
        raise ValueError(f"standard_scale must be 'tf' or None, got {standard_scale!r}.")
    tfs, names = _top_tfs(adata, key, n_top, by, groups)
    tables = tf_table(adata, key)
    mass = tables["score"].loc[tfs, names].to_numpy(dtype=float)
    cover = tables["coverage"].loc[tfs, names].to_numpy(dtype=float)
    if standard_scale == "tf":
        low, high = mass.min(1, keepdims=True), mass.max(1, keepdims=True)
        mass = np.divide(mass - low, high - low, out=np.zeros_like(mass), where=high > low)
    fig, ax = new_axes(ax, (2.2 + 0.45 * len(names), 1.2 + 0.3 * len(tfs)))
    xx, yy = np.meshgrid(np.arange(len(names)), np.arange(len(tfs)))
    max_size = 220.0
    # dot area relative to the largest coverage shown (as sc.pl.dotplot's dot_max), rounded up to 5%
    dot_max = max(float(np.ceil(np.nanmax(cover) * 20) / 20), 0.05)
    dots = ax.scatter(
        xx.ravel(),
        yy.ravel(),
        s=np.clip(cover.ravel() / dot_max, 0, 1) * max_size + 2,
        c=mass.ravel(),
        cmap=cmap,
        edgecolors="#555555",
        linewidths=0.3,
        vmin=0 if standard_scale else None,
        vmax=1 if standard_scale else None,
    )
    ax.set_xticks(np.arange(len(names)), names, rotation=90)
    ax.set_yticks(np.arange(len(tfs)), tfs)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylim(len(tfs) - 0.4, -0.6)
    ax.set_ylabel("TF")
    ax.grid(False)
    fig.colorbar(dots, ax=ax, label="attention mass" + (" (scaled per TF)" if standard_scale else ""), shrink=0.6)
    handles = [
        ax.scatter(
            [],
            [],
            s=f * max_size + 2,
            color="#999999",
            edgecolors="#555555",
            linewidths=0.3,
            label=f"{f * dot_max:.0%}",
        )
        for f in (0.25, 0.5, 0.75, 1.0)
    ]
    ax.legend(
        handles=handles, title="coverage", loc="upper left", bbox_to_anchor=(1.25, 1.0), frameon=False, labelspacing=1.2
    )
    return finish(ax, fig, "top_regulators", show, save)
