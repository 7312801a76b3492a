"""Attention TF rankings against TF activities inferred from expression (decoupler ULM)."""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from sctransformer_tools import grn
from sctransformer_tools._constants import ADATA_KEYS
from sctransformer_tools._data import get_matrix

from ._tf_programs import tf_table
from ._utils import RankBy, check_by, contrast

#: ``uns`` key written by :func:`compare_tf_activity`.
TF_ACTIVITY_KEY = "sctransformer_tf_activity"


def ulm_activity(
    adata: AnnData,
    groupby: str,
    net: pd.DataFrame,
    *,
    layer: str | None = None,
    normalize: bool = True,
    gene_symbols: str | None = None,
    tmin: int = 5,
) -> pd.DataFrame:
    """ULM activity (decoupler) of each group's pseudobulk profile (TFs x groups).

    The cells of each group are summed (:func:`decoupler.pp.pseudobulk`; averaged when ``normalize=False``, i.e.
    the input is already log-normalised), each profile is log-normalised (``log1p(counts / total * 1e4)``), and
    :func:`decoupler.mt.ulm` scores every TF with at least ``tmin`` measured targets.
    """
    import decoupler as dc

    if groupby not in adata.obs:
        raise KeyError(f"groupby column {groupby!r} not found in adata.obs.")
    groups = adata.obs[groupby]
    keep = groups.notna().to_numpy()
    matrix = get_matrix(adata, layer)[np.flatnonzero(keep)]
    if hasattr(matrix, "to_memory"):
        matrix = matrix.to_memory()
    names = adata.var_names if gene_symbols is None else pd.Index(adata.var[gene_symbols].astype(str).to_numpy())
    cells = AnnData(
        X=sparse.csr_matrix(matrix, dtype=np.float32),
        obs=pd.DataFrame({"group": groups[keep].astype(str).to_numpy()}, index=adata.obs_names[keep]),
        var=pd.DataFrame(index=pd.Index(names.astype(str))),
    )
    cells.var_names_make_unique()
    bulk = dc.pp.pseudobulk(
        cells, sample_col="group", groups_col=None, mode="sum" if normalize else "mean", skip_checks=not normalize
    )
    if normalize:
        total = np.asarray(bulk.X.sum(1)).reshape(-1, 1)
        bulk.X = np.log1p(np.asarray(bulk.X, dtype=np.float64) / np.maximum(total, 1) * 1e4)
    dc.mt.ulm(data=bulk, net=net, tmin=tmin, verbose=False)
    activity = bulk.obsm["score_ulm"].T
    activity.index.name = "tf"
    activity.columns = [str(c) for c in bulk.obs_names]
    return activity


def _top(values: np.ndarray, n: int) -> np.ndarray:
    """Positions of the ``n`` largest values (ties broken by position)."""
    return np.argsort(-values, kind="stable")[:n]


