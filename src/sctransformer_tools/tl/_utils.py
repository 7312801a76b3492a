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


def attention_result(adata: AnnData, key: str = ADATA_KEYS.ATTENTION) -> dict:
    """The dict :meth:`~sctransformer_tools.SCTransformer.get_attention` wrote into ``adata.uns[key]``, checked."""
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
    return result


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
