"""Does attention find known regulation? Attention on TF -> target edges vs non-edges and a null; top TFs vs ULM."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from sctransformer_tools import grn


def auroc(positive: Sequence[float], negative: Sequence[float]) -> float | None:
    """Area under the ROC curve of ``positive`` scores against ``negative`` ones (ties count half).

    The Mann-Whitney form of :func:`sklearn.metrics.roc_auc_score`, kept so that the records' numbers stay
    those of the study.

    Parameters
    ----------
    positive, negative
        Scores of the two sets (e.g. attention on regulon edges and on non-edges); NaNs are dropped.

    Returns
    -------
    AUROC in [0, 1]; ``None`` when either set is empty.

    Examples
    --------
    >>> from harness.attention import auroc
    >>> auroc([0.9, 0.8], [0.1, 0.2, 0.3]), auroc([0.5], [0.5])
    (1.0, 0.5)
    """
    from scipy.stats import rankdata

    pos = np.asarray(positive, dtype=float)
    neg = np.asarray(negative, dtype=float)
    pos, neg = pos[~np.isnan(pos)], neg[~np.isnan(neg)]
    if len(pos) == 0 or len(neg) == 0:
        return None
    ranks = rankdata(np.concatenate([pos, neg]))
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def pair_attention_scores(
    model, adata: AnnData, pairs: np.ndarray, *, batch_size: int = 8, layer: int | None = None
) -> pd.DataFrame:
    """Attention of query gene on key gene, per pair, over the cells of ``adata``.

    Reads :meth:`~sctransformer_tools.module.SCTransformerModule.pair_attention` (mean over heads, and
    over layers unless ``layer``) for arbitrary pairs of panel genes, not only regulon edges.

    Parameters
    ----------
    model
        A trained :class:`~sctransformer_tools.SCTransformer`.
    adata
        Cells registered with (or aligned to) the model.
    pairs
        ``(n, 2)`` panel positions ``(query, key)``; for TF -> target edges ``(target, TF)``.
    batch_size
        Cells per minibatch (a dense model holds ``cells x heads x tokens^2`` weights per layer).
    layer
        Layer to read; the mean over layers when ``None``.

    Returns
    -------
    One row per pair (input order): ``query``, ``key``, ``n_cells`` (cells where both genes are tokens),
    ``mean`` (mean attention over all cells, 0 where a gene is absent) and ``mean_present`` (mean over the
    ``n_cells`` cells; NaN when 0).
    """
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    read = model.attention_on_pairs(adata, pairs, layer=layer, batch_size=batch_size)
    n_cells = adata.n_obs
    total, present = read["score"][0] * n_cells, read["coverage"][0] * n_cells
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_present = np.where(present > 0, total / np.maximum(present, 1), np.nan)
    return pd.DataFrame(
        {
            "query": pairs[:, 0],
            "key": pairs[:, 1],
            "n_cells": np.round(present).astype(np.int64),
            "mean": read["score"][0],
            "mean_present": mean_present,
        }
    )


def sample_non_edges(
    n: int, sources: np.ndarray, targets: np.ndarray, edges: np.ndarray, n_genes: int, seed: int = 0
) -> np.ndarray:
    """Random ``(target, TF)`` pairs that are not regulon edges in either direction.

    Keys are drawn from the TFs and queries from the targets of the prior, so the non-edges differ from
    the edges only in whether the TF regulates the target, not in which kinds of genes they join.

    Parameters
    ----------
    n
        Pairs wanted (fewer if the space is small).
    sources, targets
        Panel positions of the prior's TFs and targets (candidates for key and query).
    edges
        ``(m, 2)`` ``(target, TF)`` pairs of the prior.
    n_genes
        Panel size (for pair codes).
    seed
        Seed of the draw.

    Returns
    -------
    ``(k, 2)`` unique ``(query, key)`` pairs, ``k <= n``.

    Examples
    --------
    >>> import numpy as np
    >>> from harness.attention import sample_non_edges
    >>> pairs = sample_non_edges(10, np.array([0, 1]), np.array([2, 3]), np.array([[2, 0]]), 4)
    >>> sorted(map(tuple, pairs.tolist()))
    [(2, 1), (3, 0), (3, 1)]
    """
    rng = np.random.default_rng(seed)
    sources, targets = np.unique(sources), np.unique(targets)
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    forbidden = set((edges[:, 0] * n_genes + edges[:, 1]).tolist()) | set(
        (edges[:, 1] * n_genes + edges[:, 0]).tolist()
    )
    capacity = len(sources) * len(targets)
    if capacity <= 4 * n:  # small space: enumerate it
        q, k = np.meshgrid(targets, sources, indexing="ij")
        cand = np.stack([q.ravel(), k.ravel()], 1)
        rng.shuffle(cand)
    else:
        cand = np.stack([rng.choice(targets, 3 * n), rng.choice(sources, 3 * n)], 1)
    codes = cand[:, 0] * n_genes + cand[:, 1]
    ok = (cand[:, 0] != cand[:, 1]) & ~np.isin(codes, list(forbidden))
    _, first = np.unique(codes[ok], return_index=True)
    picked = cand[ok][np.sort(first)]
    return picked[:n]


def attention_vs_regulons(
    model,
    adata: AnnData,
    *,
    n_non_edges: int | None = None,
    n_shuffles: int = 3,
    min_cells: int = 3,
    references: Mapping[str, pd.DataFrame] | None = None,
    max_cells: int | None = 2000,
    batch_size: int = 8,
    seed: int = 0,
) -> dict:
    """AUROC of attention for known TF -> target edges against non-edges, and against a shuffled-GRN null.

    Meant for a ``mask="dense"`` model, whose attention may fall on any pair (a GRN-masked model only
    attends along edges, which would make the test trivial). For every pair the score is the mean
    attention of the target's token on the TF's token over the cells of ``adata`` in which both are
    tokens; pairs co-expressed in fewer than ``min_cells`` cells are left out.

    - ``attention_auroc``: regulon edges vs random non-edges (TF keys, target queries, no edge in either
      direction). 0.5 = attention ignores regulation.
    - ``attention_auroc_null``: the same with the edges replaced by degree-preserving shuffles of the
      prior (:func:`~sctransformer_tools.grn.build_mask`, ``kind="shuffled"``; mean over ``n_shuffles``),
      i.e. what TF and target degrees alone give.
    - ``attention_auroc_vs_shuffled``: regulon edges vs the shuffled edges directly.

    Parameters
    ----------
    model
        A trained :class:`~sctransformer_tools.SCTransformer` (``mask="dense"`` for a meaningful test).
    adata
        Cells to read attention on (e.g. the test cells, aligned to the model).
    n_non_edges
        Random non-edges drawn (default: 3 x the edges).
    n_shuffles
        Shuffled priors in the null.
    min_cells
        Minimum co-expressing cells for a pair to be scored.
    references
        Other regulon tables (name -> DataFrame) whose edges among the panel are also scored (their
        own non-edges and shuffles), reported as ``attention_auroc_{name}``.
    max_cells
        Read attention on a seeded random sample of this many cells of ``adata`` (``None``: all).
    batch_size
        Cells per minibatch.
    seed
        Seed of non-edges and shuffles.

    Returns
    -------
    Dict with the three AUROCs, ``attention_edges_scored``, ``attention_non_edges_scored``,
    ``attention_auroc_null_sd`` and ``attention_cells``, plus one ``attention_auroc_{name}`` per reference.
    """
    n_genes = len(model.panel_)
    if max_cells is not None and adata.n_obs > max_cells:
        cells = np.sort(np.random.default_rng(seed).choice(adata.n_obs, max_cells, replace=False))
        adata = adata[cells].copy()
    priors = {"": model.regulon_edges()}
    for name, net in (references or {}).items():
        priors[f"_{name}"] = grn.regulon_edges_in(model.panel_["symbol"].to_numpy(), grn.validate_regulons(net))
    sets: dict[str, np.ndarray] = {}
    for suffix, edges in priors.items():
        edge_pairs = np.unique(edges[["target_idx", "source_idx"]].to_numpy(dtype=np.int64), axis=0)
        if len(edge_pairs) == 0:
            continue
        sets[f"edges{suffix}"] = edge_pairs
        n_neg = 3 * len(edge_pairs) if n_non_edges is None else n_non_edges
        sets[f"non{suffix}"] = sample_non_edges(
            n_neg, edges["source_idx"].to_numpy(), edges["target_idx"].to_numpy(), edge_pairs, n_genes, seed
        )
        true_codes = edge_pairs[:, 0] * n_genes + edge_pairs[:, 1]
        for s in range(n_shuffles):
            shuffled = grn.build_mask(n_genes, edges, kind="shuffled", seed=seed + 1000 + s).pairs
            keep = ~np.isin(shuffled[:, 0] * n_genes + shuffled[:, 1], true_codes)
            sets[f"shuffled{suffix}_{s}"] = shuffled[keep]
    names = list(sets)
    all_pairs = np.concatenate([sets[k] for k in names]) if names else np.zeros((0, 2), dtype=np.int64)
    scores = pair_attention_scores(model, adata, all_pairs, batch_size=batch_size)
    score = np.where(scores["n_cells"].to_numpy() >= min_cells, scores["mean_present"].to_numpy(), np.nan)
    chunks, start = {}, 0
    for k in names:
        chunks[k] = score[start : start + len(sets[k])]
        start += len(sets[k])
    out: dict = {}
    for suffix in priors:
        key = f"attention_auroc{suffix}"
        if f"edges{suffix}" not in chunks:
            out[key] = None
            continue
        edges_s, non_s = chunks[f"edges{suffix}"], chunks[f"non{suffix}"]
        shuffles = [chunks[k] for k in names if k.startswith(f"shuffled{suffix}_")]
        out[key] = auroc(edges_s, non_s)
        if suffix == "":
            nulls = [a for a in (auroc(s, non_s) for s in shuffles) if a is not None]
            out["attention_auroc_null"] = float(np.mean(nulls)) if nulls else None
            out["attention_auroc_null_sd"] = float(np.std(nulls, ddof=1)) if len(nulls) > 1 else None
            out["attention_auroc_vs_shuffled"] = auroc(edges_s, np.concatenate(shuffles)) if shuffles else None
            out["attention_edges_scored"] = int(np.isfinite(edges_s).sum())
            out["attention_non_edges_scored"] = int(np.isfinite(non_s).sum())
            out["attention_cells"] = getattr(adata, "n_obs", None)
    return out


def tf_activity_agreement(
    model,
    adata: AnnData,
    groups: Sequence[str],
    net: pd.DataFrame,
    *,
    min_cells: int = 10,
    n_top: int = 10,
    n_permutations: int = 1000,
    library_size_key: str | None = None,
    batch_size: int = 32,
    seed: int = 0,
) -> dict:
    """Agreement of the model's per-cell-type top TFs with decoupler ULM TF activity on the same cells.

    Attention TF scores come from :meth:`~sctransformer_tools.SCTransformer.get_attention` (attention of
    each TF's targets on the TF, summed over its regulon edges in the panel) on the cells of ``adata``
    grouped by ``groups``; ULM activities from :func:`~sctransformer_tools.tl.compare_tf_activity` on the
    same cells (log-normalised, all genes of ``adata``, the full regulons ``net``). Both are ranked by
    specificity (a type's value minus the mean over the other types); per type, the Spearman correlation
    and the overlap of the top-``n_top`` lists against a TF-label permutation null are averaged.

    Meaningful for ``mask="grn"`` and ``"dense"`` models; random and shuffled masks forbid most regulon
    edges, whose attention then reads 0.

    Parameters
    ----------
    model
        A trained :class:`~sctransformer_tools.SCTransformer`.
    adata
        Cells with counts of every measured gene (ULM reads them); the model reads its panel from them.
    groups
        One label per cell (e.g. the true cell types; ``None``/NaN cells are left out).
    net
        Regulons for ULM (``source``, ``target``, ``weight``).
    min_cells
        Types with fewer cells are left out.
    n_top
        Length of the compared top lists.
    n_permutations
        Permutations of the overlap null.
    library_size_key
        ``obs`` column of per-cell totals, as given to the model (row sums when ``None``).
    batch_size
        Cells per minibatch of ``get_attention``.
    seed
        Seed of the permutations.

    Returns
    -------
    ``tf_activity_spearman`` (mean over types), ``tf_top_overlap`` (mean shared TFs of the two top-``n_top``
    lists), ``tf_top_overlap_null`` (its permutation-null mean), ``tf_overlap_significant`` (share of types
    with overlap p < 0.05), ``tf_activity_types`` and ``tf_activity_tfs`` (TFs in both tables).
    """
    from sctransformer_tools.tl import compare_tf_activity

    labels = pd.Series(np.asarray(groups, dtype=object), index=adata.obs_names)
    counts = labels.value_counts()  # NaN/None labels are not counted
    types = counts.index[counts >= min_cells]
    empty = dict.fromkeys(
        ("tf_activity_spearman", "tf_top_overlap", "tf_top_overlap_null", "tf_overlap_significant", "tf_activity_tfs")
    ) | {"tf_activity_types": len(types)}
    if len(types) < 2:
        return empty
    keep = labels.isin(types).to_numpy()
    cells = adata[keep].copy()
    cells.obs["_group"] = labels[keep].astype(str).to_numpy()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The query lacks", category=UserWarning)  # counted in records
        model.get_attention(cells, groupby="_group", batch_size=batch_size, library_size_key=library_size_key)
    try:
        table = compare_tf_activity(
            cells, "_group", regulons=net, n_top=n_top, n_permutations=n_permutations, seed=seed, inplace=False
        )
    except ValueError:  # too few TFs with both an attention score and a ULM activity
        return empty
    return {
        "tf_activity_spearman": float(table["spearman"].mean()),
        "tf_top_overlap": float(table["overlap"].mean()),
        "tf_top_overlap_null": float(table["overlap_null_mean"].mean()),
        "tf_overlap_significant": float((table["overlap_pvalue"] < 0.05).mean()),
        "tf_activity_types": len(table),
        "tf_activity_tfs": int(table["n_tfs"].iloc[0]),
    }
