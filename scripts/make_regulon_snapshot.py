"""Rebuild the CollecTRI snapshot that ships inside the package (re-runnable; the same input gives the same bytes).

The snapshot is the package's offline default for ``regulons="collectri"``
(:func:`sctransformer_tools.grn.load_regulons` reads it when no cache or download is at hand). It is written from
``../shared/data/regulons/collectri_human.csv.gz``: decoupler-py's ``get_collectri(organism="human")`` output as
saved on 2023-10-19 (the CollecTRI release of Zenodo record 8192729; provenance, citation and terms in
``docs/installation.md``, "Regulons offline")::

    python scripts/make_regulon_snapshot.py                     # reads ../shared/data/regulons
    python scripts/make_regulon_snapshot.py path/to/collectri_human.csv.gz

It keeps the columns ``source,target,weight`` (weights as floats, rows in the source's order) and writes a gzip
without a time stamp, so that rebuilding from the same file changes nothing in git.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # this checkout's package, installed or not

from sctransformer_tools.grn._snapshot import SNAPSHOTS  # noqa: E402

SOURCE = ROOT.parent / "shared" / "data" / "regulons" / "collectri_human.csv.gz"
TARGET = ROOT / "src" / "sctransformer_tools" / "grn" / "data" / SNAPSHOTS[("collectri", "human")]
COLUMNS = ["source", "target", "weight"]


def build(source: Path = SOURCE, target: Path = TARGET) -> pd.DataFrame:
    """Write the snapshot of ``source`` to ``target``; return its table."""
    net = pd.read_csv(source)
    missing = [c for c in COLUMNS if c not in net.columns]
    if missing:
        raise ValueError(f"{source} lacks the column(s) {missing}: expected decoupler's CollecTRI table {COLUMNS}.")
    net = net[COLUMNS].astype({"source": str, "target": str, "weight": float})
    if net.duplicated(["source", "target"]).any():
        raise ValueError(f"{source} repeats (source, target) pairs: expected one row per edge.")
    text = net.to_csv(index=False, lineterminator="\n").encode()
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=9, mtime=0) as out:
        out.write(text)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(buffer.getvalue())
    return net


def main(argv: list[str]) -> None:
    """Build the snapshot from ``argv[0]`` (default: the shared copy) and print what was written."""
    source = Path(argv[0]) if argv else SOURCE
    net = build(source)
    digest = hashlib.sha256(TARGET.read_bytes()).hexdigest()
    print(
        f"{TARGET.relative_to(ROOT)}: {len(net):,} edges, {net['source'].nunique():,} TFs, "
        f"{net['target'].nunique():,} targets, {TARGET.stat().st_size / 1e3:.0f} kB, sha256 {digest[:16]}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
