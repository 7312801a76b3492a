"""Training-step time of the default model on pbmc3k: fused sparse layer vs unfused CSR kernels vs gather.

Six minibatches of 64 pbmc3k cells (default model, CollecTRI GRN mask, float32), forward + backward, the
three paths alternated twice so that all see the same machine state. ``csr`` is the default (every
intermediate kept for backward); ``fused`` is the opt-in memory-lean layer
(:class:`~sctransformer_tools.nn.MaskedMultiheadAttention` with ``fused=True``: a few cells and one head at a time,
projections recomputed in backward); the gather/scatter path is what devices without sparse CSR kernels run.

Usage (from the project root)::

    SCTRANSFORMER_TOOLS_DATA=../shared/data/regulons python benchmarks/model_step.py
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np

import sctransformer_tools as sct

PBMC3K = Path(__file__).resolve().parents[2] / "shared" / "data" / "scrna" / "pbmc3k_seurat_labels.h5ad"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=PBMC3K, help="h5ad of counts (default: pbmc3k)")
    parser.add_argument("--labels-key", default="cell_type")
    parser.add_argument("--batches", type=int, default=6, help="minibatches of 64 cells per path and round")
    parser.add_argument("--rounds", type=int, default=2, help="times the three paths are alternated")
    parser.add_argument("--model-kwargs", type=json.loads, default={}, help="JSON: SCTransformer arguments")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    adata = ad.read_h5ad(args.data)
    sct.SCTransformer.setup_anndata(adata, labels_key=args.labels_key)
    model = sct.SCTransformer(adata, **args.model_kwargs)
    batches = list(model._make_data_loader(adata=adata, indices=np.arange(64 * args.batches), batch_size=64))
    module = model.module.train()

    def step(tensors) -> None:
        module.loss(tensors).loss.backward()  # the classification loss, as training computes it
        module.zero_grad(set_to_none=True)

    seconds = {"fused": [], "csr": [], "gather": []}
    for kernel in ("fused", "csr", "gather") * args.rounds:
        for block in module.blocks:
            block.attn.fused = kernel == "fused"
        with sct.nn.sparse_kernels("gather" if kernel == "gather" else "csr"):
            step(batches[0])  # warm-up
            start = time.perf_counter()
            for tensors in batches:
                step(tensors)
        seconds[kernel].append(round((time.perf_counter() - start) / len(batches), 3))
    print(json.dumps({"step_s": seconds, "batch_size": 64, "cells": adata.n_obs}))


if __name__ == "__main__":
    main()
