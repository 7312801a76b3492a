"""Evaluation records: one flat dict per dataset x method x mask x regulons x seed, stored as a JSON list.

Also how records are read back as a table (:func:`records_frame`), named (:func:`variant_name`) and ordered
(:func:`order_frame`) by the statistics, figures and report.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

#: Keys every record has, in this order (``None`` where a metric does not apply).
RECORD_KEYS = (
    "dataset",
    "method",
    "mask",
    "regulons",
    "seed",
    "accuracy",
    "macro_f1",
    "balanced_accuracy",
    "silhouette",
    "ari",
    "nmi",
    "attention_auroc",
    "train_s",
    "peak_mb",
)

#: Keys that identify a run; a new record with the same identity replaces the old one.
IDENTITY_KEYS = ("profile", "dataset", "method", "mask", "regulons", "seed")

#: How metrics are named in tables and figures.
HEADERS = {
    "macro_f1": "macro-F1",
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced acc.",
    "rare_f1": "rare-type F1",
    "silhouette": "silhouette",
    "ari": "ARI",
    "nmi": "NMI",
    "attention_auroc": "attention AUROC",
    "attention_auroc_null": "AUROC null",
    "train_s": "train s",
    "peak_mb": "peak MB",
    "peak_delta_mb": "MB rise",
}
#: Profiles in report order (others between full and quick).
PROFILE_ORDER = {"defaults": 0, "unlabelled": 1, "mapping": 2, "no_tokens": 3, "full": 4, "custom": 5, "quick": 6}


def _clean(value):
    """JSON-safe scalars: numpy -> Python, NaN/inf -> None, floats rounded to 4 decimals."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return None if not math.isfinite(value) else round(value, 4)
    return value


def make_record(**fields) -> dict:
    """A record with every key of :data:`RECORD_KEYS` (missing ones ``None``), extra fields after them.

    Parameters
    ----------
    **fields
        Values; ``dataset``, ``method`` and ``seed`` are required.

    Returns
    -------
    JSON-safe dict (numpy scalars converted, NaN -> ``None``, floats rounded to 4 decimals).

    Examples
    --------
    >>> from harness.records import RECORD_KEYS, make_record
    >>> rec = make_record(dataset="d", method="logistic_regression", seed=0, accuracy=0.912345, n_test=10)
    >>> list(rec)[: len(RECORD_KEYS)] == list(RECORD_KEYS), rec["accuracy"], rec["mask"], rec["n_test"]
    (True, 0.9123, None, 10)
    """
    missing = [k for k in ("dataset", "method", "seed") if fields.get(k) is None]
    if missing:
        raise ValueError(f"A record needs {missing}.")
    record = {k: _clean(fields.get(k)) for k in RECORD_KEYS}
    record.update({k: _clean(v) for k, v in fields.items() if k not in record})
    return record


def record_identity(record: Mapping) -> tuple:
    """The identity of a record's run (:data:`IDENTITY_KEYS`), for replacing and resuming."""
    return tuple(record.get(k) for k in IDENTITY_KEYS)


def run_tag(record: Mapping) -> str:
    """File-name tag of a run: ``dataset_method_mask_regulons_seed`` (``-`` for missing values).

    Examples
    --------
    >>> from harness.records import run_tag
    >>> run_tag({"dataset": "pbmc3k", "method": "scanvi", "mask": None, "regulons": None, "seed": 0})
    'pbmc3k_scanvi_-_-_0'
    """

    def text(value) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        return str(int(value)) if isinstance(value, float | np.floating) and float(value).is_integer() else str(value)

    return "_".join(text(record.get(k)) for k in ("dataset", "method", "mask", "regulons", "seed"))


