"""TF programs per group: rank transcription factors by the attention flowing into their targets."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from sctransformer_tools._constants import ADATA_KEYS

from ._utils import RankBy, attention_tables, check_by, specificity, zscore


def tf_table(adata: AnnData, key: str = ADATA_KEYS.ATTENTION) -> dict[str, pd.DataFrame]:
    """TF x group tables of one attention result: score, coverage and number of targets."""
    result = attention_tables(adata, key)
    tf_scores = result["tf_scores"].astype(float)
    edges = result["edges"]
    coverage = result["coverage"].groupby(edges["source"].to_numpy()).mean()
    n_targets = edges.groupby("source").size()
    return {
        "score": tf_scores,
        "coverage": coverage.reindex(index=tf_scores.index, columns=tf_scores.columns).fillna(0.0),
        "n_targets": n_targets.reindex(tf_scores.index).fillna(0).astype(int),
    }


def tf_programs(
    adata: AnnData,
    key: str = ADATA_KEYS.ATTENTION,
    n_top: int | None = 10,
    *,
    by: RankBy = "specificity",
    groups: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Rank transcription factors per group by the attention flowing from them into their targets.

    Reads what :meth:`~sctransformer_tools.SCTransformer.get_attention` wrote into ``adata.uns[key]``:
    ``tf_scores`` (TFs x groups), the attention mass of a TF, i.e. the attention of its target genes'
    tokens on the TF's token summed over its targets and averaged over the group's cells. Raw mass
    favours hub TFs (many targets, expressed everywhere) in every group, so by default TFs are ranked
    by how much more mass they get in a group than elsewhere.

    Parameters
    ----------
    adata
        AnnData on which ``model.get_attention(adata, groupby=...)`` was run.
    key
        ``uns`` key of the attention result (``key_added`` of ``get_attention``).
    n_top
        TFs kept per group (``None``: all).
    by
        Ranking criterion:

        - ``"specificity"`` (default): the group's mass minus the mean mass of the TF over the *other*
          groups, in attention units (sums to 0 over groups for each TF). A TF ranks high where its
          targets listen to it more than elsewhere, and strongly so.
        - ``"zscore"``: the mass z-scored across groups for each TF (unitless; a TF with little mass
          but a sharp group pattern can rank first).
        - ``"mass"``: the raw attention mass (hub TFs rank high everywhere).
    groups
        Groups to report (default: all groups of the attention result). Specificity and z-scores are
        always computed against all groups.

    Returns
    -------
    Long table, one row per (group, TF), sorted by group then rank, with columns:

    ``group``, ``tf``, ``rank`` (1 = first, per group), ``score`` (attention mass), ``specificity``
    (score minus the mean over the other groups), ``zscore`` (across groups), ``mean_per_target``
    (score / number of targets), ``coverage`` (mean over the TF's edges of the fraction of the group's
    cells expressing both genes), ``n_targets`` (the TF's regulon edges in the model's panel).

    Examples
    --------
    >>> import sctransformer_tools as sct
    >>> model, adata = sct.ds.toy_model()  # a tiny trained model and its data (pbmc68k_reduced)
    >>> _ = model.get_attention(adata, groupby="bulk_labels", batch_size=256)
    >>> programs = sct.tl.tf_programs(adata, n_top=3)
    >>> bool(programs.groupby("group", observed=True)["rank"].max().eq(3).all())
    True
    >>> list(programs.columns[:4])
    ['group', 'tf', 'rank', 'score']
    """
    check_by(by)
    if n_top is not None and n_top < 1:
        raise ValueError(f"n_top must be a positive integer or None, got {n_top}.")
    tables = tf_table(adata, key)
    score = tables["score"]
    if score.shape[1] < 2 and by != "mass":
        raise ValueError(
            f"by={by!r} compares groups, but adata.uns[{key!r}] has a single group: use by='mass', or run "
            "`model.get_attention(adata, groupby=...)` with a groupby column."
        )
    names = list(score.columns)
    if groups is not None:
        unknown = [g for g in groups if g not in names]
        if unknown:
            raise KeyError(f"groups {unknown} are not groups of adata.uns[{key!r}] (groups: {names}).")
        names = list(groups)
    spec, z = specificity(score), zscore(score)
    n_targets = tables["n_targets"]
    frames = []
    for group in names:
        frame = pd.DataFrame(
            {
                "group": group,
                "tf": score.index.astype(str),
                "score": score[group].to_numpy(),
                "specificity": spec[group].to_numpy(),
                "zscore": z[group].to_numpy(),
                "mean_per_target": score[group].to_numpy() / np.maximum(n_targets.to_numpy(), 1),
                "coverage": tables["coverage"][group].to_numpy(),
                "n_targets": n_targets.to_numpy(),
            }
        )
        criterion = "score" if by == "mass" else by
        frame = frame.sort_values([criterion, "score", "tf"], ascending=[False, False, True], kind="stable")
        frame["rank"] = np.arange(1, len(frame) + 1)
        frames.append(frame if n_top is None else frame.head(n_top))
    out = pd.concat(frames, ignore_index=True)
    out["group"] = pd.Categorical(out["group"], categories=names)
    columns = ["group", "tf", "rank", "score", "specificity", "zscore", "mean_per_target", "coverage", "n_targets"]
    return out[columns]
