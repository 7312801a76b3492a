"""Shared helpers of the analyses: reading the attention result, contrasting groups."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from sctransformer_tools._constants import ADATA_KEYS

RANK_BY = ("specificity", "zscore", "mass")
RankBy = Literal["specificity", "zscore", "mass"]

_REQUIRED = ("tf_scores", "scores", "coverage", "edges")


def attention_tables(adata: AnnData, key: str = ADATA_KEYS.ATTENTION) -> dict:
    """What :meth:`~sctransformer_tools.SCTransformer.get_attention` wrote into ``adata.uns[key]``, as tables.

    Returns
    -------
    ``edges`` (source, target, weight; index ``"TF->target"``), ``scores`` and ``coverage`` (edges x groups),
    ``tf_scores`` (TFs x groups), ``cls_attention`` (panel genes x groups), ``mask`` and ``params``. Results
    written by 0.2 (tables with the group names as columns) read the same.

    Examples
    --------
    >>> import sctransformer_tools as sct
    >>> model, adata = sct.ds.toy_model()  # a tiny trained model and its data (pbmc68k_reduced)
    >>> _ = model.get_attention(adata, groupby="bulk_labels", batch_size=256)
    >>> tables = sct.tl.attention_tables(adata)
    >>> tables["scores"].shape[1], tables["scores"].index[0].count("->")
    (10, 1)
    """
    if not isinstance(adata, AnnData):
        raise TypeError(f"Expected an AnnData, got {type(adata).__name__}.")
    if key not in adata.uns:
        raise KeyError(
            f"adata.uns[{key!r}] not found: run `model.get_attention(adata, groupby=...)` first"
            + ("" if key == ADATA_KEYS.ATTENTION else f" (with key_added={key!r})")
            + "."
        )
    result = adata.uns[key]
    missing = [field for field in _REQUIRED if field not in result]
    if missing:
        raise KeyError(
            f"adata.uns[{key!r}] lacks {missing}: it was not written by `model.get_attention`; "
            "run `model.get_attention(adata, groupby=...)` again."
        )
    if isinstance(result["scores"], pd.DataFrame):  # written by 0.2: tables keyed by group name
        return dict(result)
    groups = pd.Index([str(g) for g in result["groups"]])
    edges = pd.DataFrame(result["edges"]).reset_index(drop=True)
    edges.index = pd.Index(edges["source"].astype(str) + "->" + edges["target"].astype(str))

    def table(values, index) -> pd.DataFrame:
        return pd.DataFrame(np.asarray(values, dtype=float), index=index, columns=groups)

    tfs = pd.Index([str(t) for t in result["tfs"]], name="tf")
    return {
        "edges": edges,
        "scores": table(result["scores"], edges.index),
        "coverage": table(result["coverage"], edges.index),
        "tf_scores": table(result["tf_scores"], tfs),
        "cls_attention": table(result["cls_attention"], pd.Index([str(g) for g in result["genes"]])),
        "mask": dict(result.get("mask", {})),
        "params": dict(result.get("params", {})),
    }


#: The name the analyses used before :func:`attention_tables` was public.
attention_result = attention_tables


def check_by(by: str) -> None:
    """Raise on an unknown ranking criterion."""
    if by not in RANK_BY:
        raise ValueError(f"by must be one of {RANK_BY}, got {by!r}.")


def specificity(matrix: pd.DataFrame) -> pd.DataFrame:
    """Each value minus the mean of the same row over the *other* columns (rows sum to 0).

    With ``G`` groups: ``s_g - (S - s_g) / (G - 1)`` where ``S`` is the row sum. (Not
    :func:`decoupler.tl.rankby_group`: it tests per-cell values between groups, and attention is aggregated per
    group on the fly, without per-cell matrices.)
    """
    n = matrix.shape[1]
    if n < 2:
        return pd.DataFrame(np.nan, index=matrix.index, columns=matrix.columns)
    values = matrix.to_numpy(dtype=float)
    total = values.sum(1, keepdims=True)
    return pd.DataFrame(values - (total - values) / (n - 1), index=matrix.index, columns=matrix.columns)


def zscore(matrix: pd.DataFrame) -> pd.DataFrame:
    """Z-score of each row across columns (population sd; 0 where a row is constant)."""
    values = matrix.to_numpy(dtype=float)
    if values.shape[1] < 2:
        return pd.DataFrame(np.nan, index=matrix.index, columns=matrix.columns)
    sd = values.std(1, keepdims=True)
    z = np.divide(values - values.mean(1, keepdims=True), sd, out=np.zeros_like(values), where=sd > 0)
    return pd.DataFrame(z, index=matrix.index, columns=matrix.columns)


def contrast(matrix: pd.DataFrame, by: str) -> pd.DataFrame:
    """``matrix`` (features x groups) on the scale named by ``by``."""
    check_by(by)
    if by == "mass":
        return matrix.astype(float)
    if matrix.shape[1] < 2:
        raise ValueError(
            f"by={by!r} compares groups, but there is only one group: use by='mass', or run "
            "`model.get_attention(adata, groupby=...)` with a groupby column."
        )
    return specificity(matrix) if by == "specificity" else zscore(matrix)
