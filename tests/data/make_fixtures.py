"""Rebuild the regulon fixtures of the core test suite from the shared data (re-runnable).

The core tests run on scanpy's bundled ``pbmc68k_reduced`` (765 genes) and must run where ``../shared`` is
absent. They need regulons offline: this script keeps, of each shared regulon file, the edges whose TF and
target are both among those 765 genes (matched as the package matches them, ignoring case and versions).
For pbmc68k_reduced this subset is exactly what the full file gives: a panel keeps only edges with both ends
measured, and ``min_targets`` counts measured targets.

    python tests/data/make_fixtures.py            # reads ../shared/data/regulons, writes tests/data/regulons
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import scanpy as sc

from sctransformer_tools.grn import gene_key

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[2] / "shared" / "data" / "regulons"
FILES = ("collectri_human.csv.gz", "dorothea_human.csv.gz")


def main() -> None:
    genes = set(gene_key(sc.datasets.pbmc68k_reduced().raw.var_names))
    out = HERE / "regulons"
    out.mkdir(exist_ok=True)
    for name in FILES:
        net = pd.read_csv(SHARED / name)
        keep = gene_key(net["source"]).isin(genes) & gene_key(net["target"]).isin(genes)
        subset = net[keep].reset_index(drop=True)
        subset.to_csv(out / name, index=False)
        print(f"{name}: {len(subset):,} of {len(net):,} edges, {subset['source'].nunique()} TFs")


if __name__ == "__main__":
    main()
