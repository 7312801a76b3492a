"""Regulons (grn/_regulons.py): real CollecTRI / DoRothEA, tables and files, offline behaviour."""

from __future__ import annotations

import pandas as pd
import pytest

from sctransformer_tools import grn


def test_load_collectri_from_cache_matches_file(collectri):
    net = grn.load_regulons("collectri")
    assert list(net.columns[:3]) == ["source", "target", "weight"]
    assert len(net) == len(collectri) == 43_178
    assert set(net["weight"].unique()) == {1.0, -1.0}


def test_dorothea_levels_filter(collectri):  # collectri: the real files must be there (the fixture has no B level)
    abc = grn.load_regulons("dorothea")
    a = grn.load_regulons("dorothea", levels="A")
    assert set(abc["confidence"]) == {"A", "B", "C"}
    assert len(abc) == 13_223  # the README's count of levels A-C
    assert set(a["confidence"]) == {"A"} and len(a) < len(abc)
    with pytest.raises(ValueError, match="confidence letters"):
        grn.load_regulons("dorothea", levels="AZ")


def test_regulons_from_dataframe_and_files(tmp_path, collectri):
    sub = collectri.head(50)
    assert grn.load_regulons(sub).shape[0] == 50
    csv, tsv = tmp_path / "net.csv", tmp_path / "net.tsv"
    sub.to_csv(csv, index=False)
    sub.to_csv(tsv, index=False, sep="\t")
    for path in (csv, tsv, str(csv)):
        net = grn.load_regulons(path)
        assert net[["source", "target"]].equals(sub[["source", "target"]].reset_index(drop=True))


def test_regulon_table_errors(tmp_path):
    with pytest.raises(ValueError, match="lacks the column.*'source'.*rename"):
        grn.load_regulons(pd.DataFrame({"tf": ["PAX5"], "target": ["CD19"]}))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        grn.load_regulons(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="neither a known resource"):
        grn.load_regulons("trrustt")
    with pytest.raises(ValueError, match="missing source or target"):
        grn.load_regulons(pd.DataFrame({"source": ["PAX5", None], "target": ["CD19", "CD79A"]}))


def test_regulon_source_reads_names_files_and_sources(tmp_path):
    """One reading of regulon-set names for bm.run and the study (benchmarks/harness)."""
    assert grn.regulon_source("CollecTRI") == {"regulons": "collectri"}
    assert grn.regulon_source("dorothea") == {"regulons": "dorothea", "regulon_levels": "ABC"}
    assert grn.regulon_source("dorothea_ab", "Dorothea_AB") == {"regulons": "dorothea", "regulon_levels": "AB"}
    path = tmp_path / "mine.csv"
    path.write_text("source,target\nA,B\n")
    assert grn.regulon_source(str(path)) == {"regulons": str(path)}
    net = pd.DataFrame({"source": ["A"], "target": ["B"]})
    assert grn.regulon_source("mine", net)["regulons"] is net
    with pytest.raises(ValueError, match="Unknown regulon set 'trrust'"):
        grn.regulon_source("trrust")


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No cache (an empty cache folder) and no internet (every download fails), as on a fresh offline machine."""
    from sctransformer_tools.grn import _regulons

    calls = []

    def no_network(resource, organism):
        calls.append((resource, organism))
        raise ConnectionError("Failed to resolve 'zenodo.org'")

    monkeypatch.setenv(grn.DATA_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(_regulons, "_download", no_network)
    monkeypatch.setattr(_regulons, "_UNREACHABLE", {})
    return calls


def test_offline_collectri_falls_back_to_the_shipped_snapshot_in_one_log_line(offline, package_log, tmp_path):
    from sctransformer_tools.grn._snapshot import SNAPSHOT_DATE, read_snapshot

    net = grn.load_regulons("collectri")
    again = grn.load_regulons("collectri")
    lines = [r.getMessage() for r in package_log.records if "regulons" in r.getMessage()]
    assert len(lines) == 1, lines
    assert f"snapshot of {SNAPSHOT_DATE}" in lines[0] and "ConnectionError" in lines[0]
    assert "For the current release, run once with internet access" in lines[0] and grn.DATA_ENV in lines[0]
    assert offline == [("collectri", "human")]  # one try per process: the second call reads the snapshot at once
    expected = grn.validate_regulons(read_snapshot("collectri", "human"))
    pd.testing.assert_frame_equal(net, expected)
    pd.testing.assert_frame_equal(again, expected)
    assert len(net) == 43_178 and list(net.columns) == ["source", "target", "weight"]
    assert not (tmp_path / "cache").exists()  # the snapshot is not cached: online, the current release is fetched


def test_offline_dorothea_says_what_to_do(offline):
    for _ in range(2):  # the first failure and the later calls of the same process say the same
        with pytest.raises(RuntimeError, match=r"does not ship.*GPL-3.*'collectri' works offline.*cached in"):
            grn.load_regulons("dorothea")
    with pytest.raises(RuntimeError, match=r"SCTRANSFORMER_TOOLS_DATA to a folder holding 'collectri_mouse.csv.gz'"):
        grn.load_regulons("collectri", organism="mouse")  # no mouse snapshot ships


def test_online_download_is_cached_and_the_snapshot_left_alone(monkeypatch, tmp_path):
    from sctransformer_tools.grn import _regulons

    current = pd.DataFrame({"source": ["PAX5"], "target": ["CD19"], "weight": [1.0]})
    monkeypatch.setenv(grn.DATA_ENV, str(tmp_path))
    monkeypatch.setattr(_regulons, "_UNREACHABLE", {})
    monkeypatch.setattr(_regulons, "_download", lambda resource, organism: current)
    pd.testing.assert_frame_equal(grn.load_regulons("collectri"), current)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "collectri_human.csv.gz"), current)
