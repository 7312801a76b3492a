"""Migration of the evaluation records: what two earlier commits did to them by hand, as a re-runnable script.

1. ``precision`` of scTransformer records made before the field existed (commits a14baf7 and 0063751 set it by
   hand). The 28 full-profile runs listed in :data:`FLOAT32_RUNS` were trained in sessions whose CPUs had no
   native bfloat16, where ``precision="auto"`` trained in float32; the 8 in :data:`BF16_RUNS` started in the
   session on an AVX512-BF16 machine before the field was recorded, where ``"auto"`` chose bf16-mixed (the
   invocations in ``evaluation_meta.json`` of 2026-12-02 say "native bf16: yes"). Quick-profile records keep no
   precision (they were never backfilled).
2. The invocation of 2026-12-02 16:52 that was killed before it could log itself (commit 7190245 added it by
   hand): :data:`STOPPED_INVOCATION`.

Both steps only fill what is missing, so running the script on the current files changes nothing::

    python benchmarks/migrations/precision_and_stopped_run.py            # rewrite docs/results in place
    python benchmarks/migrations/precision_and_stopped_run.py --check    # fail if a step would change a file
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results"

#: (dataset, mask, regulons, seed) of full-profile scTransformer runs trained in float32 (no native bf16).
FLOAT32_RUNS = [
    *[("darmanis2015", mask, "collectri", seed) for mask in ("grn", "random", "shuffled") for seed in (0, 1)],
    ("darmanis2015", "dense", "collectri", 0),
    *[("darmanis2015", mask, "dorothea_ABC", seed) for mask in ("grn", "shuffled") for seed in (0, 1)],
    *[("pbmc3k", mask, "collectri", seed) for mask in ("grn", "random", "shuffled") for seed in (0, 1, 2)],
    ("pbmc3k", "dense", "collectri", 0),
    ("pbmc3k", "dense", "collectri", 1),
    *[("pbmc3k", mask, "dorothea_ABC", seed) for mask in ("grn", "shuffled") for seed in (0, 1, 2)],
]
#: Full-profile scTransformer runs that started on the AVX512-BF16 machine before ``precision`` was recorded.
BF16_RUNS = [
    ("darmanis2015", "dense", "collectri", 1),
    *[("darmanis2015", mask, "collectri", 2) for mask in ("grn", "dense", "random", "shuffled")],
    *[("darmanis2015", mask, "dorothea_ABC", 2) for mask in ("grn", "shuffled")],
    ("pbmc3k", "dense", "collectri", 2),
]
STOPPED_INVOCATION = {
    "profile": "full",
    "command": "python benchmarks/evaluate.py --resume --datasets allen_m1 --seeds 0 --methods sctransformer "
    "--masks grn random shuffled grn@dorothea_ABC --umap-datasets allen_m1",
    "started": "2026-12-02T16:52:16+00:00",
    "wall_s": 660.0,
    "records_added": 1,
    "stopped": "killed at 17:03 after its grn run failed in the UMAP step (scanpy's approximate kNN on a scipy "
    "sparse array, fixed in 9431ae7); its error record was replaced when the same invocation was rerun",
    "machine": "2 CPU cores (x86_64, native bf16: yes), torch 2.13.0+cpu, 1 torch/BLAS thread(s)",
    "versions": {"sctransformer_tools": "0.1.0", "python": "3.11.7"},
}


def backfill_precision(records: list[dict]) -> int:
    """Set ``precision`` of the listed runs where it is missing; return how many records changed."""
    fill = dict.fromkeys(FLOAT32_RUNS, "32-true") | dict.fromkeys(BF16_RUNS, "bf16-mixed")
    changed = 0
    for record in records:
        if record.get("profile") != "full" or record.get("method") != "sctransformer":
            continue
        identity = (record["dataset"], record.get("mask"), record.get("regulons"), record["seed"])
        if identity in fill and record.get("precision") is None:
            record["precision"] = fill[identity]
            changed += 1
    return changed


def add_stopped_invocation(meta: dict) -> int:
    """Append :data:`STOPPED_INVOCATION` (invocations are logged as they finish), if it is missing."""
    invocations = meta.setdefault("invocations", [])
    if any(i.get("started") == STOPPED_INVOCATION["started"] for i in invocations):
        return 0
    invocations.append(dict(STOPPED_INVOCATION))
    return 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of evaluation.json and _meta.json")
    parser.add_argument("--check", action="store_true", help="only report; exit 1 if a file would change")
    args = parser.parse_args()
    records_path, meta_path = args.results / "evaluation.json", args.results / "evaluation_meta.json"
    records, meta = json.loads(records_path.read_text()), json.loads(meta_path.read_text())
    n_records, n_meta = backfill_precision(records), add_stopped_invocation(meta)
    print(f"precision set on {n_records} records; {n_meta} invocation added")
    if args.check:
        raise SystemExit(1 if n_records or n_meta else 0)
    if n_records:
        records_path.write_text(json.dumps(records, indent=1) + "\n")
    if n_meta:
        meta_path.write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main()
