"""Cell-type colours that stay the same across panels and datasets, and a UMAP coloured by them."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from anndata import AnnData

from sctransformer_tools._colors import colors_of
from sctransformer_tools._constants import UNKNOWN
from sctransformer_tools._docs import dsp

from ._utils import finish, new_axes

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def label_colors(categories: Sequence[str], colors: Sequence[str] | None = None) -> dict[str, str]:
    """One colour per cell type: ``colors`` if given (one per category), else the colours ``sc.pl.umap`` would
    give these categories (scanpy's default rule).

    ``"Unknown"`` is always light grey (:data:`~sctransformer_tools._colors.UNKNOWN_COLOR`) and takes no colour
    of the palette.

    Examples
    --------
    >>> from sctransformer_tools.pl import label_colors
    >>> colors = label_colors(["B", "NK", "Unknown"])
    >>> colors["Unknown"], colors["B"] != colors["NK"]
    ('#d3d3d3', True)
    """
    categories = [str(c) for c in categories]
    given = dict(zip(categories, (str(c) for c in colors), strict=True)) if colors is not None else {}
    if colors is not None and len(colors) != len(categories):
        given = {}
    return dict(zip(categories, colors_of(categories, given, UNKNOWN), strict=True))


def colors_for(values: pd.Series, reference: Mapping[str, str] | None = None) -> tuple[list[str], list[str]]:
    """The categories present in ``values`` (reference order first, ``"Unknown"`` last) and their colours."""
    present = pd.unique(values.dropna().astype(str))
    ordered = [c for c in (reference or {}) if c in set(present) and c != UNKNOWN]
    ordered += sorted(c for c in present if c not in set(ordered) and c != UNKNOWN)
    if UNKNOWN in set(present):
        ordered.append(UNKNOWN)
    return ordered, colors_of(ordered, dict(reference or {}), UNKNOWN)


@dsp.dedent
def label_umap(
    adata: AnnData,
    key: str,
    *,
    model=None,
    colors: Mapping[str, str] | None = None,
    basis: str = "umap",
    title: str | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: bool | str | os.PathLike | None = None,
    **kwargs,
) -> Axes | None:
    """A UMAP coloured by cell type, with the model's colour for each type and "Unknown" in light grey.

    Two panels drawn with the same ``model`` (e.g. true labels and predictions) give each cell type the same
    colour; the legend lists only types that have cells. ``adata`` is not modified (scanpy would store the
    colours in ``uns``; this plot draws from a private copy of the column).

    Parameters
    ----------
    adata
        AnnData with ``obsm[f"X_{basis}"]`` and the column ``obs[key]``.
    key
        ``obs`` column of cell types (labels or ``"sctransformer_prediction"``).
    model
        A trained :class:`~sctransformer_tools.SCTransformer`: its ``cell_type_colors`` colour the types.
    colors
        Cell type -> colour, instead of (or on top of) the model's.
    basis
        Embedding in ``obsm[f"X_{basis}"]``.
    title
        Panel title (default: ``key``).
    %(param_ax)s
    %(param_show)s
    %(param_save)s
    **kwargs
        Passed to :func:`scanpy.pl.embedding` (``size``, ``legend_loc``, ...).

    Returns
    -------
    The Axes when ``show`` is ``False``.

    Examples
    --------
    >>> import scanpy as sc
    >>> import sctransformer_tools as sct
    >>> adata = sc.datasets.pbmc68k_reduced()
    >>> ax = sct.pl.label_umap(adata, "bulk_labels", show=False)
    >>> len(ax.get_legend().get_texts())
    10
    """
    import scanpy as sc

    if key not in adata.obs:
        raise KeyError(f"adata.obs[{key!r}] not found (columns: {list(adata.obs.columns)[:20]}).")
    if f"X_{basis}" not in adata.obsm:
        raise KeyError(
            f"adata.obsm['X_{basis}'] not found: run `sc.pp.neighbors(adata, ...)` and `sc.tl.{basis}(adata)`."
        )
    reference = dict(getattr(model, "cell_type_colors", None) or {}) | dict(colors or {})
    ordered, palette = colors_for(adata.obs[key], reference)
    column = pd.Categorical(adata.obs[key].astype(str).where(adata.obs[key].notna(), None), categories=ordered)
    tmp = AnnData(
        X=np.zeros((adata.n_obs, 0), dtype=np.float32),
        obs=pd.DataFrame({key: column}, index=adata.obs_names),
        obsm={f"X_{basis}": np.asarray(adata.obsm[f"X_{basis}"])},
    )
    tmp.uns[f"{key}_colors"] = palette
    fig, ax = new_axes(ax, (6.5, 5.0))
    sc.pl.embedding(tmp, basis, color=key, ax=ax, show=False, title=title or key, **kwargs)
    return finish(ax, fig, f"{basis}_{key}", show, save)
