"""Training-step time of the default model on pbmc3k: fused sparse layer vs unfused CSR kernels vs gather.

Six minibatches of 64 pbmc3k cells (default model, CollecTRI GRN mask, float32), forward + backward, the
three paths alternated twice so that all see the same machine state. ``csr`` is the default (every
intermediate kept for backward); ``fused`` is the opt-in memory-lean layer
(:class:`~sctransformer_tools.nn._attention.FusedPairAttention`: a few cells and one head at a time, projections
recomputed in backward); the gather/scatter path is what devices without sparse CSR kernels run.

Usage (from the project root)::

    SCTRANSFORMER_TOOLS_DATA=../shared/data/regulons python benchmarks/model_step.py
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np

import sctransformer_tools as sct
from sctransformer_tools.nn import _attention

PBMC3K = Path(__file__).resolve().parents[2] / "shared" / "data" / "scrna" / "pbmc3k_seurat_labels.h5ad"


def main() -> None:
    warnings.simplefilter("ignore")
    adata = ad.read_h5ad(PBMC3K)
    sct.SCTransformer.setup_anndata(adata, labels_key="cell_type")
    model = sct.SCTransformer(adata)
    batches = list(model._make_data_loader(adata=adata, indices=np.arange(64 * 6), batch_size=64))
    module = model.module.train()

    def step(tensors) -> None:
        _, _, losses = module(tensors)
        losses.loss.backward()
        module.zero_grad(set_to_none=True)

    default = _attention.CSR_DEVICE_TYPES
    seconds = {"fused": [], "csr": [], "gather": []}
    for kernel in ("fused", "csr", "gather") * 2:
        _attention.CSR_DEVICE_TYPES = () if kernel == "gather" else default
        for block in module.blocks:
            block.attn.fused = kernel == "fused"
        step(batches[0])  # warm-up
        start = time.perf_counter()
        for tensors in batches:
            step(tensors)
        seconds[kernel].append(round((time.perf_counter() - start) / len(batches), 3))
    _attention.CSR_DEVICE_TYPES = default
    print(json.dumps({"step_s": seconds, "batch_size": 64, "cells": adata.n_obs}))


if __name__ == "__main__":
    main()
