"""The CollecTRI snapshot that ships inside the package (grn/_snapshot.py)."""

from __future__ import annotations

import pandas as pd

from sctransformer_tools import grn


def test_the_snapshot_is_package_data_found_by_importlib_resources():
    from importlib.resources import files

    from sctransformer_tools.grn._snapshot import SNAPSHOTS, snapshot_file

    name = SNAPSHOTS["collectri", "human"]
    data = files("sctransformer_tools.grn").joinpath("data", name)
    assert data.is_file() and snapshot_file("collectri", "human") == data
    assert 100_000 < len(data.read_bytes()) < 400_000  # about 200 KB gzipped


def test_the_snapshot_holds_the_shared_collectri_edges(collectri):  # skipped with a reason without ../shared
    from sctransformer_tools.grn._snapshot import read_snapshot

    snapshot = read_snapshot("collectri", "human")
    pd.testing.assert_frame_equal(snapshot, collectri[["source", "target", "weight"]].astype({"weight": float}))


def test_the_docs_name_the_snapshot_and_its_terms():
    from pathlib import Path

    from sctransformer_tools.grn._snapshot import SNAPSHOT_DATE

    installation = (Path(__file__).resolve().parents[2] / "docs" / "installation.md").read_text()
    for text in (installation, grn.load_regulons.__doc__):
        text = " ".join(text.split())
        for fact in (SNAPSHOT_DATE, "8192729", "Müller-Dott", "CC-BY-4.0", "academic", "GPL-3"):
            assert fact in text, fact