def umap_file(umap_dir: str | os.PathLike, record: Mapping) -> Path:
    """Where a run's test-cell UMAP is saved: ``umap_dir/<profile>/<run_tag>.npz``.

    The profile is part of the path so that a quick run never stands in for a full one of the same tag.

    Examples
    --------
    >>> from harness.records import umap_file
    >>> umap_file(
    ...     "umap",
    ...     {
    ...         "profile": "full",
    ...         "dataset": "pbmc3k",
    ...         "method": "sctransformer",
    ...         "mask": "grn",
    ...         "regulons": "collectri",
    ...         "seed": 1,
    ...     },
    ... ).as_posix()
    'umap/full/pbmc3k_sctransformer_grn_collectri_1.npz'
    """
    profile = record.get("profile") or "custom"
    return Path(umap_dir) / str(profile) / f"{run_tag(record)}.npz"


def load_records(path: str | os.PathLike) -> list[dict]:
    """Records of a JSON file (``[]`` when it does not exist).

    Parameters
    ----------
    path
        File written by :func:`save_records`.

    Returns
    -------
    The list of records.
    """
    path = Path(path)
    if not path.exists():
        return []
    data = json.loads(path.read_text() or "[]")
    if not isinstance(data, list):
        raise ValueError(f"{path} does not hold a JSON list of records.")
    return data


def save_records(path: str | os.PathLike, records: Iterable[Mapping]) -> None:
    """Write records as a JSON list, atomically (a crash never leaves half a file).

    Parameters
    ----------
    path
        Output file.
    records
        Records to write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps([_clean(dict(r)) for r in records], indent=1) + "\n")
    tmp.replace(path)


def merge_records(old: Iterable[Mapping], new: Iterable[Mapping]) -> list[dict]:
    """``old`` with ``new`` appended; a new record replaces an old one of the same identity (in place).

    Parameters
    ----------
    old, new
        Record lists.

    Returns
    -------
    The merged list.

    Examples
    --------
    >>> from harness.records import merge_records
    >>> old = [{"dataset": "d", "method": "m", "seed": 0, "accuracy": 0.5}]
    >>> new = [{"dataset": "d", "method": "m", "seed": 0, "accuracy": 0.7}, {"dataset": "d", "method": "m", "seed": 1}]
    >>> [(r["seed"], r.get("accuracy")) for r in merge_records(old, new)]
    [(0, 0.7), (1, None)]
    """
    merged = [dict(r) for r in old]
    index = {record_identity(r): i for i, r in enumerate(merged)}
    for rec in new:
        key = record_identity(rec)
        if key in index:
            merged[index[key]] = dict(rec)
        else:
            index[key] = len(merged)
            merged.append(dict(rec))
    return merged


def append_record(path: str | os.PathLike, record: Mapping) -> list[dict]:
    """Add one record to a JSON records file (replacing a record of the same run) and return all records.

    Parameters
    ----------
    path
        Records file (created if absent).
    record
        The new record.

    Returns
    -------
    Every record now in the file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):  # several evaluation processes may share one file
        records = merge_records(load_records(path), [record])
        save_records(path, records)
    return records


