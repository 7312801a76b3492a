"""Plots (pl) on a tiny pbmc3k model: Axes returned, scanpy-style saving, errors that name the fix."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure

import sctransformer_tools as sct
from sctransformer_tools.pl._utils import save_path


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("attention_heatmap", {"n_top": 3}),
        ("attention_heatmap", {"n_top": 2, "standardize": False, "by": "mass"}),
        ("tf_network", {"group": "B", "n_top_edges": 15}),
        ("top_regulators", {"n_top": 2}),
        ("confidence", {"groupby": "cell_type", "threshold": 0.15}),
        ("confidence", {}),
    ],
)
def test_plots_return_axes_and_save(fitted, tmp_path, name, kwargs):
    _, adata = fitted
    fn = getattr(sct.pl, name)
    ax = fn(adata, show=False, **kwargs)
    assert isinstance(ax, Axes)
    out = tmp_path / "sub" / f"{name}.png"
    assert fn(adata, show=False, save=out, **kwargs) is not None
    assert out.stat().st_size > 1000
    # drawing into a given Axes
    _, given = plt.subplots()
    assert fn(adata, show=False, ax=given, **kwargs) is given


def test_training_history_plot(fitted, tmp_path):
    model, _ = fitted
    fig = sct.pl.training_history(model, show=False, save=tmp_path / "history.pdf")
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    assert (tmp_path / "history.pdf").stat().st_size > 1000
    assert [len(ax.get_lines()) for ax in fig.axes] == [2, 2, 2]  # train and validation
    with pytest.raises(KeyError, match="not in model.history"):
        sct.pl.training_history(model, metrics=["auprc"], show=False)


def test_umap_confidence_and_scanpy_style_save(fitted, tmp_path):
    import scanpy as sc

    _, adata = fitted
    figdir = sc.settings.figdir
    sc.settings.figdir = tmp_path
    try:
        axes = sct.pl.umap_confidence(adata, show=False, save="_pbmc.png")
        assert len(axes) == 2 and all(isinstance(ax, Axes) for ax in axes)
        assert (tmp_path / "umap_confidence_pbmc.png").exists()
        sct.pl.tf_network(adata, "CD14+ Mono", show=False, save=True)
        assert (tmp_path / f"tf_network_CD14+ Mono.{sc.settings.file_format_figs}").exists()
    finally:
        sc.settings.figdir = figdir


def test_plot_errors(fitted, pbmc_small):
    _, adata = fitted
    with pytest.raises(KeyError, match=r"model.predict\(adata\)"):
        sct.pl.confidence(pbmc_small)
    with pytest.raises(KeyError, match="get_attention"):
        sct.pl.attention_heatmap(pbmc_small)
    with pytest.raises(KeyError, match="not a group"):
        sct.pl.tf_network(adata, "Neuron")
    bare = adata.copy()
    del bare.obsm["X_umap"]
    with pytest.raises(KeyError, match="sc.tl.umap"):
        sct.pl.umap_confidence(bare)


def test_save_path_conventions(tmp_path):
    import scanpy as sc

    figdir = sc.settings.figdir
    sc.settings.figdir = tmp_path
    try:
        ext = sc.settings.file_format_figs
        assert save_path(True, "heatmap") == tmp_path / f"heatmap.{ext}"
        assert save_path("_pbmc", "heatmap") == tmp_path / f"heatmap_pbmc.{ext}"
        assert save_path("_pbmc.pdf", "heatmap") == tmp_path / "heatmap_pbmc.pdf"
        assert save_path(tmp_path / "a" / "x.svg", "heatmap") == tmp_path / "a" / "x.svg"
        assert save_path("out/x.png", "heatmap") == Path("out/x.png")
    finally:
        sc.settings.figdir = figdir
