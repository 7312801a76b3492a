"""Which genes MAM's learned masking policy prefers, read against expression, variability and the regulons."""

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
        return data
    if key not in data.uns or "genes" not in data.uns[key]:
        raise KeyError(
            f"adata.uns[{key!r}] not found: run model.get_masking_preference(adata) first (or pass its table)."
        )
    return data.uns[key]["genes"]


def masking_preference_summary(
    data: AnnData | pd.DataFrame,
    *,
    key: str = "sctransformer_masking",
    min_detection: float = 0.02,
    n_top: int = 50,
) -> dict[str, Any]:
    """Compare MAM's masking preference across gene classes, and with expression level.

    Reads the table of :meth:`~sctransformer_tools.SCTransformer.get_masking_preference` (a preference of 1 is a
    uniform choice) and asks what the thesis that introduced MAM read from it: does the policy prefer highly
    expressed genes, variable genes, TFs or their targets, or housekeeping (ribosomal and mitochondrial) genes?

    Parameters
    ----------
    data
        An AnnData holding the table under ``uns[key]``, or the table.
    key
        ``uns`` key of the table.
    min_detection
        Genes expressed in fewer of the cells read are left out (their preference rests on few cells).
    n_top
        Size of the "most preferred genes" set counted per class.

    Returns
    -------
    A dict with

    ``"classes"``
        DataFrame, one row per class (TF, regulon target, highly variable, ribosomal / mitochondrial) and its
        complement, and ``all``: ``n_genes``, ``median_preference``, ``share_above_uniform``, ``n_in_top``.
    ``"correlation"``
        Series: Spearman's rank correlation of the preference with ``mean_expression``, ``detection`` and
        ``dispersion``.
    ``"top"``
        The ``n_top`` most preferred genes (rows of the table).

    Examples
    --------
    >>> import sctransformer_tools as sct
    >>> adata = sct.ds.pbmc68k_reduced()
    >>> sct.SCTransformer.setup_anndata(adata, labels_key="bulk_labels")
    >>> model = sct.SCTransformer(adata, n_layers=1, d_model=16, n_heads=2, n_top_genes=0)
    >>> model.pretrain(masking="mam", max_epochs=1, enable_progress_bar=False)
    >>> _ = model.get_masking_preference(adata, n_top_genes=200)
    >>> summary = sct.tl.masking_preference_summary(adata, n_top=20)
    >>> list(summary["classes"].columns), len(summary["top"])
    (['n_genes', 'median_preference', 'share_above_uniform', 'n_in_top'], 20)
    """
    from scipy.stats import spearmanr

    genes = preference_table(data, key)
    missing = {"preference", "detection", "mean_expression", "symbol"} - set(genes.columns)
    if missing:
        raise ValueError(f"Not a masking-preference table: it lacks {sorted(missing)}.")
    genes = genes[genes["preference"].notna() & (genes["detection"] >= min_detection)]
    if genes.empty:
        raise ValueError(
            f"No gene is expressed in at least {min_detection:.0%} of the cells read: lower min_detection."
        )
    top = genes.sort_values("preference", ascending=False).head(n_top)
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
                "median_preference": float(genes["preference"][member].median()) if member.any() else np.nan,
                "share_above_uniform": float((genes["preference"][member] > 1).mean()) if member.any() else np.nan,
                "n_in_top": int((member & in_top).sum()),
            }
            for name, member in rows.items()
        }
    ).T
    classes["n_genes"] = classes["n_genes"].astype(int)
    classes["n_in_top"] = classes["n_in_top"].astype(int)
    correlation = pd.Series(
        {
            column: float(spearmanr(genes["preference"], genes[column], nan_policy="omit")[0])
            for column in ("mean_expression", "detection", "dispersion")
            if column in genes
        },
        name="spearman",
    )
    return {"classes": classes, "correlation": correlation, "top": top}
