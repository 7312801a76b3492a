"""Peak memory of train / predict / embed on h5ad files opened backed, as the number of cells grows.

Two files: the 76,533 Allen M1 nuclei of ``../shared/data/scrna/allen_m1_snrna_140genes.h5ad`` and a
1,000,000-cell file made by tiling those real nuclei (written to a temporary directory, deleted after).
Each run is a fresh process that opens the file backed (``X`` stays on disk), sets it up, trains the
default model for ``--train-batches`` minibatches, then predicts and embeds ``--predict-cells`` cells spread
over the file. The peak resident set size (Linux ``VmHWM``) is read after each phase. The same runs with
the files loaded into memory are the contrast.

Usage (from the project root)::

    SCTRANSFORMER_TOOLS_DATA=../shared/data/regulons python benchmarks/out_of_core.py \
        --out benchmarks/results/out_of_core.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALLEN = ROOT.parent / "shared" / "data" / "scrna" / "allen_m1_snrna_140genes.h5ad"


def _peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmHWM")


def worker(path: str, backed: bool, train_batches: int, predict_cells: int) -> dict:
    import warnings

    import anndata as ad
    import numpy as np

    import sctransformer_tools as sct

    warnings.simplefilter("ignore")
    record = {"file": Path(path).name, "backed": backed, "after_import_mb": _peak_mb()}
    start = time.perf_counter()
    adata = ad.read_h5ad(path, backed="r" if backed else None)
    record["cells"] = adata.n_obs
    sct.SCTransformer.setup_anndata(
        adata, labels_key="cell_type", batch_key="batch", library_size_key="total_counts_all_genes"
    )
    model = sct.SCTransformer(adata)
    record["setup_s"] = round(time.perf_counter() - start, 1)
    record["setup_mb"] = _peak_mb()
    start = time.perf_counter()
    model.train(
        max_epochs=1,
        enable_progress_bar=False,
        limit_train_batches=train_batches,
        limit_val_batches=train_batches // 10,
    )
    record["train_s"] = round(time.perf_counter() - start, 1)
    record["train_cells_per_s"] = round(train_batches * 64 / record["train_s"], 1)
    record["train_mb"] = _peak_mb()
    idx = np.linspace(0, adata.n_obs - 1, predict_cells).astype(int)
    start = time.perf_counter()
    model.predict(adata, indices=idx, inplace=False)
    record["predict_cells_per_s"] = round(predict_cells / (time.perf_counter() - start), 1)
    record["predict_mb"] = _peak_mb()
    model.get_latent_representation(adata, indices=idx, inplace=False)
    record["embed_mb"] = _peak_mb()
    return record


def tile(source: Path, n_cells: int, out: Path) -> None:
    """Write ``n_cells`` cells made by repeating the real cells of ``source``."""
    import warnings

    import anndata as ad
    import numpy as np

    warnings.filterwarnings("ignore", message="Observation names are not unique")
    adata = ad.read_h5ad(source)
    reps = -(-n_cells // adata.n_obs)
    idx = np.tile(np.arange(adata.n_obs), reps)[:n_cells]
    big = adata[idx].to_memory() if adata.isbacked else adata[idx].copy()
    big.obs_names = [f"cell{i}" for i in range(n_cells)]
    big.write_h5ad(out)


def run(path: Path, backed: bool, args) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        json.dumps([str(path), backed, args.train_batches, args.predict_cells]),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        raise RuntimeError(done.stderr[-2000:])
    record = json.loads(lines[-1])
    print(json.dumps(record), file=sys.stderr, flush=True)
    return record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=1_000_000, help="cells of the tiled file")
    parser.add_argument("--train-batches", type=int, default=200)
    parser.add_argument("--predict-cells", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(worker(*json.loads(args.worker))))
        return

    records = [run(ALLEN, False, args), run(ALLEN, True, args)]
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "tiled.h5ad"
        start = time.perf_counter()
        tile(ALLEN, args.cells, big)
        print(f"wrote {args.cells:,} cells in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        records.append(run(big, True, args))
        records.append(run(big, False, args))  # the contrast: the same million cells loaded into memory
    result = {"train_batches": args.train_batches, "predict_cells": args.predict_cells, "runs": records}
    text = json.dumps(result, indent=1)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
