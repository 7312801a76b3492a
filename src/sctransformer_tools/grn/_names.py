"""Gene names as compared across datasets and regulons: case, whitespace and Ensembl version suffixes."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

_ENSEMBL = re.compile(r"^ENS[A-Z]*[GT]\d{6,}(\.\d+)?$", re.IGNORECASE)
_VERSION = r"^(ENS[A-Z]*[GT]\d{6,})\.\d+$"


def gene_key(names) -> pd.Index:
    """Names as compared across datasets: stripped, upper case, Ensembl version suffix removed.

    Examples
    --------
    >>> from sctransformer_tools.grn import gene_key
    >>> gene_key(["Actb", "ENSG00000075624.17", " CD3E"]).tolist()
    ['ACTB', 'ENSG00000075624', 'CD3E']
    """
    keys = pd.Index(np.asarray(names, dtype=str)).str.strip().str.upper()
    return pd.Index(keys.str.replace(_VERSION, r"\1", regex=True, flags=re.IGNORECASE))


def looks_like_ensembl(names, share: float = 0.5) -> bool:
    """Whether most names (of the first 2,000) are Ensembl gene or transcript IDs.

    Examples
    --------
    >>> from sctransformer_tools.grn import looks_like_ensembl
    >>> looks_like_ensembl(["ENSG00000075624", "ENSG00000111640.15"]), looks_like_ensembl(["ACTB", "GAPDH"])
    (True, False)
    """
    names = pd.Index(np.asarray(names, dtype=str))
    return len(names) > 0 and float(np.mean([bool(_ENSEMBL.match(n)) for n in names[:2000]])) >= share


def looks_like_mouse(names, share: float = 0.5) -> bool:
    """Whether most alphabetic gene symbols (of the first 2,000) are written the mouse way (``Pax5``, not ``PAX5``).

    Examples
    --------
    >>> from sctransformer_tools.grn import looks_like_mouse
    >>> looks_like_mouse(["Pax5", "Cd19", "Actb"]), looks_like_mouse(["PAX5", "CD19", "ACTB"])
    (True, False)
    """
    names = [n for n in np.asarray(names, dtype=str)[:2000] if n[:1].isalpha() and not _ENSEMBL.match(n)]
    if not names:
        return False
    mouse = [n[0].isupper() and n[1:] == n[1:].lower() and n[1:].upper() != n[1:] for n in names if len(n) > 1]
    return bool(mouse) and float(np.mean(mouse)) >= share


def match_gene_names(query, reference) -> tuple[pd.Index, dict]:
    """Rename ``query`` genes to the ``reference``'s names where they differ only by case or an Ensembl version.

    Exact matches win; a query gene whose :func:`gene_key` equals exactly one reference gene's takes that
    name, unless another query gene already has it.

    Returns
    -------
    The renamed query names and counts: ``n_exact``, ``n_case_or_version`` and ``n_ambiguous`` (query
    genes whose key matches several reference genes or a reference gene already matched, left unmatched).

    Examples
    --------
    >>> from sctransformer_tools.grn import match_gene_names
    >>> names, report = match_gene_names(["Pax5", "CD19", "ENSG00000075624.17"], ["PAX5", "CD19", "ENSG00000075624"])
    >>> names.tolist(), report["n_case_or_version"]
    (['PAX5', 'CD19', 'ENSG00000075624'], 2)
    """
    query = pd.Index(np.asarray(query, dtype=str))
    reference = pd.Index(np.asarray(reference, dtype=str))
    exact = query.isin(reference)
    renamed = query.to_numpy(dtype=object).copy()
    reference_key = gene_key(reference)
    unique_keys = ~reference_key.duplicated(keep=False)
    by_key = pd.Series(reference[unique_keys], index=reference_key[unique_keys])
    taken = set(query[exact])
    n_fixed = n_ambiguous = 0
    candidates = np.flatnonzero(~exact)
    keys = gene_key(query[candidates])
    ambiguous_keys = set(reference_key[~unique_keys])
    for i, key in zip(candidates, keys, strict=True):
        target = by_key.get(key)
        if target is None:
            n_ambiguous += key in ambiguous_keys
            continue
        if target in taken:
            n_ambiguous += 1
            continue
        renamed[i] = target
        taken.add(target)
        n_fixed += 1
    report = {"n_exact": int(exact.sum()), "n_case_or_version": n_fixed, "n_ambiguous": n_ambiguous}
    return pd.Index(renamed), report


def positions(names, wanted) -> np.ndarray:
    """Position of each of ``wanted`` in ``names``: exact match first, then by :func:`gene_key`; -1 if absent.

    Examples
    --------
    >>> from sctransformer_tools.grn import positions
    >>> positions(["CD19", "Pax5"], ["PAX5", "CD19", "SPI1"]).tolist()
    [1, 0, -1]
    """
    names = pd.Index(np.asarray(names, dtype=str))
    wanted = pd.Index(np.asarray(wanted, dtype=str))
    pos = names.get_indexer(wanted)
    missing = pos < 0
    if missing.any():
        keyed = pd.Series(np.arange(len(names)), index=gene_key(names))
        keyed = keyed[~keyed.index.duplicated(keep="first")]
        alt = keyed.reindex(gene_key(wanted[missing])).to_numpy()
        pos[missing] = np.where(np.isnan(alt), -1, alt).astype(int)
    return pos.astype(int)