def compare_tf_activity(
    adata: AnnData,
    groupby: str,
    key: str = ADATA_KEYS.ATTENTION,
    *,
    regulons: str | os.PathLike | pd.DataFrame | None = None,
    layer: str | None = None,
    normalize: bool = True,
    gene_symbols: str | None = None,
    by: RankBy = "specificity",
    n_top: int = 10,
    tmin: int = 5,
    n_permutations: int = 1000,
    seed: int = 0,
    key_added: str = TF_ACTIVITY_KEY,
    inplace: bool = True,
) -> pd.DataFrame:
    """Compare the attention ranking of TFs per group with TF activities inferred from expression.

    TF activities are decoupler's univariate linear model (``dc.mt.ulm``) of each cell's
    log-normalised expression (``normalize_total`` to 1e4 then ``log1p``, computed on a copy: ``adata``
    is not modified) on the regulons, averaged over the cells of each group. The attention side is
    ``adata.uns[key]["tf_scores"]`` from :meth:`~sctransformer_tools.SCTransformer.get_attention`. Both
    TF x group tables are put on the same scale (``by``) and compared per group over the TFs present in
    both:

    - Spearman correlation of the two TF orderings;
    - overlap of the two top-``n_top`` lists, against a permutation null that shuffles the TF labels of
      the attention scores (``n_permutations`` times); its mean and an empirical p-value
      ``(1 + #{null >= observed}) / (1 + n_permutations)``. The hypergeometric expectation
      ``n_top**2 / n_tfs`` is reported too.

    The two measures are different things: attention says which TFs the model *reads* in a group,
    ULM which TFs' targets are jointly up or down. Agreement is evidence that the model's reading
    follows regulation; disagreement is not proof of an error.

    Parameters
    ----------
    adata
        AnnData on which ``model.get_attention(adata, groupby=groupby)`` was run, with counts in ``X``
        or ``layer``.
    groupby
        ``obs`` column of the groups (the one given to ``get_attention``).
    key
        ``uns`` key of the attention result.
    regulons
        Regulons for ULM (``source``, ``target``, ``weight``): ``"collectri"``, ``"dorothea"``, a
        DataFrame or a file path (see :func:`~sctransformer_tools.grn.load_regulons`). Default: the
        model's regulon edges stored with the attention result (``adata.uns[key]["edges"]``), so both
        sides read the same network.
    layer
        Layer with counts (``None``: ``X``).
    normalize
        Normalise and log-transform before ULM; ``False`` when the matrix is already log-normalised.
    gene_symbols
        ``var`` column holding the gene symbols the regulons use (default: ``var_names``).
    by
        Scale on which both tables are compared (see :func:`tf_programs`): ``"specificity"`` (value in
        a group minus the mean over the other groups), ``"zscore"`` (across groups) or ``"mass"`` (raw
        attention mass vs raw mean activity).
    n_top
        Length of the top lists compared.
    tmin
        Minimum number of targets of a TF among the genes for ULM (decoupler's ``tmin``).
    n_permutations
        Permutations of the TF labels for the overlap null (0: no null).
    seed
        Seed of the permutations.
    key_added
        ``uns`` key written.
    inplace
        Write the result into ``adata.uns[key_added]``.

    Returns
    -------
    One row per group: ``group``, ``n_tfs`` (TFs in both tables), ``spearman``, ``spearman_pvalue``,
    ``overlap`` (shared TFs of the top lists), ``overlap_expected`` (``n_top**2 / n_tfs``),
    ``overlap_null_mean``, ``overlap_null_sd``, ``overlap_pvalue``, ``top_attention`` and
    ``top_activity`` (the top lists, comma-separated, best first).

    Sets the following fields (when ``inplace``)
    --------------------------------------------
    ``adata.uns[key_added]["table"]``
        The returned table.
    ``adata.uns[key_added]["activity"]``
        ULM activity of each group's pseudobulk: a long table (``tf``, ``group``, ``activity``).
    ``adata.uns[key_added]["params"]``
        ``groupby``, ``key``, ``by``, ``n_top``, ``tmin``, ``n_permutations``, ``seed``, ``regulons``,
        ``layer``, ``normalize``.

    Examples
    --------
    >>> import sctransformer_tools as sct
    >>> model, adata = sct.ds.toy_model()  # a tiny trained model and its data (pbmc68k_reduced)
    >>> _ = model.get_attention(adata, groupby="bulk_labels", batch_size=256)
    >>> table = sct.tl.compare_tf_activity(adata, "bulk_labels", regulons="collectri", n_top=5, n_permutations=100)
    >>> sorted(adata.uns["sctransformer_tf_activity"])
    ['activity', 'params', 'table']
    """
    check_by(by)
    if n_top < 1:
        raise ValueError(f"n_top must be a positive integer, got {n_top}.")
    if n_permutations < 0:
        raise ValueError(f"n_permutations must be >= 0, got {n_permutations}.")
    tables = tf_table(adata, key)
    attention = tables["score"]
    if groupby not in adata.obs:
        raise KeyError(f"groupby column {groupby!r} not found in adata.obs.")
    params = adata.uns[key].get("params", {})
    if params.get("groupby") and params["groupby"] != groupby:
        warnings.warn(
            f"adata.uns[{key!r}] was computed with groupby={params['groupby']!r}, not {groupby!r}; "
            "groups are matched by name.",
            stacklevel=2,
        )
    if regulons is None:
        net = adata.uns[key]["edges"][["source", "target", "weight"]].reset_index(drop=True)
        regulons_name = f"adata.uns[{key!r}]['edges']"
    else:
        net = grn.load_regulons(regulons)
        regulons_name = regulons if isinstance(regulons, str) else type(regulons).__name__
    activity = ulm_activity(adata, groupby, net, layer=layer, normalize=normalize, gene_symbols=gene_symbols, tmin=tmin)
    groups = [g for g in attention.columns if g in activity.columns]
    if not groups:
        raise ValueError(
            f"No group of adata.obs[{groupby!r}] ({list(activity.columns)[:10]}) is a group of the attention "
            f"result ({list(attention.columns)[:10]}): run `model.get_attention(adata, groupby={groupby!r})`."
        )
    tfs = attention.index.intersection(activity.index)
    if len(tfs) < 3:
        raise ValueError(
            f"Only {len(tfs)} TFs have both attention and a ULM activity (ULM needs >= tmin={tmin} targets "
            "among the genes): lower tmin or pass other regulons."
        )
    att = contrast(attention.loc[tfs, groups], by)
    act = contrast(activity.loc[tfs, groups], by)
    table = _compare(att, act, n_top=n_top, n_permutations=n_permutations, seed=seed)
    if inplace:
        long = activity.rename_axis(index="tf", columns="group").stack().rename("activity").reset_index()
        adata.uns[key_added] = {  # group names as data, never as keys or column names (h5ad-safe for any name)
            "table": table,
            "activity": long,
            "params": _params(groupby, key, by, n_top, tmin, n_permutations, seed, regulons_name, layer, normalize),
        }
    return table


