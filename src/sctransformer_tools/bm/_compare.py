"""Read a :func:`~sctransformer_tools.bm.run`: paired differences against a reference, seed by seed."""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Differences smaller than this count as ties.
TIE = 5e-4


def _variants(results: pd.DataFrame) -> pd.Series:
    """``mask`` for scTransformer rows (``"mask (regulons)"`` when several regulon sets, ``"mask [mode]"`` when
    several modes), ``method`` otherwise.
    """
    sct = results["method"] == "sctransformer"
    several = results.loc[sct, "regulons"].nunique() > 1
    names = results["method"].astype(str).copy()
    if sct.any():
        masks = results.loc[sct, "mask"].astype(str)
        names[sct] = masks + " (" + results.loc[sct, "regulons"].astype(str) + ")" if several else masks
        if "mode" in results and results.loc[sct, "mode"].nunique() > 1:
            names[sct] = names[sct] + " [" + results.loc[sct, "mode"].astype(str) + "]"
    return names


def compare(results: pd.DataFrame, metric: str = "macro_f1", reference: str = "grn") -> pd.DataFrame:
    """Paired differences ``reference - comparator`` of ``metric``, seed by seed, for every other method and mask.

    Runs of the same seed share the split and the seed of the models, so their difference is free of the
    split-to-split spread that separates seeds.

    Parameters
    ----------
    results
        The result of :func:`~sctransformer_tools.bm.run`.
    metric
        Column compared.
    reference
        An scTransformer mask (``"grn"``; ``"grn (dorothea_ABC)"`` to pick a regulon set when the results hold
        several, a bare mask then meaning the first set; ``"grn [unlabelled]"`` to pick a mode when they hold
        several) or a peer's name.

    Returns
    -------
    One row per comparator, in the order of ``results``: ``reference``, ``comparator``, ``n_pairs``, ``seeds``,
    ``diffs`` (per seed), ``mean``, ``sd``, ``wins``, ``losses``, ``ties`` (``|diff| < 5e-4``) and ``p_value``
    (two-sided paired t-test, :func:`scipy.stats.ttest_1samp` of the differences; ``None`` below two pairs or
    for constant differences).

    Examples
    --------
    >>> import pandas as pd
    >>> import sctransformer_tools as sct
    >>> results = pd.DataFrame(
    ...     {
    ...         "method": ["sctransformer"] * 4 + ["logistic_regression"] * 2,
    ...         "mask": ["grn", "grn", "shuffled", "shuffled", None, None],
    ...         "regulons": ["collectri"] * 4 + [None, None],
    ...         "seed": [0, 1, 0, 1, 0, 1],
    ...         "macro_f1": [0.90, 0.80, 0.85, 0.70, 0.92, 0.83],
    ...     }
    ... )
    >>> table = sct.bm.compare(results)
    >>> table[["comparator", "n_pairs", "wins", "losses"]]
                comparator  n_pairs  wins  losses
    0             shuffled        2     2       0
    1  logistic_regression        2     0       2
    >>> [round(d, 2) for d in table["diffs"][0]], round(float(table["mean"][0]), 3)
    ([0.05, 0.1], 0.075)
    """
    from scipy import stats

    for column in ("method", "mask", "regulons", "seed", metric):
        if column not in results:
            raise KeyError(f"results have no column {column!r} (expected the output of sct.bm.run).")
    frame = results.assign(_variant=_variants(results).to_numpy())
    names = list(dict.fromkeys(frame["_variant"]))
    if reference not in names:
        prefixed = [n for n in names if n.startswith((f"{reference} (", f"{reference} ["))]
        if not prefixed:
            raise ValueError(f"reference {reference!r} is not among the results' methods and masks: {names}.")
        reference = prefixed[0]
    if frame.duplicated(["_variant", "seed"]).any():
        raise ValueError("results hold several rows of one method, mask and seed: compare one run at a time.")
    values = frame.pivot(index="seed", columns="_variant", values=metric).apply(pd.to_numeric, errors="coerce")
    rows = []
    for name in names:
        if name == reference:
            continue
        both = values[[reference, name]].dropna().sort_index()
        diffs = (both[reference] - both[name]).to_numpy(dtype=float)
        if len(diffs) == 0:
            continue
        constant = len(diffs) < 2 or np.allclose(diffs, diffs[0])
        rows.append(
            {
                "reference": reference,
                "comparator": name,
                "n_pairs": len(diffs),
                "seeds": [int(s) for s in both.index],
                "diffs": diffs.tolist(),
                "mean": float(diffs.mean()),
                "sd": float(diffs.std(ddof=1)) if len(diffs) > 1 else np.nan,
                "wins": int((diffs >= TIE).sum()),
                "losses": int((diffs <= -TIE).sum()),
                "ties": int((np.abs(diffs) < TIE).sum()),
                "p_value": None if constant else float(stats.ttest_1samp(diffs, 0.0).pvalue),
            }
        )
    columns = ["reference", "comparator", "n_pairs", "seeds", "diffs", "mean", "sd", "wins", "losses", "ties"]
    return pd.DataFrame(rows, columns=[*columns, "p_value"])
