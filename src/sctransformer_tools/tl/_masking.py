"""How often MAM's learned masking policy masks each gene, read against expression, variability and the regulons."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

#: Gene classes compared, as (name, column of the preference table or a symbol pattern).
CLASSES = (
    ("TF", "is_tf"),
    ("regulon target", "is_target"),
    ("highly variable", "is_highly_variable"),
    ("ribosomal / mitochondrial", r"^(RPL|RPS|MT-)"),
)


def preference_table(data: AnnData | pd.DataFrame, key: str = "sctransformer_masking") -> pd.DataFrame:
    """The table of :meth:`~sctransformer_tools.SCTransformer.get_masking_preference`: ``data`` itself, or ``uns[key]``."""
    if isinstance(data, pd.DataFrame):
        table = data
    elif key not in data.uns or "genes" not in data.uns[key]:
        raise KeyError(
            f"adata.uns[{key!r}] not found: run model.get_masking_preference(adata) first (or pass its table)."
        )
    else:
        table = data.uns[key]["genes"]
    if "preference" in table.columns and "ratio_to_uniform" not in table.columns:
        raise ValueError(
            "This table holds the former 'preference' (softmax probability x token count), which is not a masking "
            "rate: recompute it with model.get_masking_preference(adata), which reports Monte-Carlo inclusion rates."
        )
    return table


def masking_preference_summary(
    data: AnnData | pd.DataFrame,
    *,
    key: str = "sctransformer_masking",
    min_detection: float = 0.02,
    n_top: int = 50,
) -> dict[str, Any]:
    """Compare how often MAM masks genes of different classes, relative to uniform masking, and with expression.

    Reads the table of :meth:`~sctransformer_tools.SCTransformer.get_masking_preference`: per gene, its Monte-Carlo
    inclusion rate (the share of draws of the masking sampler that mask it, averaged over the cells expressing it)
    and its ``ratio_to_uniform`` (that rate over the cell's uniform rate ``k / n``; 1: masked as often as at random,
    at most ``n / k``). Asks what the thesis that introduced MAM read from it: does the policy mask highly
    expressed genes, variable genes, TFs or their targets, or housekeeping (ribosomal and mitochondrial) genes
    more often than uniform masking would?

    Parameters
    ----------
    data
        An AnnData holding the table under ``uns[key]``, or the table.
    key
        ``uns`` key of the table.
    min_detection
        Genes expressed in fewer of the cells read are left out (their rates rest on few cells).
    n_top
        Size of the "most often masked genes" set (by ratio to uniform) counted per class.

    Returns
    -------
    A dict with

    ``"classes"``
        DataFrame, one row per class (TF, regulon target, highly variable, ribosomal / mitochondrial) and its
        complement, and ``all``: ``n_genes``, ``median_inclusion_rate``, ``median_ratio_to_uniform``,
        ``share_above_uniform`` (share of genes with a ratio above 1), ``n_in_top``.
    ``"correlation"``
        Series: Spearman's rank correlation of the ratio to uniform with ``mean_expression``, ``detection`` and
        ``dispersion``.
    ``"top"``
        The ``n_top`` genes of highest ratio to uniform (rows of the table).

    Examples
    --------
    >>> import sctransformer_tools as sct
    >>> model, adata = sct.ds.toy_model()  # a tiny model, MAM-pretrained then trained, and its data
    >>> _ = model.get_masking_preference(adata, n_draws=8, n_top_genes=200)
    >>> summary = sct.tl.masking_preference_summary(adata, n_top=20)
    >>> list(summary["classes"].columns), len(summary["top"])
    (['n_genes', 'median_inclusion_rate', 'median_ratio_to_uniform', 'share_above_uniform', 'n_in_top'], 20)
    """
    from scipy.stats import spearmanr

    genes = preference_table(data, key)
    missing = {"inclusion_rate", "ratio_to_uniform", "detection", "mean_expression", "symbol"} - set(genes.columns)
    if missing:
        raise ValueError(f"Not a masking-preference table: it lacks {sorted(missing)}.")
    genes = genes[genes["ratio_to_uniform"].notna() & (genes["detection"] >= min_detection)]
    if genes.empty:
        raise ValueError(
            f"No gene is expressed in at least {min_detection:.0%} of the cells read: lower min_detection."
        )
    ratio = genes["ratio_to_uniform"]
    top = genes.sort_values("ratio_to_uniform", ascending=False).head(n_top)
    in_top = genes.index.isin(top.index)
    rows = {"all": np.ones(len(genes), dtype=bool)}
    for name, column in CLASSES:
        if column.startswith("^"):
            member = genes["symbol"].astype(str).str.upper().str.match(column).to_numpy()
        elif column in genes:
            member = genes[column].to_numpy(dtype=bool)
        else:
            continue
        rows[name], rows[f"not {name}"] = member, ~member
    classes = pd.DataFrame(
        {
            name: {
                "n_genes": int(member.sum()),
                "median_inclusion_rate": float(genes["inclusion_rate"][member].median()) if member.any() else np.nan,
                "median_ratio_to_uniform": float(ratio[member].median()) if member.any() else np.nan,
                "share_above_uniform": float((ratio[member] > 1).mean()) if member.any() else np.nan,
                "n_in_top": int((member & in_top).sum()),
            }
            for name, member in rows.items()
        }
    ).T
    classes["n_genes"] = classes["n_genes"].astype(int)
    classes["n_in_top"] = classes["n_in_top"].astype(int)
    correlation = pd.Series(
        {
            column: float(spearmanr(ratio, genes[column], nan_policy="omit")[0])
            for column in ("mean_expression", "detection", "dispersion")
            if column in genes
        },
        name="spearman",
    )
    return {"classes": classes, "correlation": correlation, "top": top}
