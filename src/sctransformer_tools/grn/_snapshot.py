"""The regulons that ship inside the package: a dated CollecTRI snapshot, read when no cache or download is at hand.

The file ``grn/data/collectri_human_<date>.csv.gz`` (columns ``source,target,weight``) is written by
``scripts/make_regulon_snapshot.py`` from decoupler's ``get_collectri(organism="human")`` output (the CollecTRI
release of Zenodo record 8192729); its provenance, citation and terms are in ``docs/installation.md``
("Regulons offline"). DoRothEA does not ship: its data are GPL-3 licensed, this package is BSD-3.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

import pandas as pd

#: Date of the shipped CollecTRI snapshot: the day decoupler's output it was taken from was saved.
SNAPSHOT_DATE = "2023-10-19"
#: Shipped snapshot file of each ``(resource, organism)``, in the package folder ``sctransformer_tools/grn/data``.
SNAPSHOTS = {("collectri", "human"): f"collectri_human_{SNAPSHOT_DATE}.csv.gz"}


def snapshot_file(resource: str, organism: str) -> Traversable | None:
    """The shipped snapshot of ``resource`` for ``organism`` (found with :mod:`importlib.resources`), or ``None``.

    Examples
    --------
    >>> from sctransformer_tools.grn._snapshot import snapshot_file
    >>> snapshot_file("collectri", "human").name
    'collectri_human_2023-10-19.csv.gz'
    >>> snapshot_file("dorothea", "human") is None
    True
    """
    name = SNAPSHOTS.get((resource, organism))
    if name is None:
        return None
    return files("sctransformer_tools.grn").joinpath("data", name)


def read_snapshot(resource: str, organism: str) -> pd.DataFrame | None:
    """The shipped snapshot as a table (``source``, ``target``, ``weight``), or ``None`` where none ships.

    Examples
    --------
    >>> from sctransformer_tools.grn._snapshot import read_snapshot
    >>> read_snapshot("collectri", "human").shape
    (43178, 3)
    """
    path = snapshot_file(resource, organism)
    if path is None:
        return None
    with path.open("rb") as handle:
        return pd.read_csv(handle, compression="gzip")