def append_invocation(path: str | os.PathLike, entry: Mapping) -> dict:
    """Add one invocation's summary to the ``invocations`` list of a JSON metadata file, under its lock.

    Parameters
    ----------
    path
        Metadata file (created if absent).
    entry
        What the invocation ran (command, start, wall time, records added, machine).

    Returns
    -------
    The metadata now in the file.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from harness.records import append_invocation
    >>> meta = pathlib.Path(tempfile.mkdtemp()) / "meta.json"
    >>> _ = append_invocation(meta, {"command": "a"})
    >>> [m["command"] for m in append_invocation(meta, {"command": "b"})["invocations"]]
    ['a', 'b']
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):  # several evaluation processes may finish at once
        meta = json.loads(path.read_text()) if path.exists() else {}
        meta.setdefault("invocations", []).append(dict(entry))
        path.write_text(json.dumps(meta, indent=1) + "\n")
    return meta


@contextlib.contextmanager
def _locked(path: Path):
    """Exclusive advisory lock on ``path.lock`` (POSIX ``flock``; a no-op where it is unavailable)."""
    try:
        import fcntl
    except ImportError:  # Windows: a single process is assumed
        yield
        return
    with path.with_suffix(path.suffix + ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ------------------------------------------------------------------------------------ records as a table


def numeric(frame: pd.DataFrame, column: str) -> pd.Series:
    """A column as floats (NaN where missing; all NaN when the column is absent)."""
    if column not in frame:
        return pd.Series(np.nan, index=frame.index, dtype=float)
    return pd.to_numeric(frame[column], errors="coerce").astype(float)


def variant_name(record: Mapping) -> str:
    """Short name of a record's model: ``"grn (collectri)"`` for scTransformer, the peer's name otherwise.

    Parameters
    ----------
    record
        An evaluation record.

    Returns
    -------
    The name.

    Examples
    --------
    >>> from harness.records import variant_name
    >>> variant_name({"method": "sctransformer", "mask": "grn", "regulons": "collectri"})
    'grn (collectri)'
    >>> variant_name({"method": "scanvi", "mask": None, "regulons": None})
    'scanvi'
    """
    if record.get("method") == "sctransformer":
        return f"{record.get('mask')} ({record.get('regulons')})"
    return str(record.get("method"))


def records_frame(records: Iterable[Mapping]) -> pd.DataFrame:
    """Records as a DataFrame with a ``variant`` column (failed runs, with ``error``, left out).

    Parameters
    ----------
    records
        Evaluation records.

    Returns
    -------
    One row per successful run.
    """
    frame = pd.DataFrame([dict(r) for r in records])
    if frame.empty:
        return frame
    if "error" in frame:
        frame = frame[frame["error"].isna()]
    if "profile" not in frame:
        frame["profile"] = "custom"
    frame["profile"] = frame["profile"].fillna("custom")
    frame["variant"] = [variant_name(r) for r in frame.to_dict("records")]
    return frame.reset_index(drop=True)


def order_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Stable row order: datasets as first seen, scTransformer masks first (grn, controls), then peers."""
    mask_rank = {"grn": 0, "shuffled": 1, "random": 2, "dense": 3}
    method_rank = {"sctransformer": 0, "logistic_regression": 1, "celltypist": 2, "scanvi": 3}
    datasets = {d: i for i, d in enumerate(dict.fromkeys(frame["dataset"]))}
    regs = {r: i for i, r in enumerate(dict.fromkeys(frame["regulons"].dropna()))}
    key = pd.DataFrame(
        {
            "p": frame["profile"].map(lambda p: PROFILE_ORDER.get(p, PROFILE_ORDER["custom"])),
            "d": frame["dataset"].map(datasets),
            "m": frame["method"].map(lambda m: method_rank.get(m, 9)),
            "r": frame["regulons"].map(lambda r: regs.get(r, -1)),
            "k": frame["mask"].map(lambda m: mask_rank.get(m, -1)),
        }
    )
    return frame.loc[key.sort_values(["p", "d", "m", "r", "k"], kind="stable").index]


def main_regulons(frame: pd.DataFrame, preferred: str | None = None) -> str | None:
    """The regulon set the other models are compared with: ``preferred`` when the records have it, else the set
    with the most scTransformer runs (the first seen on a tie); ``None`` without scTransformer runs.

    Examples
    --------
    >>> import pandas as pd
    >>> from harness.records import main_regulons
    >>> frame = pd.DataFrame({"method": ["sctransformer"] * 3, "regulons": ["dorothea_ABC", "trrust", "trrust"]})
    >>> main_regulons(frame), main_regulons(frame, "dorothea_ABC"), main_regulons(frame, "collectri")
    ('trrust', 'dorothea_ABC', 'trrust')
    """
    if frame.empty or "regulons" not in frame:
        return None
    regs = frame.loc[frame["method"] == "sctransformer", "regulons"].dropna()
    if regs.empty:
        return None
    if preferred is not None and preferred in set(regs):
        return preferred
    counts = regs.value_counts(sort=False)
    return str(counts.index[int(np.argmax(counts.to_numpy()))])
