"""Load TF -> target regulons: CollecTRI and DoRothEA through decoupler, or a user's own table."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

DATA_ENV = "SCTRANSFORMER_TOOLS_DATA"
RESOURCES = ("collectri", "dorothea")
DOROTHEA_LEVELS = "ABCD"


def regulon_cache_dir() -> Path:
    """Folder that caches downloaded regulons.

    ``$SCTRANSFORMER_TOOLS_DATA`` when set, else ``~/.cache/sctransformer-tools``.

    Returns
    -------
    The cache folder (not created here).

    Examples
    --------
    >>> import sctransformer_tools as sct
    >>> sct.grn.regulon_cache_dir().name != ""
    True
    """
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "sctransformer-tools"


def _cache_file(resource: str, organism: str) -> Path:
    return regulon_cache_dir() / f"{resource}_{organism}.csv.gz"


def _download(resource: str, organism: str) -> pd.DataFrame:
    """Fetch a resource through decoupler (needs internet) in the cache's column layout."""
    import decoupler as dc

    try:
        if resource == "collectri":
            net = dc.op.collectri(organism=organism)
            net = net[["source", "target", "weight"]]
        else:
            # keep every level decoupler serves and the sign only: levels are filtered at load time
            levels = list(DOROTHEA_LEVELS)
            net = dc.op.dorothea(organism=organism, levels=levels, dict_weights=dict.fromkeys(levels, 1))
            net = net[["source", "target", "weight", "confidence"]]
    except Exception as err:  # decoupler raises requests/HTTP errors of several kinds when offline
        raise RuntimeError(
            f"Could not download the {resource!r} regulons for organism {organism!r} through decoupler "
            f"({type(err).__name__}: {err}). Either connect to the internet once (the table is then cached in "
            f"{regulon_cache_dir()}), or set the environment variable {DATA_ENV} to a folder holding "
            f"'{resource}_{organism}.csv.gz' (columns source, target, weight), or pass a DataFrame or a CSV/TSV path."
        ) from err
    return net


