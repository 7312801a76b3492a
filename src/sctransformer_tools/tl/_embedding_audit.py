"""Audit of the learned gene representations: can TFs be told from their targets, do markers of a type cluster?"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from sctransformer_tools import grn
from sctransformer_tools._data import keep_torch_threads, log_normalised

if TYPE_CHECKING:
    from sctransformer_tools.model import SCTransformer

logger = logging.getLogger(__name__)

PROJECTIONS = ("spectral", "svd", "pca", "none")
NEGATIVES = ("random", "tf_matched")
TESTS = ("class_separation", "pairwise_proximity")
#: Name of the static gene identity table among the audited representations.
TABLE = "gene_embedding"
#: Default dimension of the subspace per test: six for the source's class separation, sixteen as before for the
#: pairwise proximity test.
DEFAULT_COMPONENTS = {"class_separation": 6, "pairwise_proximity": 16}
SUMMARY_COLUMNS = [
    "representation",
    "test",
    "auroc",
    "auroc_sd",
    "null_mean",
    "null_sd",
    "z",
    "p_value",
    "n_positive",
    "n_negative",
    "n_permutations",
]


def gene_embeddings(model: SCTransformer) -> pd.DataFrame:
    """The model's learned gene identity embeddings (panel genes x ``d_model``), indexed by gene symbol."""
    if not callable(getattr(model, "get_gene_embeddings", None)):
        raise TypeError(f"Expected a trained SCTransformer, got {type(model).__name__}.")
    table = model.get_gene_embeddings()
    return table.rename_axis("gene")


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
    n = int(min(n_components, *embedding.shape))
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=n, random_state=seed).fit_transform(embedding.astype(np.float64))
    if method == "svd":  # the singular axes of the matrix as it is (not centred)
        u, s, _ = np.linalg.svd(np.asarray(embedding, dtype=np.float64), full_matrices=False)
        return u[:, :n] * s[:n]
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


def _row(name: str, auroc: float, null: np.ndarray, n_positive: int, n_negative: int, sd: float = np.nan) -> dict:
    """A summary row: the AUROC against its permutation null (mean, sd, z, empirical p-value)."""
    n = len(null)
    row = {
        "test": name,
        "auroc": float(auroc),
        "auroc_sd": float(sd),
        "null_mean": float(null.mean()) if n else np.nan,
        "null_sd": float(null.std(ddof=1)) if n > 1 else np.nan,
        "p_value": float((1 + (null >= auroc).sum()) / (1 + n)) if n else np.nan,
        "n_positive": int(n_positive),
        "n_negative": int(n_negative),
        "n_permutations": n,
    }
    row["z"] = (auroc - row["null_mean"]) / row["null_sd"] if row["null_sd"] and row["null_sd"] > 0 else np.nan
    return row


def _test(
    name: str,
    unit: np.ndarray,
    pos: np.ndarray,
    neg: np.ndarray,
    n_permutations: int,
    rng: np.random.Generator,
    within: np.ndarray | None = None,
) -> tuple[dict[str, Any], np.ndarray]:
    """AUROC of positive vs negative pairs by cosine similarity, and its null with gene labels permuted (among all
    genes, or among the genes ``within``).
    """
    auroc = _pair_auroc(unit, pos, neg)
    null = []
    for _ in range(n_permutations):
        if within is None:
            perm = rng.permutation(len(unit))
        else:
            perm = np.arange(len(unit))
            perm[within] = within[rng.permutation(len(within))]
        null.append(_pair_auroc(unit, pos, neg, perm))
    null = np.asarray(null, dtype=np.float64)
    return _row(name, auroc, null, len(pos), len(neg)), null


def tf_target_classes(genes: Sequence[str], edges: pd.DataFrame) -> np.ndarray:
    """Class of each gene for the TF-vs-target test: 1 a TF (a source of an edge), 0 a target that is not itself a
    TF, -1 neither. A gene that is both a TF and a target counts as a TF: the question is whether regulators
    differ from the genes they regulate, and a regulator stays one when it is regulated too.

    Examples
    --------
    >>> import pandas as pd
    >>> edges = pd.DataFrame({"source": ["PAX5", "PAX5", "EBF1"], "target": ["CD19", "EBF1", "CD79A"]})
    >>> tf_target_classes(["PAX5", "EBF1", "CD19", "CD79A", "LYZ"], edges).tolist()
    [1, 1, 0, 0, -1]
    """
    genes = pd.Index(np.asarray(genes, dtype=str))
    classes = np.full(len(genes), -1, dtype=np.int64)
    classes[genes.isin(edges["target"].astype(str))] = 0
    classes[genes.isin(edges["source"].astype(str))] = 1
    return classes


def _auroc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for the binary ``y`` (Mann-Whitney, ties counted half)."""
    from scipy.stats import rankdata

    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    ranks = rankdata(score)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _stratified_folds(y: np.ndarray, n_folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold of each sample: every class dealt out in turn over ``n_folds`` folds, in random order."""
    fold = np.empty(len(y), dtype=np.int64)
    offset = 0
    for value in (0, 1):
        members = rng.permutation(np.flatnonzero(y == value))
        fold[members] = (np.arange(len(members)) + offset) % n_folds
        offset += len(members)
    return fold


def _cv_auroc(x: np.ndarray, y: np.ndarray, n_folds: int, rng: np.random.Generator) -> tuple[float, float]:
    """Mean and sd over stratified folds of the held-out AUROC of a linear discriminant of ``y`` on ``x``.

    The discriminant is Fisher's (LDA): on the training genes, coordinates standardised, the direction
    ``S^-1 (mean_1 - mean_0)`` with ``S`` the pooled within-class covariance plus a small ridge (1e-3 of its mean
    variance); held-out genes are scored along it. Class sizes do not move the direction (nor so the AUROC).
    """
    fold = _stratified_folds(y, n_folds, rng)
    scores = []
    for k in range(n_folds):
        train, test = fold != k, fold == k
        centre, scale = x[train].mean(0), x[train].std(0)
        scale = np.where(scale > 0, scale, 1.0)
        xt, xs = (x[train] - centre) / scale, (x[test] - centre) / scale
        yt = y[train]
        means = [xt[yt == c].mean(0) for c in (0, 1)]
        within = np.concatenate([xt[yt == c] - means[c] for c in (0, 1)])
        covariance = within.T @ within / max(len(within) - 2, 1)
        covariance += 1e-3 * max(np.trace(covariance) / len(covariance), 1e-12) * np.eye(len(covariance))
        direction = np.linalg.solve(covariance, means[1] - means[0])
        scores.append(_auroc(y[test], xs @ direction))
    return float(np.mean(scores)), float(np.std(scores, ddof=1)) if len(scores) > 1 else np.nan


def _class_test(
    name: str, coords: np.ndarray, classes: np.ndarray, n_folds: int, n_permutations: int, rng: np.random.Generator
) -> tuple[dict[str, Any], np.ndarray]:
    """Cross-validated AUROC of class 1 vs class 0 (-1: left out), and its null with the classes permuted."""
    labelled = classes >= 0
    x, y = coords[labelled], classes[labelled]
    smaller = int(min(y.sum(), len(y) - y.sum()))
    if smaller < 2:
        raise ValueError(
            f"The {name} test needs >= 2 genes of each class (found {int(y.sum())} and {len(y) - int(y.sum())})."
        )
    folds = min(n_folds, smaller)
    auroc, sd = _cv_auroc(x, y, folds, rng)
    null = np.asarray([_cv_auroc(x, rng.permutation(y), folds, rng)[0] for _ in range(n_permutations)])
    return _row(name, auroc, null, int(y.sum()), len(y) - int(y.sum()), sd), null


def _regulon_net(model, regulons) -> pd.DataFrame:
    """TF -> target edges (``source``, ``target``): ``regulons`` when given, else the model's own."""
    if regulons is not None:
        return grn.load_regulons(regulons)
    if model is None:
        raise ValueError("Give regulons= (a model's own regulons are used only when a model is given).")
    return model.regulon_edges()[["source", "target"]]


def _edges_in(genes: pd.Index, net: pd.DataFrame, representation: str) -> pd.DataFrame:
    edges = grn.regulon_edges_in(genes.to_numpy(), net)
    if edges.empty:
        raise ValueError(f"No regulon edge has both its TF and its target among the genes of {representation!r}.")
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


def _marker_sets(panel: pd.Index, markers, groupby, layer, n_markers, method) -> dict[str, list[str]]:
    if isinstance(markers, AnnData):
        import scanpy as sc

        if groupby is None or groupby not in markers.obs:
            raise KeyError(f"markers is an AnnData: give groupby=, an obs column of it (got {groupby!r}).")
        data = log_normalised(markers, layer)
        data = data[:, data.var_names.isin(panel)].copy()
        data.obs[groupby] = markers.obs[groupby].astype(str).to_numpy()
        # scanpy's statistics run on numba, whose OpenMP layer would change torch's thread count
        with warnings.catch_warnings(), keep_torch_threads():
            # scanpy warns that the copy is fragmented (we built it that way)
            warnings.filterwarnings("ignore", category=pd.errors.PerformanceWarning)
            sc.tl.rank_genes_groups(data, groupby, method=method, n_genes=n_markers, key_added="_markers")
        names = pd.DataFrame(data.uns["_markers"]["names"])
        return {str(c): [str(g) for g in names[c]] for c in names.columns}
    if not isinstance(markers, Mapping):
        raise TypeError(
            f"markers must be a dict cell type -> marker genes or an AnnData, got {type(markers).__name__}."
        )
    return {str(k): [str(g) for g in v] for k, v in markers.items()}


def _marker_pairs(
    sets: dict[str, list[str]], genes: pd.Index, max_pairs: int, rng
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Same-type and different-type pairs of marker genes (genes marking several types are dropped), and the
    positions of the marker genes used.
    """
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
            "The marker audit needs >= 2 cell types with >= 2 marker genes each among the audited genes "
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
    return pos, neg, np.sort(genes_)


def _representations(
    model, adata, embeddings, contextual: bool, max_cells: int | None, batch_size: int | None, seed: int
) -> dict[str, pd.DataFrame]:
    """The gene representations audited: given ``embeddings``, or the model's identity table and its contextual
    gene states per depth (``"input"``: tokens entering the first block; ``"block_i"``: after block ``i``).
    """
    if embeddings is not None:
        out = {}
        for name, frame in embeddings.items():
            if not isinstance(frame, pd.DataFrame):
                raise TypeError(f"embeddings[{name!r}] must be a DataFrame (genes x dimensions, index: gene symbols).")
            out[str(name)] = frame
        if not out:
            raise ValueError("embeddings is empty: give at least one table of genes x dimensions.")
        return out
    out = {TABLE: gene_embeddings(model)}
    if not contextual:
        return out
    cells = adata if adata is not None else getattr(model, "adata", None)
    if cells is None:
        logger.info("No cells to read (the model holds no data and adata is None): auditing the gene table only.")
        return out
    indices = None
    if max_cells is not None and cells.n_obs > max_cells:
        indices = np.sort(np.random.default_rng(seed).choice(cells.n_obs, max_cells, replace=False))
    states = model.get_gene_states(adata, indices=indices, batch_size=batch_size)
    out |= {("input" if depth == 0 else f"block_{depth}"): frame for depth, frame in states.items()}
    return out


def gene_embedding_audit(
    model: SCTransformer | None = None,
    adata: AnnData | None = None,
    *,
    test: Literal["class_separation", "pairwise_proximity"] = "class_separation",
    embeddings: Mapping[str, pd.DataFrame] | None = None,
    contextual: bool = True,
    max_cells: int | None = 2000,
    method: Literal["spectral", "svd", "pca", "none"] = "spectral",
    n_components: int | None = None,
    n_neighbors: int = 15,
    n_folds: int = 5,
    n_permutations: int = 100,
    regulons: str | os.PathLike | pd.DataFrame | None = None,
    negatives: Literal["random", "tf_matched"] = "random",
    markers: Mapping[str, Sequence[str]] | AnnData | None = None,
    groupby: str | None = None,
    layer: str | None = None,
    n_markers: int = 25,
    marker_method: str = "wilcoxon",
    max_pairs: int = 20_000,
    batch_size: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Audit the geometry of the model's gene representations, layer by layer, against the regulons and markers.

    The representations audited are the static gene identity table (``"gene_embedding"``,
    :meth:`~sctransformer_tools.SCTransformer.get_gene_embeddings`) and, with ``contextual``, the contextual gene
    states of the residual stream at every depth (``"input"``: the tokens entering the first block; ``"block_i"``:
    after block ``i``), each gene's token state averaged over the cells read that express it
    (:meth:`~sctransformer_tools.SCTransformer.get_gene_states`). Each is projected onto a low-dimensional
    subspace (``method``, ``n_components``) and asked, by ``test``:

    ``"class_separation"`` (default)
        The way Kendiukhov 2026, *Multi-Dimensional Spectral Geometry of Biological Knowledge in Single-Cell
        Transformer Representations*, arXiv:2602.22247, measures scGPT. ``"tf_vs_target"``: can TFs be told apart
        from their targets as two gene classes? In a six-dimensional spectral subspace (``n_components=6``), a linear discriminant (Fisher's, on standardised coordinates)
        separates TFs (sources of regulon edges among the genes) from targets (genes regulated by one of
        them that are not TFs themselves: a gene that is both counts as a TF, see :func:`tf_target_classes`);
        the AUROC is that of held-out genes, averaged over ``n_folds`` stratified folds (``auroc_sd``: its sd
        over the folds). Null: the same with the classes permuted among these genes.
        ``"marker_clustering"`` (with ``markers``): do the marker genes of one cell type cluster? The AUROC of the
        cosine similarity, in the same subspace, of same-type marker pairs against different-type marker pairs.
        Null: the marker genes' embeddings permuted among the marker genes.
    ``"pairwise_proximity"`` (the package's earlier test, kept under its own name; ``n_components=16``)
        ``"tf_target"``: are known TF -> target pairs closer (cosine similarity) than random gene pairs
        (``negatives``)? ``"markers"``: are same-type marker pairs closer than different-type ones? Null: the
        embeddings permuted among all genes. This asks whether a regulator sits *near* its targets, not whether
        regulators and targets form two classes: two well-separated classes give a low AUROC here (each pair
        straddles them), so its figures are not comparable with the source's.

    The source reports, for scGPT's contextual gene states, a TF-vs-target AUROC of 0.744 (every one of 12 layers
    significant) and a marker AUROC of 0.851. Only the ``"class_separation"`` rows of contextual states
    (``"input"``, ``"block_i"``) are measured in the same way, and even they differ in model, genes, data and the
    details of the subspace (the source builds its subspace from the spectral axes of scGPT's gene states; here
    ``method="spectral"`` by default, ``"svd"`` for singular axes), so they are a point of reference, not a
    replication. The identity table is read the same way for comparison.

    **Projection.** ``method="spectral"`` (default) is a Laplacian eigenmap of the genes' cosine kNN graph: the
    top non-trivial eigenvectors of the regularised normalised adjacency ``D^-1/2 (A + tau/n 11^T) D^-1/2``
    (regularised spectral clustering, Qin & Rohe 2013; ``tau`` = mean degree), each scaled by its eigenvalue; it
    ignores global directions of the space (learned representations often share a dominant direction tied to
    expression frequency) and keeps neighbourhoods. ``"svd"``: the top singular axes of the genes x dimensions
    matrix as it is (not centred); ``"pca"``: the top principal components; ``"none"``: the representation as it
    is. The projection never reads the classes.

    Parameters
    ----------
    model
        A :class:`~sctransformer_tools.SCTransformer` (trained, pretrained or not: an untrained encoder is a
        baseline). ``None`` with ``embeddings``.
    adata
        Cells whose contextual gene states are read (default: the model's reference).
    test
        ``"class_separation"`` or ``"pairwise_proximity"`` (see above).
    embeddings
        Representations to audit instead of the model's: name -> DataFrame of genes x dimensions (index: gene
        symbols); e.g. another model's states, or synthetic ones.
    contextual
        Also audit the contextual gene states at every depth (needs cells: ``adata`` or the model's reference).
    max_cells
        Cells read for the contextual states, drawn at random beyond it (``None``: all).
    method
        ``"spectral"``, ``"svd"``, ``"pca"`` or ``"none"`` (see above).
    n_components
        Dimension of the subspace; ``None``: 6 for ``"class_separation"``, 16 for ``"pairwise_proximity"``.
    n_neighbors
        Neighbours of each gene in the kNN graph (``"spectral"``).
    n_folds
        Stratified folds of the TF-vs-target classifier (at most the smaller class).
    n_permutations
        Permutations of the null (0: none).
    regulons
        Regulons giving the TFs, targets and edges, matched to the genes' symbols (``"collectri"``, ``"dorothea"``,
        a DataFrame or a path; e.g. another resource than the model's). Default: the model's own regulon edges.
    negatives
        Negative pairs of ``"pairwise_proximity"``: ``"random"`` (uniform random gene pairs that are not regulon
        edges, as many as the positives) or ``"tf_matched"`` (each pairs a positive's TF with a random non-target).
    markers
        Marker genes: a dict cell type -> genes, or an AnnData (counts in ``X`` or ``layer``) whose
        ``obs[groupby]`` groups are ranked with :func:`scanpy.tl.rank_genes_groups` (on a log-normalised copy
        restricted to the audited genes) to take the top ``n_markers`` per group. Genes marking several types
        are dropped. ``None``: no marker test.
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
    batch_size
        Cells per minibatch when reading contextual states (``None``: chosen from the data, see
        :meth:`~sctransformer_tools.SCTransformer.get_gene_states`).
    seed
        Seed of the cells read, the pair sampling, the folds, the permutations and the eigensolver (each
        representation is audited with the same draws).

    Returns
    -------
    A dict with

    ``"summary"``
        DataFrame, one row per representation and test: ``representation``, ``test``, ``auroc``, ``auroc_sd``
        (over folds; class separation only), ``null_mean``, ``null_sd``, ``z``, ``p_value`` (empirical,
        ``(1 + #{null >= auroc}) / (1 + n_permutations)``), ``n_positive`` / ``n_negative`` (TFs / targets, or
        positive / negative pairs), ``n_permutations``.
    ``"null"``
        Representation -> test -> array of the null AUROCs.
    ``"coordinates"``
        Representation -> DataFrame, genes x components: the projected representation.
    ``"markers"``
        The marker sets used (``None`` without markers).
    ``"params"``
        The arguments.

    Examples
    --------
    >>> import sctransformer_tools as sct
    >>> model, adata = sct.ds.toy_model()  # a tiny trained model and its data (pbmc68k_reduced)
    >>> audit = sct.tl.gene_embedding_audit(
    ...     model, n_permutations=10, markers=adata, groupby="bulk_labels", marker_method="t-test"
    ... )
    >>> audit["summary"][["representation", "test"]].drop_duplicates("representation")["representation"].tolist()
    ['gene_embedding', 'input', 'block_1']
    >>> sorted(audit["null"]["block_1"]), len(audit["null"]["block_1"]["tf_vs_target"])
    (['marker_clustering', 'tf_vs_target'], 10)
    """
    if test not in TESTS:
        raise ValueError(f"test must be one of {TESTS}, got {test!r}.")
    if method not in PROJECTIONS:
        raise ValueError(f"method must be one of {PROJECTIONS}, got {method!r}.")
    if negatives not in NEGATIVES:
        raise ValueError(f"negatives must be one of {NEGATIVES}, got {negatives!r}.")
    if n_permutations < 0:
        raise ValueError(f"n_permutations must be >= 0, got {n_permutations}.")
    n_components = DEFAULT_COMPONENTS[test] if n_components is None else int(n_components)
    if n_components < 1:
        raise ValueError(f"n_components must be >= 1, got {n_components}.")
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}.")
    if model is None and embeddings is None:
        raise ValueError("Give a model, or embeddings= to audit.")
    representations = _representations(model, adata, embeddings, contextual, max_cells, batch_size, seed)
    net = _regulon_net(model, regulons)
    marker_sets = None
    if markers is not None:
        if model is not None and embeddings is None:
            panel = pd.Index(model.panel_["symbol"].astype(str))
        else:
            panel = pd.Index(sorted(set().union(*(frame.index.astype(str) for frame in representations.values()))))
        marker_sets = _marker_sets(panel, markers, groupby, layer, n_markers, marker_method)

    rows, nulls, coordinates = [], {}, {}
    for name, frame in representations.items():
        frame = frame[~frame.index.astype(str).duplicated()]
        genes = pd.Index(frame.index.astype(str))
        values = frame.to_numpy(dtype=np.float64)
        coords = project(values, method, n_components, n_neighbors, seed)
        coordinates[name] = pd.DataFrame(
            coords, index=genes, columns=[f"{method}_{i + 1}" for i in range(coords.shape[1])]
        )
        unit = _unit_rows(coords)
        rng = np.random.default_rng(seed)
        edges = _edges_in(genes, net, name)
        found: dict[str, np.ndarray] = {}
        if test == "class_separation":
            row, found["tf_vs_target"] = _class_test(
                "tf_vs_target", coords, tf_target_classes(genes, edges), n_folds, n_permutations, rng
            )
            rows.append({"representation": name} | row)
            if marker_sets is not None:
                mpos, mneg, members = _marker_pairs(marker_sets, genes, max_pairs, rng)
                row, found["marker_clustering"] = _test(
                    "marker_clustering", unit, mpos, mneg, n_permutations, rng, within=members
                )
                rows.append({"representation": name} | row)
        else:
            pos = edges[["source_idx", "target_idx"]].to_numpy(dtype=np.int64)
            if len(pos) > max_pairs:
                pos = pos[rng.choice(len(pos), max_pairs, replace=False)]
            neg = _negative_pairs(pos, len(genes), len(pos), negatives, rng)
            row, found["tf_target"] = _test("tf_target", unit, pos, neg, n_permutations, rng)
            rows.append({"representation": name} | row)
            if marker_sets is not None:
                mpos, mneg, _ = _marker_pairs(marker_sets, genes, max_pairs, rng)
                row, found["markers"] = _test("markers", unit, mpos, mneg, n_permutations, rng)
                rows.append({"representation": name} | row)
        nulls[name] = found

    return {
        "summary": pd.DataFrame(rows)[SUMMARY_COLUMNS],
        "null": nulls,
        "coordinates": coordinates,
        "markers": marker_sets,
        "params": {
            "test": test,
            "representations": list(representations),
            "contextual": bool(contextual and embeddings is None),
            "max_cells": max_cells,
            "method": method,
            "n_components": int(n_components),
            "n_neighbors": int(n_neighbors),
            "n_folds": int(n_folds),
            "n_permutations": int(n_permutations),
            "regulons": "model" if regulons is None else (regulons if isinstance(regulons, str) else "custom"),
            "negatives": negatives,
            "n_markers": int(n_markers),
            "max_pairs": int(max_pairs),
            "seed": int(seed),
        },
    }
