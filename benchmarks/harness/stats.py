"""Paired statistics over records: reference minus comparator, seed by seed, per dataset and pooled."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from .records import main_regulons, order_frame, records_frame, variant_name

#: Differences smaller than this count as ties.
TIE = 5e-4


def paired_test(diffs: np.ndarray) -> float | None:
    """Two-sided paired t-test p-value of the differences (``None`` when undefined)."""
    from scipy import stats

    if len(diffs) < 2 or np.allclose(diffs, diffs[0]):
        return None
    return float(stats.ttest_1samp(diffs, 0.0).pvalue)


def difference_stats(diffs: np.ndarray) -> dict:
    """Count, mean, sd, wins/losses/ties (``|diff| < 5e-4``) and paired t-test p of paired differences.

    Examples
    --------
    >>> import numpy as np
    >>> from harness.stats import difference_stats
    >>> out = difference_stats(np.array([0.02, 0.03, 0.0]))
    >>> out["n_pairs"], round(out["mean"], 3), (out["wins"], out["losses"], out["ties"])
    (3, 0.017, (2, 0, 1))
    """
    return {
        "n_pairs": len(diffs),
        "mean": float(diffs.mean()),
        "sd": float(diffs.std(ddof=1)) if len(diffs) > 1 else np.nan,
        "wins": int((diffs >= TIE).sum()),
        "losses": int((diffs <= -TIE).sum()),
        "ties": int((np.abs(diffs) < TIE).sum()),
        "p_value": paired_test(diffs),
    }


def comparisons(frame: pd.DataFrame, main: str | None = None) -> list[tuple[dict, dict]]:
    """(reference, comparator) identities to pair within one dataset.

    ``grn`` against ``shuffled``, ``random`` and ``dense`` of the same regulons; ``grn`` of the main regulon set
    (:func:`~harness.records.main_regulons` with ``main`` preferred) against ``grn`` of every other set and
    against every peer.
    """
    sct = frame[frame["method"] == "sctransformer"]
    regs = list(dict.fromkeys(sct["regulons"].dropna()))
    pairs = []
    for reg in regs:
        ref = {"method": "sctransformer", "mask": "grn", "regulons": reg}
        for mask in ("shuffled", "random", "dense"):
            pairs.append((ref, {"method": "sctransformer", "mask": mask, "regulons": reg}))
    if regs:
        main = main_regulons(frame, main)
        ref = {"method": "sctransformer", "mask": "grn", "regulons": main}
        for reg in regs:
            if reg != main:
                pairs.append((ref, {"method": "sctransformer", "mask": "grn", "regulons": reg}))
        for peer in dict.fromkeys(frame.loc[frame["method"] != "sctransformer", "method"]):
            pairs.append((ref, {"method": peer, "mask": None, "regulons": None}))
    return pairs


def _select(frame: pd.DataFrame, ident: Mapping) -> pd.DataFrame:
    keep = np.ones(len(frame), dtype=bool)
    for k, v in ident.items():
        keep &= frame[k].isna().to_numpy() if v is None else (frame[k] == v).to_numpy()
    return frame[keep]


def paired_comparison(
    records: Iterable[Mapping], metric: str = "macro_f1", main_regulons: str | None = None
) -> pd.DataFrame:
    """GRN-masked scTransformer minus each control and peer, seed by seed (same split, same seed).

    Pairs, per profile and dataset: ``grn`` vs ``shuffled``, ``random`` and ``dense`` of the same
    regulons; ``grn`` of the main regulon set vs ``grn`` of every other regulon set and vs every peer.

    Parameters
    ----------
    records
        Evaluation records.
    metric
        Metric compared.
    main_regulons
        Regulon set whose ``grn`` model is compared with the peers and other sets (default: the set with the
        most scTransformer runs of the dataset).

    Returns
    -------
    One row per comparison: ``profile``, ``dataset``, ``reference``, ``comparator``, ``n_pairs``,
    ``diffs`` (reference - comparator per seed, in seed order), ``seeds``, ``mean``, ``sd``, ``wins``,
    ``losses``, ``ties`` (``|diff| < 5e-4``) and ``p_value`` (two-sided paired t-test; ``None`` below 2
    pairs).

    Examples
    --------
    >>> from harness.stats import paired_comparison
    >>> rec = lambda mask, seed, f1: {
    ...     "dataset": "d",
    ...     "method": "sctransformer",
    ...     "mask": mask,
    ...     "regulons": "collectri",
    ...     "seed": seed,
    ...     "macro_f1": f1,
    ... }
    >>> recs = [rec("grn", 0, 0.9), rec("grn", 1, 0.8), rec("shuffled", 0, 0.85), rec("shuffled", 1, 0.7)]
    >>> row = paired_comparison(recs).iloc[0]
    >>> row["comparator"], [round(d, 2) for d in row["diffs"]], int(row["wins"])
    ('shuffled (collectri)', [0.05, 0.1], 2)
    """
    frame = records_frame(records)
    columns = ["profile", "dataset", "reference", "comparator", "n_pairs", "diffs", "seeds", "mean", "sd"]
    columns += ["wins", "losses", "ties", "p_value"]
    if frame.empty or metric not in frame:
        return pd.DataFrame(columns=columns)
    frame = order_frame(frame)
    rows = []
    for (profile, dataset), group in frame.groupby(["profile", "dataset"], sort=False):
        for ref, comp in comparisons(group, main_regulons):
            a = _select(group, ref).drop_duplicates("seed", keep="last").set_index("seed")[metric]
            b = _select(group, comp).drop_duplicates("seed", keep="last").set_index("seed")[metric]
            both = pd.concat([a, b], axis=1, keys=["a", "b"]).apply(pd.to_numeric, errors="coerce").dropna()
            if both.empty:
                continue
            both = both.sort_index()
            diffs = (both["a"] - both["b"]).to_numpy(dtype=float)
            rows.append(
                {
                    "profile": profile,
                    "dataset": dataset,
                    "reference": variant_name(ref),
                    "comparator": variant_name(comp),
                    "diffs": diffs.tolist(),
                    "seeds": [int(s) for s in both.index],
                }
                | difference_stats(diffs)
            )
    return pd.DataFrame(rows, columns=columns)


def pooled_comparison(
    records: Iterable[Mapping], metric: str = "macro_f1", min_datasets: int = 2, main_regulons: str | None = None
) -> pd.DataFrame:
    """The paired differences of :func:`paired_comparison` pooled over datasets (one row per comparison).

    Each dataset x seed pair counts once, so a consistent small effect that no single dataset's few seeds
    can show may still show here; the per-dataset means tell whether one dataset carries it.

    Parameters
    ----------
    records
        Evaluation records.
    metric
        Metric compared.
    min_datasets
        Comparisons made on fewer datasets are left out.
    main_regulons
        As in :func:`paired_comparison`.

    Returns
    -------
    One row per profile x comparison: ``profile``, ``reference``, ``comparator``, ``datasets`` (names),
    ``dataset_means`` (mean difference per dataset), ``n_pairs``, ``mean``, ``sd``, ``wins``, ``losses``,
    ``ties``, ``p_value`` (two-sided t-test of the pooled differences) and ``sign_p`` (two-sided sign test
    of wins against losses).

    Examples
    --------
    >>> from harness.stats import pooled_comparison
    >>> rec = lambda d, mask, seed, f1: {
    ...     "dataset": d,
    ...     "method": "sctransformer",
    ...     "mask": mask,
    ...     "regulons": "collectri",
    ...     "seed": seed,
    ...     "macro_f1": f1,
    ... }
    >>> recs = [
    ...     rec(d, m, s, 0.8 + 0.01 * s + (m == "grn") * 0.02) for d in "ab" for m in ("grn", "random") for s in (0, 1)
    ... ]
    >>> row = pooled_comparison(recs).iloc[0]
    >>> row["comparator"], int(row["n_pairs"]), round(float(row["mean"]), 3), int(row["wins"])
    ('random (collectri)', 4, 0.02, 4)
    """
    from scipy import stats

    paired = paired_comparison(records, metric, main_regulons)
    columns = ["profile", "reference", "comparator", "datasets", "dataset_means", "n_pairs", "mean", "sd"]
    columns += ["wins", "losses", "ties", "p_value", "sign_p"]
    rows = []
    for (profile, ref, comp), group in paired.groupby(["profile", "reference", "comparator"], sort=False):
        if group["dataset"].nunique() < min_datasets:
            continue
        diffs = np.concatenate([np.asarray(d, dtype=float) for d in group["diffs"]])
        row = {
            "profile": profile,
            "reference": ref,
            "comparator": comp,
            "datasets": list(group["dataset"]),
            "dataset_means": [float(m) for m in group["mean"]],
        } | difference_stats(diffs)
        decided = row["wins"] + row["losses"]
        row["sign_p"] = float(stats.binomtest(row["wins"], decided).pvalue) if decided else None
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)