def _read_table(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(
            f"Regulon file {str(path)!r} does not exist. Pass an existing CSV/TSV file with columns 'source' and "
            f"'target' (and optionally 'weight'), a DataFrame, or one of {RESOURCES}."
        )
    name = path.name.lower().removesuffix(".gz")
    sep = "\t" if name.endswith((".tsv", ".txt")) else ","
    return pd.read_csv(path, sep=sep)


def validate_regulons(net: pd.DataFrame, name: str = "regulons") -> pd.DataFrame:
    """Check a regulon table and bring it to the package's layout.

    Parameters
    ----------
    net
        Long table with one row per TF -> target edge: columns ``source`` (the TF) and ``target``,
        optionally ``weight`` (sign or strength; 1.0 when absent) and ``confidence``.
    name
        What to call the table in error messages.

    Returns
    -------
    A new DataFrame with string ``source`` and ``target``, float ``weight``, other columns kept,
    one row per (source, target) pair.

    Examples
    --------
    >>> import pandas as pd
    >>> import sctransformer_tools as sct
    >>> net = pd.DataFrame({"source": ["PAX5", "PAX5"], "target": ["CD19", "MS4A1"]})
    >>> sct.grn.validate_regulons(net)["weight"].tolist()
    [1.0, 1.0]
    """
    if not isinstance(net, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame, got {type(net).__name__}.")
    missing = [c for c in ("source", "target") if c not in net.columns]
    if missing:
        hint = ""
        for alt_source in ("tf", "TF", "regulator", "source_genesymbol"):
            if alt_source in net.columns:
                hint = f" It has a column {alt_source!r}: rename it with `net.rename(columns={{{alt_source!r}: 'source'}})`."
        raise ValueError(
            f"{name} lacks the column(s) {missing}; it has {list(net.columns)}. A regulon table needs one row per "
            f"edge with columns 'source' (the transcription factor) and 'target' (the regulated gene), as in "
            f"decoupler.{hint}"
        )
    if len(net) == 0:
        raise ValueError(f"{name} has no rows: a regulon table needs at least one TF -> target edge.")
    net = net.copy()
    bad = net["source"].isna() | net["target"].isna()
    if bad.any():
        raise ValueError(
            f"{name} has {int(bad.sum())} row(s) with a missing source or target (first at row {int(np.flatnonzero(bad)[0])}). "
            "Drop them first, e.g. `net.dropna(subset=['source', 'target'])`."
        )
    net["source"] = net["source"].astype(str)
    net["target"] = net["target"].astype(str)
    if "weight" not in net.columns:
        net["weight"] = 1.0
    weight = pd.to_numeric(net["weight"], errors="coerce")
    if weight.isna().any() or not np.isfinite(weight.to_numpy()).all():
        raise ValueError(f"{name}['weight'] must be finite numbers; {int((~np.isfinite(weight)).sum())} rows are not.")
    net["weight"] = weight.astype(float)
    dup = net.duplicated(["source", "target"])
    if dup.any():
        logger.warning("%s: %d duplicated (source, target) rows; keeping the first of each.", name, int(dup.sum()))
        net = net[~dup]
    return net.reset_index(drop=True)


def load_regulons(
    regulons: str | os.PathLike | pd.DataFrame = "collectri",
    *,
    organism: str = "human",
    levels: str | list[str] = "ABC",
) -> pd.DataFrame:
    """Load TF -> target regulons as a long table.

    ``"collectri"`` and ``"dorothea"`` come from decoupler (:func:`decoupler.op.collectri`,
    :func:`decoupler.op.dorothea`), which downloads them; the result is cached on disk in
    :func:`regulon_cache_dir` so that later calls work offline.

    Parameters
    ----------
    regulons
        ``"collectri"``, ``"dorothea"``, a DataFrame with columns ``source``, ``target`` (and
        optionally ``weight``), or a path to a CSV/TSV file with those columns.
    organism
        Organism of the resource (``"human"``, ``"mouse"``); ignored for tables and files.
    levels
        DoRothEA confidence levels to keep (``"A"`` most confident to ``"D"``); decoupler's default
        is ``"ABC"``. Ignored for other inputs.

    Returns
    -------
    DataFrame with columns ``source``, ``target``, ``weight`` (the sign of regulation for CollecTRI and
    DoRothEA), and ``confidence`` for DoRothEA.

    Examples
    --------
    >>> import sctransformer_tools as sct
    >>> net = sct.grn.load_regulons("collectri")
    >>> net.columns.tolist()
    ['source', 'target', 'weight']
    """
    if isinstance(regulons, pd.DataFrame):
        return validate_regulons(regulons, name="the regulon DataFrame")
    if isinstance(regulons, str) and regulons.lower() in RESOURCES:
        resource = regulons.lower()
        cache = _cache_file(resource, organism)
        if cache.exists():
            net = pd.read_csv(cache)
        else:
            net = _download(resource, organism)
            try:
                cache.parent.mkdir(parents=True, exist_ok=True)
                net.to_csv(cache, index=False)
            except OSError as err:  # a read-only cache must not stop the analysis
                logger.warning("Could not cache %s regulons in %s: %s", resource, cache, err)
        if resource == "dorothea":
            if "confidence" not in net.columns:
                raise ValueError(f"The cached DoRothEA table {cache} has no 'confidence' column; delete it to refetch.")
            wanted = sorted(set(levels))
            unknown = set(wanted) - set("ABCDE")
            if unknown:
                raise ValueError(f"levels must be DoRothEA confidence letters A-E, got {sorted(unknown)}.")
            net = net[net["confidence"].isin(wanted)]
        return validate_regulons(net, name=f"{resource} ({organism})")
    if isinstance(regulons, str | os.PathLike):
        path = Path(regulons).expanduser()
        if isinstance(regulons, str) and not path.suffix and not path.exists():
            raise ValueError(
                f"regulons={regulons!r} is neither a known resource {RESOURCES} nor an existing file. "
                "Pass 'collectri', 'dorothea', a DataFrame or a CSV/TSV path."
            )
        return validate_regulons(_read_table(path), name=f"regulon file {path.name!r}")
    raise TypeError(f"regulons must be one of {RESOURCES}, a DataFrame or a file path, got {type(regulons).__name__}.")
