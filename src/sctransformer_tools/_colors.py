"""Cell-type colours as scanpy draws them, so that a truth panel and a prediction panel colour a type alike.

Private to the package: ``model`` records each reference type's colour when it is built, ``pl`` draws with them.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

#: Colour of cells called "Unknown": light grey, so that they recede and every real type stands out.
UNKNOWN_COLOR = "#d3d3d3"


def scanpy_default_colors(categories: Sequence[str]) -> dict[str, str]:
    """The colour ``sc.pl.umap`` gives each category of a column that has no colours in ``uns`` yet.

    scanpy's rule: matplotlib's colour cycle when it holds enough colours (the 10 of ``tab10`` by default), else
    scanpy's 20-, 28- or 102-colour palette, in the column's category order.

    Examples
    --------
    >>> from sctransformer_tools._colors import scanpy_default_colors
    >>> scanpy_default_colors(["B", "NK", "T"])["NK"]  # matplotlib's second default colour
    '#ff7f0e'
    """
    from matplotlib import rcParams
    from matplotlib.colors import to_hex
    from scanpy.plotting import palettes

    categories = [str(c) for c in categories]
    n = len(categories)
    cycle = rcParams["axes.prop_cycle"].by_key().get("color", [])
    if len(cycle) >= n:
        palette = list(cycle)
    elif n <= 20:
        palette = list(palettes.default_20)
    elif n <= 28:
        palette = list(palettes.default_28)
    elif n <= len(palettes.default_102):
        palette = list(palettes.default_102)
    else:
        palette = ["grey"] * n
    return {c: to_hex(color) for c, color in zip(categories, palette[:n], strict=True)}


def column_colors(column: pd.Series, stored: Sequence[str] | None = None) -> dict[str, str]:
    """The colour of each category of an ``obs`` column as scanpy draws it: its ``uns[<key>_colors]`` when they
    fit the categories, else scanpy's default rule (categories: the column's, or its sorted values).
    """
    if isinstance(column.dtype, pd.CategoricalDtype):
        categories = [str(c) for c in column.cat.categories]
    else:
        categories = sorted(pd.unique(column.dropna().astype(str)))
    if stored is not None and len(stored) == len(categories):
        return dict(zip(categories, (str(c) for c in stored), strict=True))
    return scanpy_default_colors(categories)


def colors_of(categories: Sequence[str], known: dict[str, str], unknown: str = "Unknown") -> list[str]:
    """Colours of ``categories``: ``known`` ones kept, ``unknown`` light grey, the rest by scanpy's rule."""
    fallback = scanpy_default_colors([c for c in categories if c not in known and c != unknown])
    out = []
    for category in (str(c) for c in categories):
        out.append(UNKNOWN_COLOR if category == unknown else known.get(category, fallback.get(category, "grey")))
    return out
