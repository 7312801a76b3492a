"""Embedding scores of the study: silhouette and Leiden ARI/NMI, the linear peers' PCA space, saved UMAPs."""

from __future__ import annotations

import importlib
import random
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

#: Leiden resolutions tried by :func:`embedding_metrics`; the one with the best NMI is kept (as scib does).
LEIDEN_RESOLUTIONS = (0.25, 0.5, 1.0, 2.0)


def _bench_import(name: str):
    """Import an optional benchmark dependency, with an install hint."""
    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise ImportError(
            f"{name} is needed for this benchmark step: `pip install 'sctransformer-tools[bench]'`."
        ) from err


class _IgraphRandom:
    """A seeded random source for igraph (its Leiden draws from the generator it is given)."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def random(self) -> float:
        return float(self.rng.random())

    def randint(self, a: int, b: int) -> int:
        return int(self.rng.integers(a, b + 1))

    def gauss(self, mu: float, sigma: float) -> float:
        return float(self.rng.normal(mu, sigma))


def embedding_metrics(
    embedding: np.ndarray,
    labels: Sequence[str],
    *,
    seed: int = 0,
    n_neighbors: int = 15,
    resolutions: Sequence[float] = LEIDEN_RESOLUTIONS,
    max_cells: int = 10_000,
) -> dict[str, float | None]:
    """How well an embedding separates cell types: silhouette, and ARI/NMI of Leiden clusters.

    The silhouette is sklearn's (euclidean, in [-1, 1]) of the true labels. Leiden clusters (igraph,
    modularity) are computed on the symmetrised, unweighted ``n_neighbors``-nearest-neighbour graph of the
    embedding (scikit-learn; no numba compilation) at each of ``resolutions``; the resolution with the
    best NMI against the labels is kept and its ARI reported with it (scib's convention).

    Parameters
    ----------
    embedding
        ``(cells, dims)`` array.
    labels
        True labels of the cells.
    seed
        Seed of the cell sample (above ``max_cells``) and of Leiden.
    n_neighbors
        Neighbours of the graph.
    resolutions
        Leiden resolutions tried.
    max_cells
        Larger inputs are scored on a seeded random sample of this many cells.

    Returns
    -------
    ``silhouette``, ``ari``, ``nmi``, ``leiden_resolution``; ``None`` values when fewer than two types or
    too few cells.

    Examples
    --------
    >>> import numpy as np
    >>> from harness.embedding import embedding_metrics
    >>> rng = np.random.default_rng(0)
    >>> emb = np.concatenate([rng.normal(0, 0.1, (40, 5)), rng.normal(5, 0.1, (40, 5))])
    >>> scores = embedding_metrics(emb, ["a"] * 40 + ["b"] * 40)
    >>> round(scores["silhouette"], 2), scores["ari"], scores["nmi"]
    (0.97, 1.0, 1.0)
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score
    from sklearn.neighbors import kneighbors_graph

    embedding = np.asarray(embedding, dtype=np.float32)
    labels = np.asarray(labels, dtype=str)
    empty = {"silhouette": None, "ari": None, "nmi": None, "leiden_resolution": None}
    if len(labels) != len(embedding):
        raise ValueError(f"{len(embedding)} embedded cells but {len(labels)} labels.")
    if len(labels) > max_cells:
        keep = np.sort(np.random.default_rng(seed).choice(len(labels), max_cells, replace=False))
        embedding, labels = embedding[keep], labels[keep]
    if len(np.unique(labels)) < 2 or len(labels) <= n_neighbors:
        return empty
    out = dict(empty)
    out["silhouette"] = float(silhouette_score(embedding, labels))
    igraph = _bench_import("igraph")
    knn = kneighbors_graph(embedding, n_neighbors, mode="connectivity", include_self=False)
    knn = knn.maximum(knn.T).tocoo()
    upper = knn.row < knn.col
    graph = igraph.Graph(n=len(labels), edges=np.stack([knn.row[upper], knn.col[upper]], 1).tolist())
    best = None
    igraph.set_random_number_generator(_IgraphRandom(np.random.default_rng(seed)))  # reproducible Leiden
    try:
        for res in resolutions:
            partition = graph.community_leiden(objective_function="modularity", resolution=res, n_iterations=2)
            clusters = np.asarray(partition.membership)
            nmi = normalized_mutual_info_score(labels, clusters)
            if best is None or nmi > best[0]:
                best = (nmi, adjusted_rand_score(labels, clusters), res)
    finally:
        igraph.set_random_number_generator(random)
    out["nmi"], out["ari"], out["leiden_resolution"] = float(best[0]), float(best[1]), float(best[2])
    return out


def pca_embedding(
    adata: AnnData, genes: pd.Index, *, library_size_key: str | None = None, n_comps: int = 50, seed: int = 0
) -> np.ndarray:
    """PCA of the log-normalised ``genes`` of ``adata`` (scaled): the input space of the linear peers.

    Parameters
    ----------
    adata
        Cells (counts in ``X``).
    genes
        Genes to use (missing ones are zero-filled).
    library_size_key
        ``obs`` column of library sizes (row sums over all genes when ``None``).
    n_comps
        Components (capped by the data's size).
    seed
        Seed of the solver.

    Returns
    -------
    ``(cells, n_comps)`` array.
    """
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    from sctransformer_tools.pp import align_genes, library_sizes, log_normalised

    aligned = align_genes(adata, genes)
    aligned.obs = pd.DataFrame({"library": library_sizes(adata, None, library_size_key)}, index=adata.obs_names)
    x = log_normalised(aligned, library_size_key="library").X.toarray()
    x = StandardScaler().fit_transform(x)
    x = np.clip(np.nan_to_num(x), -10, 10)
    n = max(1, min(n_comps, x.shape[0] - 1, x.shape[1] - 1))
    return PCA(n_components=n, random_state=seed).fit_transform(x)


def save_umap(path: Path, embedding: np.ndarray, labels: np.ndarray, predictions: np.ndarray, seed: int) -> None:
    """2-D UMAP of an embedding, saved (``.npz``) with labels and predictions for the report's figure.

    torch's thread count is kept: numba's OpenMP threading layer (umap-learn, scanpy's connectivities) sets the
    OpenMP thread count that torch reads too, so that after a UMAP a ``--threads 1`` run trained on every core.
    """
    import anndata as ad
    import scanpy as sc

    from sctransformer_tools._data import keep_torch_threads

    tmp = ad.AnnData(X=np.zeros((len(labels), 1), dtype=np.float32), obsm={"X_emb": np.asarray(embedding, np.float32)})
    with warnings.catch_warnings(), keep_torch_threads():
        warnings.simplefilter("ignore")
        # exact kNN: above 4,096 cells scanpy's default (pynndescent) returns a scipy sparse array that
        # scanpy 1.11 then calls .getnnz on, which scipy >= 1.15 arrays lack (AttributeError)
        sc.pp.neighbors(tmp, use_rep="X_emb", n_neighbors=15, random_state=seed, transformer="sklearn")
        sc.tl.umap(tmp, random_state=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path, umap=tmp.obsm["X_umap"].astype(np.float32), labels=labels.astype(str), predictions=predictions.astype(str)
    )
