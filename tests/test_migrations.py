"""Records changed after the fact are changed by committed code: the migration reproduces the committed files."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location(
    "migration", ROOT / "benchmarks" / "migrations" / "precision_and_stopped_run.py"
)
migration = importlib.util.module_from_spec(spec)
spec.loader.exec_module(migration)


def test_precision_backfill_reproduces_the_committed_records():
    records = json.loads((ROOT / "docs" / "results" / "evaluation.json").read_text())
    listed = set(migration.FLOAT32_RUNS) | set(migration.BF16_RUNS)
    assert len(listed) == 36
    stripped = copy.deepcopy(records)
    for record in stripped:
        identity = (record["dataset"], record.get("mask"), record.get("regulons"), record["seed"])
        if record.get("profile") == "full" and record["method"] == "sctransformer" and identity in listed:
            record.pop("precision")
    assert migration.backfill_precision(stripped) == 36
    assert stripped == records
    assert migration.backfill_precision(records) == 0  # already applied: nothing changes


def test_stopped_invocation_reproduces_the_committed_meta():
    meta = json.loads((ROOT / "docs" / "results" / "evaluation_meta.json").read_text())
    without = copy.deepcopy(meta)
    without["invocations"] = [
        i for i in without["invocations"] if "stopped" not in i or "UMAP step" not in i["stopped"]
    ]
    assert migration.add_stopped_invocation(without) == 1
    # the migration appends; invocations logged after it was first run sit after it in the committed file
    assert sorted(without.pop("invocations"), key=json.dumps) == sorted(meta["invocations"], key=json.dumps)
    assert without == {k: v for k, v in meta.items() if k != "invocations"}