def _params(groupby, key, by, n_top, tmin, n_permutations, seed, regulons, layer, normalize) -> dict[str, Any]:
    return {
        "groupby": groupby,
        "key": key,
        "by": by,
        "n_top": int(n_top),
        "tmin": int(tmin),
        "n_permutations": int(n_permutations),
        "seed": int(seed),
        "regulons": str(regulons),
        "layer": "" if layer is None else layer,
        "normalize": bool(normalize),
        "method": "ulm",
    }


def _compare(att: pd.DataFrame, act: pd.DataFrame, *, n_top: int, n_permutations: int, seed: int) -> pd.DataFrame:
    """Per group (column): Spearman correlation and top-list overlap with a label-permutation null."""
    from scipy.stats import spearmanr

    rng = np.random.default_rng(seed)
    tfs = att.index.to_numpy().astype(str)
    n_tfs = len(tfs)
    n = min(n_top, n_tfs)
    rows = []
    for group in att.columns:
        a = att[group].to_numpy(dtype=float)
        u = act[group].to_numpy(dtype=float)
        ok = np.isfinite(a) & np.isfinite(u)
        if ok.sum() >= 3 and np.ptp(a[ok]) > 0 and np.ptp(u[ok]) > 0:
            rho, pvalue = spearmanr(a[ok], u[ok])
        else:  # a constant side has no ordering
            rho, pvalue = np.nan, np.nan
        top_a, top_u = _top(np.where(ok, a, -np.inf), n), _top(np.where(ok, u, -np.inf), n)
        in_top_u = np.zeros(n_tfs, dtype=bool)
        in_top_u[top_u] = True
        overlap = int(in_top_u[top_a].sum())
        if n_permutations:
            # shuffling the TF labels of the attention scores makes its top list a uniform random subset
            random_top = np.argsort(rng.random((n_permutations, n_tfs)), axis=1)[:, :n]
            null = in_top_u[random_top].sum(1)
            null_mean, null_sd = float(null.mean()), float(null.std(ddof=1)) if n_permutations > 1 else np.nan
            p_overlap = float((1 + (null >= overlap).sum()) / (1 + n_permutations))
        else:
            null_mean = null_sd = p_overlap = np.nan
        rows.append(
            {
                "group": str(group),
                "n_tfs": n_tfs,
                "spearman": float(rho),
                "spearman_pvalue": float(pvalue),
                "overlap": overlap,
                "overlap_expected": n * n / n_tfs,
                "overlap_null_mean": null_mean,
                "overlap_null_sd": null_sd,
                "overlap_pvalue": p_overlap,
                "top_attention": ",".join(tfs[top_a]),
                "top_activity": ",".join(tfs[top_u]),
            }
        )
    return pd.DataFrame(rows)
