"""Load TF -> target regulons: CollecTRI and DoRothEA through decoupler, or a user's own table."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ._snapshot import SNAPSHOT_DATE, read_snapshot

logger = logging.getLogger(__name__)

DATA_ENV = "SCTRANSFORMER_TOOLS_DATA"
RESOURCES = ("collectri", "dorothea")
DOROTHEA_LEVELS = "ABCD"
#: Resources whose download failed in this process, with the error: not retried, the snapshot is read instead.
_UNREACHABLE: dict[tuple[str, str], Exception] = {}


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

    if resource == "collectri":
        net = dc.op.collectri(organism=organism)
        return net[["source", "target", "weight"]]
    # keep every level decoupler serves and the sign only: levels are filtered at load time
    levels = list(DOROTHEA_LEVELS)
    net = dc.op.dorothea(organism=organism, levels=levels, dict_weights=dict.fromkeys(levels, 1))
    return net[["source", "target", "weight", "confidence"]]


def _offline_error(resource: str, organism: str, err: Exception) -> RuntimeError:
    """The error of a resource that could neither be read from the cache nor downloaded, naming every fix."""
    ships = (
        " DoRothEA does not ship with sctransformer-tools (its data are GPL-3 licensed); regulons='collectri' works "
        "offline with the CollecTRI snapshot that does."
        if resource == "dorothea"
        else ""
    )
    return RuntimeError(
        f"Could not download the {resource!r} regulons for organism {organism!r} through decoupler "
        f"({type(err).__name__}: {err}).{ships} Either connect to the internet once (the table is then cached in "
        f"{regulon_cache_dir()}), or set the environment variable {DATA_ENV} to a folder holding "
        f"'{resource}_{organism}.csv.gz' (columns source, target, weight"
        + (", confidence" if resource == "dorothea" else "")
        + "), or pass a DataFrame or a CSV/TSV path."
    )


def _fetch(resource: str, organism: str) -> pd.DataFrame:
    """Download ``resource`` and cache it; offline, the shipped snapshot (said in one log line) or a clear error.

    After one failed download the process does not retry: later calls read the snapshot without a new log line.
    """
    if (resource, organism) not in _UNREACHABLE:
        try:
            net = _download(resource, organism)
        except Exception as err:  # decoupler raises requests/HTTP/parsing errors of several kinds when offline
            _UNREACHABLE[resource, organism] = err
            snapshot = read_snapshot(resource, organism)
            if snapshot is None:
                raise _offline_error(resource, organism, err) from err
            logger.info(
                "Could not download the %r regulons (%s): using the %s %s snapshot of %s that ships with "
                "sctransformer-tools. For the current release, run once with internet access (it is then cached in "
                "%s) or set %s to a folder holding %s_%s.csv.gz.",
                resource,
                type(err).__name__,
                "CollecTRI" if resource == "collectri" else resource,
                organism,
                SNAPSHOT_DATE,
                regulon_cache_dir(),
                DATA_ENV,
                resource,
                organism,
            )
            return snapshot
        cache = _cache_file(resource, organism)
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            net.to_csv(cache, index=False)
        except OSError as err:  # a read-only cache must not stop the analysis
            logger.warning("Could not cache %s regulons in %s: %s", resource, cache, err)
        return net
    snapshot = read_snapshot(resource, organism)
    if snapshot is None:
        err = _UNREACHABLE[resource, organism]
        raise _offline_error(resource, organism, err) from err
    return snapshot


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

    ``"collectri"`` and ``"dorothea"`` are read, in this order, from

    1. the cache: ``<resource>_<organism>.csv.gz`` in :func:`regulon_cache_dir` (``$SCTRANSFORMER_TOOLS_DATA``,
       else ``~/.cache/sctransformer-tools``);
    2. decoupler (:func:`decoupler.op.collectri`, :func:`decoupler.op.dorothea`), which downloads the current
       release; the table is then cached, so that later calls work offline;
    3. offline, for ``"collectri"`` and ``organism="human"`` only: the snapshot that ships inside the package,
       said in one log line. It holds the 43,178 edges of decoupler's ``get_collectri(organism="human")`` as saved
       on 2023-10-19, the CollecTRI release of Zenodo record 8192729 (Müller-Dott et al. 2023, *Nucleic Acids
       Research* 51:10934; please cite it). Its repository states no license; third parties list it as CC-BY-4.0,
       and decoupler/OmniPath serve it under their "academic" license because some of its source databases
       restrict commercial use. DoRothEA does not ship (its data are GPL-3 licensed): offline, ``"dorothea"``
       needs the cache. Provenance and terms: the documentation's Installation page, "Regulons offline".

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
        net = pd.read_csv(cache) if cache.exists() else _fetch(resource, organism)
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


def regulon_source(name: str, source: str | os.PathLike | pd.DataFrame | None = None) -> dict:
    """The ``setup_anndata`` arguments of a named regulon set.

    The one reading of regulon-set names, used by :func:`sctransformer_tools.bm.run` and the repository's study
    (``benchmarks/``): ``"collectri"`` is CollecTRI; ``"dorothea_ABC"`` is DoRothEA at the confidence levels after
    the underscore (any of A-E; plain ``"dorothea"`` means A-C); a name that is an existing file is that file.
    Any other name must come with its ``source``; a ``source`` that only repeats the name reads the name.

    Parameters
    ----------
    name
        Name of the regulon set (case-insensitive for the named resources).
    source
        Where the set comes from when the name does not say: a DataFrame, a CSV/TSV path, or a resource name.

    Returns
    -------
    ``{"regulons": ...}``, plus ``"regulon_levels"`` for DoRothEA: keyword arguments of
    :meth:`~sctransformer_tools.SCTransformer.setup_anndata`.

    Examples
    --------
    >>> import sctransformer_tools as sct
    >>> sct.grn.regulon_source("collectri")
    {'regulons': 'collectri'}
    >>> sct.grn.regulon_source("dorothea_ABC"), sct.grn.regulon_source("DoRothEA")
    ({'regulons': 'dorothea', 'regulon_levels': 'ABC'}, {'regulons': 'dorothea', 'regulon_levels': 'ABC'})
    >>> sct.grn.regulon_source("mine", "regulons/mine.csv")
    {'regulons': 'regulons/mine.csv'}
    """
    if source is None or isinstance(source, str) and source.lower() == name.lower():
        low = name.lower()
        if low == "collectri":
            return {"regulons": "collectri"}
        match = re.fullmatch(r"dorothea(?:_([a-e]+))?", low)
        if match:
            return {"regulons": "dorothea", "regulon_levels": (match.group(1) or "abc").upper()}
        if Path(name).expanduser().exists():
            return {"regulons": name}
        raise ValueError(
            f"Unknown regulon set {name!r}: use 'collectri', 'dorothea_ABC' (levels A-E), a file, or "
            "regulons={name: DataFrame or path}."
        )
    return {"regulons": source}
