"""Saving and showing figures the scanpy way."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

FIGURE_FORMATS = (".png", ".pdf", ".svg", ".jpg", ".jpeg", ".tif", ".tiff", ".eps", ".ps", ".webp")


def save_path(save: bool | str | os.PathLike, writekey: str) -> Path:
    """Where ``save=`` writes.

    - ``True``: ``sc.settings.figdir / f"{writekey}.{sc.settings.file_format_figs}"``;
    - a :class:`~pathlib.Path`, or a string with a folder in it (``"figures/x.png"``) or a figure
      extension (``"x.pdf"``) and a folder that exists: that exact path;
    - another string: scanpy's convention, a suffix: ``figdir / f"{writekey}{save}"`` (plus the default
      extension when it has none).
    """
    import scanpy as sc

    figdir = Path(sc.settings.figdir)
    if save is True:
        return figdir / f"{writekey}.{sc.settings.file_format_figs}"
    if isinstance(save, os.PathLike) or (isinstance(save, str) and ("/" in save or os.sep in save)):
        path = Path(save)
        return path if path.suffix.lower() in FIGURE_FORMATS else path.with_name(f"{path.name}.png")
    if isinstance(save, str):
        name = f"{writekey}{save}"
        return figdir / (
            name if Path(name).suffix.lower() in FIGURE_FORMATS else f"{name}.{sc.settings.file_format_figs}"
        )
    raise TypeError(f"save must be a bool, a string or a path, got {type(save).__name__}.")


def finish(obj: Any, fig, writekey: str, show: bool | None, save: bool | str | os.PathLike | None) -> Any:
    """Save ``fig`` if asked, show it if asked (scanpy's ``autoshow`` when ``show`` is None), return ``obj`` if not shown."""
    import matplotlib.pyplot as plt
    import scanpy as sc

    if save:
        path = save_path(save, writekey)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, bbox_inches="tight")
    show = sc.settings.autoshow if show is None else show
    if show:
        plt.show()
        return None
    return obj


def new_axes(ax, figsize: tuple[float, float]):
    """``ax`` and its figure, or a new figure of ``figsize`` with one Axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax
