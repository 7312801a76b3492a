"""Audit of the learned gene embeddings: do regulators sit near their targets, markers near each other?"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from sctransformer_tools import grn
from sctransformer_tools._data import log_normalised

if TYPE_CHECKING:
    from sctransformer_tools.model import SCTransformer

PROJECTIONS = ("spectral", "pca", "none")
NEGATIVES = ("random", "tf_matched")


def gene_embeddings(model: SCTransformer) -> pd.DataFrame:
    """The model's learned gene identity embeddings (panel genes x ``d_model``), indexed by gene symbol."""
    module = getattr(model, "module", None)
    if module is None or not hasattr(module, "gene_embedding"):
        raise TypeError(f"Expected a trained SCTransformer, got {type(model).__name__}.")
    weight = module.gene_embedding.weight.detach().float().cpu().numpy()
    panel = model.panel_
    if len(panel) != weight.shape[0]:
        raise ValueError(
            f"The model's panel ({len(panel)} genes) does not match its embedding ({weight.shape[0]} rows)."
        )
    return pd.DataFrame(weight, index=pd.Index(panel["symbol"].astype(str).to_numpy(), name="gene"))


def spectral_coordinates(
    embedding: np.ndarray, n_components: int = 16, n_neighbors: int = 15, seed: int = 0
) -> np.ndarray:
    """Regularised spectral embedding of the cosine kNN graph of ``embedding`` (rows: genes).

    Builds the symmetric kNN graph ``A`` (cosine distance, ``n_neighbors``), regularises it as in
    regularised spectral clustering (Qin & Rohe 2013): ``A_tau = A + tau/n 11^T`` with ``tau`` the mean
    degree, so that small or disconnected groups of genes do not produce degenerate eigenvectors, and
    returns the eigenvectors 2..``n_components + 1`` (the first is trivial) of
    ``D_tau^-1/2 A_tau D_tau^-1/2``, i.e. the smoothest non-constant coordinates on the graph (the
    Laplacian eigenmap), each scaled by its eigenvalue.
    """
    from scipy import sparse
    from scipy.sparse.linalg import LinearOperator, eigsh
    from sklearn.neighbors import NearestNeighbors

    n = embedding.shape[0]
    k = int(min(n_neighbors, n - 1))
    n_components = int(min(n_components, n - 2))
    if k < 1 or n_components < 1:
        raise ValueError(f"Too few genes ({n}) for a spectral embedding.")
    knn = NearestNeighbors(n_neighbors=k + 1, metric="cosine", algorithm="brute").fit(embedding)
    adjacency = knn.kneighbors_graph(mode="connectivity")  # excludes the point itself
    adjacency = ((adjacency + adjacency.T) > 0).astype(np.float64)
    adjacency = sparse.csr_matrix(adjacency)
    degree = np.asarray(adjacency.sum(1)).ravel()
    tau = degree.mean()
    inv_sqrt = 1.0 / np.sqrt(degree + tau)

    def matvec(v: np.ndarray) -> np.ndarray:
        v = np.asarray(v).reshape(n, -1) * inv_sqrt[:, None]
        out = adjacency @ v + tau / n * v.sum(0, keepdims=True)
        return (out * inv_sqrt[:, None]).reshape(-1) if out.shape[1] == 1 else out * inv_sqrt[:, None]

    operator = LinearOperator((n, n), matvec=matvec, matmat=matvec, dtype=np.float64)
    v0 = np.random.default_rng(seed).standard_normal(n)
    values, vectors = eigsh(operator, k=n_components + 1, which="LA", v0=v0)
    order = np.argsort(-values)
    values, vectors = values[order], vectors[:, order]
    return vectors[:, 1:] * values[1:]


def project(
    embedding: np.ndarray, method: str = "spectral", n_components: int = 16, n_neighbors: int = 15, seed: int = 0
) -> np.ndarray:
    """Genes x components coordinates of the audit (see :func:`gene_embedding_audit`)."""
    if method not in PROJECTIONS:
        raise ValueError(f"method must be one of {PROJECTIONS}, got {method!r}.")
    if method == "none":
        return np.asarray(embedding, dtype=np.float64)
    if method == "pca":
        from sklearn.decomposition import PCA

        n = int(min(n_components, *embedding.shape))
        return PCA(n_components=n, random_state=seed).fit_transform(embedding.astype(np.float64))
    return spectral_coordinates(embedding, n_components=n_components, n_neighbors=n_neighbors, seed=seed)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


def _pair_auroc(unit: np.ndarray, pos: np.ndarray, neg: np.ndarray, perm: np.ndarray | None = None) -> float:
    from sklearn.metrics import roc_auc_score

    if perm is not None:
        unit = unit[perm]
    sim_pos = np.einsum("ij,ij->i", unit[pos[:, 0]], unit[pos[:, 1]])
    sim_neg = np.einsum("ij,ij->i", unit[neg[:, 0]], unit[neg[:, 1]])
    labels = np.r_[np.ones(len(sim_pos)), np.zeros(len(sim_neg))]
    return float(roc_auc_score(labels, np.r_[sim_pos, sim_neg]))


def _test(
    name: str, unit: np.ndarray, pos: np.ndarray, neg: np.ndarray, n_permutations: int, rng: np.random.Generator
) -> tuple[dict[str, Any], np.ndarray]:
    """AUROC of positive vs negative pairs, and its null with gene labels permuted."""
    auroc = _pair_auroc(unit, pos, neg)
    null = np.array([_pair_auroc(unit, pos, neg, rng.permutation(len(unit))) for _ in range(n_permutations)])
    row = {
        "test": name,
        "auroc": auroc,
        "null_mean": float(null.mean()) if n_permutations else np.nan,
        "null_sd": float(null.std(ddof=1)) if n_permutations > 1 else np.nan,
        "p_value": float((1 + (null >= auroc).sum()) / (1 + n_permutations)) if n_permutations else np.nan,
        "n_positive": len(pos),
        "n_negative": len(neg),
        "n_permutations": n_permutations,
    }
    row["z"] = (auroc - row["null_mean"]) / row["null_sd"] if row["null_sd"] and row["null_sd"] > 0 else np.nan
    return row, null


def _regulon_pairs(model, regulons) -> pd.DataFrame:
    if regulons is None:
        edges = model.regulon_edges()
    else:
        net = grn.load_regulons(regulons)
        edges = grn.regulon_edges_in(model.panel_["symbol"].astype(str).to_numpy(), net)
    if edges.empty:
        raise ValueError("No regulon edge has both its TF and its target in the model's gene panel.")
    return edges


def _negative_pairs(
    pos: np.ndarray, n_genes: int, n: int, kind: str, rng: np.random.Generator, symmetric: bool = True
) -> np.ndarray:
    """``n`` gene pairs that are not positive pairs (either direction when ``symmetric``)."""
    known = set(map(tuple, pos.tolist()))
    if symmetric:
        known |= {(b, a) for a, b in known}
    out: list[tuple[int, int]] = []
    for _ in range(50):
        m = 2 * (n - len(out)) + 16
        first = pos[rng.integers(0, len(pos), m), 0] if kind == "tf_matched" else rng.integers(0, n_genes, m)
        second = rng.integers(0, n_genes, m)
        for a, b in zip(first.tolist(), second.tolist(), strict=True):
            if a != b and (a, b) not in known:
                out.append((a, b))
                if len(out) == n:
                    return np.asarray(out, dtype=np.int64)
    raise ValueError("Could not draw enough negative gene pairs: the panel is too small or too connected.")


def _marker_sets(model, markers, groupby, layer, n_markers, method) -> dict[str, list[str]]:
    if isinstance(markers, AnnData):
        import scanpy as sc

        if groupby is None or groupby not in markers.obs:
            raise KeyError(f"markers is an AnnData: give groupby=, an obs column of it (got {groupby!r}).")
        data = log_normalised(markers, layer)
        panel = pd.Index(model.panel_["symbol"].astype(str))
        data = data[:, data.var_names.isin(panel)].copy()
        data.obs[groupby] = markers.obs[groupby].astype(str).to_numpy()
        with warnings.catch_warnings():  # scanpy warns that the copy is fragmented (we built it that way)
            warnings.filterwarnings("ignore", category=pd.errors.PerformanceWarning)
            sc.tl.rank_genes_groups(data, groupby, method=method, n_genes=n_markers, key_added="_markers")
        names = pd.DataFrame(data.uns["_markers"]["names"])
        return {str(c): [str(g) for g in names[c]] for c in names.columns}
    if not isinstance(markers, Mapping):
        raise TypeError(
            f"markers must be a dict cell type -> marker genes or an AnnData, got {type(markers).__name__}."
        )
    return {str(k): [str(g) for g in v] for k, v in markers.items()}


def _marker_pairs(sets: dict[str, list[str]], genes: pd.Index, max_pairs: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Same-type and different-type pairs of marker genes (genes marking several types are dropped)."""
    lookup = pd.Series(np.arange(len(genes)), index=genes)
    lookup = lookup[~lookup.index.duplicated()]
    upper = pd.Series(lookup.to_numpy(), index=lookup.index.str.upper())
    upper = upper[~upper.index.duplicated()]
    owner: dict[int, list[str]] = {}
    for cell_type, names in sets.items():
        for name in names:
            pos = lookup.get(name, upper.get(name.upper()))
            if pos is not None and cell_type not in owner.setdefault(int(pos), []):
                owner[int(pos)].append(cell_type)
    unique = {g: types[0] for g, types in owner.items() if len(types) == 1}
    by_type: dict[str, list[int]] = {}
    for g, t in unique.items():
        by_type.setdefault(t, []).append(g)
    by_type = {t: sorted(g) for t, g in by_type.items() if len(g) >= 2}
    if len(by_type) < 2:
        raise ValueError(
            "The marker audit needs >= 2 cell types with >= 2 marker genes each in the model's panel "
            f"(found {len(by_type)}); give more markers or a larger n_markers."
        )
    genes_ = np.concatenate([np.asarray(v) for v in by_type.values()])
    labels = np.concatenate([np.full(len(v), i) for i, v in enumerate(by_type.values())])
    i, j = np.triu_indices(len(genes_), k=1)
    same = labels[i] == labels[j]
    pos = np.c_[genes_[i[same]], genes_[j[same]]]
    neg = np.c_[genes_[i[~same]], genes_[j[~same]]]
    if len(pos) > max_pairs:
        pos = pos[rng.choice(len(pos), max_pairs, replace=False)]
    if len(neg) > max_pairs:
        neg = neg[rng.choice(len(neg), max_pairs, replace=False)]
    return pos, neg


def gene_embedding_audit(
    model: SCTransformer,
    *,
    method: Literal["spectral", "pca", "none"] = "spectral",
    n_components: int = 16,
    n_neighbors: int = 15,
    n_permutations: int = 100,
    regulons: str | os.PathLike | pd.DataFrame | None = None,
    negatives: Literal["random", "tf_matched"] = "random",
    markers: Mapping[str, Sequence[str]] | AnnData | None = None,
    groupby: str | None = None,
    layer: str | None = None,
    n_markers: int = 25,
    marker_method: str = "wilcoxon",
    max_pairs: int = 20_000,
    seed: int = 0,
) -> dict[str, Any]:
    """Audit the geometry of the learned gene embeddings (scGPT-style gene-embedding analysis).

    The gene identity embeddings (``model.module.gene_embedding.weight``, one row per panel gene) are
    projected onto a low-dimensional subspace, then asked two questions by cosine similarity there:

    (a) are known TF -> target pairs closer than random gene pairs? (AUROC, ``"tf_target"``)
    (b) with ``markers``: are marker genes of the same cell type closer than marker genes of different
        types? (AUROC, ``"markers"``)

    Each AUROC is set against a null in which the gene labels are permuted (the embedding rows are
    shuffled among the panel genes, the pairs kept): its mean and sd over ``n_permutations``, a
    z-score and the empirical p-value ``(1 + #{null >= observed}) / (1 + n_permutations)``. The null sits
    at 0.5 by construction; a shuffled gene's neighbours are random genes.

    **Projection.** ``method="spectral"`` (default) is a Laplacian eigenmap of the genes' cosine kNN
    graph: the top non-trivial eigenvectors of the regularised normalised adjacency
    ``D^-1/2 (A + tau/n 11^T) D^-1/2`` (regularised spectral clustering, Qin & Rohe 2013; ``tau`` = mean
    degree). scGPT reads gene programs as communities of this kNN graph (Leiden clusters); the spectral
    coordinates are the continuous version of those communities, so the AUROC asks "do regulators and
    their targets fall in the same gene programs?". Unlike PCA it ignores global directions of the
    embedding space (learned embeddings often share a dominant direction tied to expression frequency,
    which inflates every cosine and would favour highly expressed hub genes) and keeps local
    neighbourhood structure. ``"pca"`` (top principal components of the embeddings) and ``"none"`` (raw
    embeddings) are offered for comparison.

    Parameters
    ----------
    model
        A trained :class:`~sctransformer_tools.SCTransformer`.
    method
        ``"spectral"``, ``"pca"`` or ``"none"`` (see above).
    n_components
        Dimension of the subspace (for ``"pca"`` at most ``d_model``).
    n_neighbors
        Neighbours of each gene in the kNN graph (``"spectral"``).
    n_permutations
        Gene-label permutations of the null (0: none).
    regulons
        Regulons whose edges are the positive pairs, matched to the panel's gene symbols
        (``"collectri"``, ``"dorothea"``, a DataFrame or a path; e.g. another resource than the one the
        model was trained with). Default: the model's own regulon edges among its panel genes.
    negatives
        ``"random"``: uniform random pairs of panel genes that are not regulon edges, as many as the
        positives; ``"tf_matched"``: each negative pairs a positive's TF with a random non-target gene,
        which controls for TFs whose embeddings are close to everything.
    markers
        Marker genes: a dict cell type -> genes, or an AnnData (counts in ``X`` or ``layer``) whose
        ``obs[groupby]`` groups are ranked with :func:`scanpy.tl.rank_genes_groups` (on a
        log-normalised copy restricted to the panel genes) to take the top ``n_markers`` per group.
        Genes marking several types are dropped. ``None``: no marker test.
    groupby
        ``obs`` column of the groups when ``markers`` is an AnnData.
    layer
        Layer with counts when ``markers`` is an AnnData.
    n_markers
        Markers per group taken from ``rank_genes_groups``.
    marker_method
        ``rank_genes_groups`` method.
    max_pairs
        Largest number of positive (and of negative) pairs, drawn at random beyond it.
    seed
        Seed of the pair sampling, the permutations and the eigensolver.

    Returns
    -------
    A dict with

    ``"summary"``
        DataFrame, one row per test (``"tf_target"``, ``"markers"``): ``auroc``, ``null_mean``,
        ``null_sd``, ``p_value``, ``n_positive``, ``n_negative``, ``n_permutations``, ``z``.
    ``"null"``
        Dict test -> array of the ``n_permutations`` null AUROCs.
    ``"coordinates"``
        DataFrame, panel genes x components: the projected embeddings.
    ``"markers"``
        The marker sets used (``None`` without markers).
    ``"params"``
        The arguments.

    Examples
    --------
    >>> import sctransformer_tools as sct
    >>> adata = sct.ds.pbmc68k_reduced()
    >>> sct.SCTransformer.setup_anndata(adata, labels_key="bulk_labels")
    >>> model = sct.SCTransformer(adata, n_layers=1, d_model=16, n_heads=2, n_top_genes=0)
    >>> model.train(max_epochs=1, enable_progress_bar=False)
    >>> audit = sct.tl.gene_embedding_audit(
    ...     model, n_permutations=10, markers=adata, groupby="bulk_labels", marker_method="t-test"
    ... )
    >>> list(audit["summary"]["test"]), len(audit["null"]["tf_target"])
    (['tf_target', 'markers'], 10)
    """
    if method not in PROJECTIONS:
        raise ValueError(f"method must be one of {PROJECTIONS}, got {method!r}.")
    if negatives not in NEGATIVES:
        raise ValueError(f"negatives must be one of {NEGATIVES}, got {negatives!r}.")
    if n_permutations < 0:
        raise ValueError(f"n_permutations must be >= 0, got {n_permutations}.")
    if n_components < 1:
        raise ValueError(f"n_components must be >= 1, got {n_components}.")
    rng = np.random.default_rng(seed)
    embedding = gene_embeddings(model)
    genes = embedding.index
    coords = project(embedding.to_numpy(), method, n_components, n_neighbors, seed)
    unit = _unit_rows(coords)

    edges = _regulon_pairs(model, regulons)
    pos = edges[["source_idx", "target_idx"]].to_numpy(dtype=np.int64)
    if len(pos) > max_pairs:
        pos = pos[rng.choice(len(pos), max_pairs, replace=False)]
    neg = _negative_pairs(pos, len(genes), len(pos), negatives, rng)
    rows, nulls = [], {}
    row, nulls["tf_target"] = _test("tf_target", unit, pos, neg, n_permutations, rng)
    rows.append(row)

    marker_sets = None
    if markers is not None:
        marker_sets = _marker_sets(model, markers, groupby, layer, n_markers, marker_method)
        mpos, mneg = _marker_pairs(marker_sets, genes, max_pairs, rng)
        row, nulls["markers"] = _test("markers", unit, mpos, mneg, n_permutations, rng)
        rows.append(row)

    columns = ["test", "auroc", "null_mean", "null_sd", "z", "p_value", "n_positive", "n_negative", "n_permutations"]
    return {
        "summary": pd.DataFrame(rows)[columns],
        "null": nulls,
        "coordinates": pd.DataFrame(coords, index=genes, columns=[f"{method}_{i + 1}" for i in range(coords.shape[1])]),
        "markers": marker_sets,
        "params": {
            "method": method,
            "n_components": int(coords.shape[1]),
            "n_neighbors": int(n_neighbors),
            "n_permutations": int(n_permutations),
            "regulons": "model" if regulons is None else (regulons if isinstance(regulons, str) else "custom"),
            "negatives": negatives,
            "n_markers": int(n_markers),
            "max_pairs": int(max_pairs),
            "seed": int(seed),
        },
    }
