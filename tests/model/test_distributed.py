"""Data-parallel training through Lightning's DDP strategy: 2 CPU processes match 1 process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, os, sys, warnings
    import anndata as ad, numpy as np
    from sklearn.metrics import f1_score
    from sklearn.model_selection import train_test_split
    import sctransformer_tools as sct

    warnings.simplefilter("ignore")
    data, devices, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    adata = ad.read_h5ad(data)
    train_idx, test_idx = train_test_split(
        np.arange(adata.n_obs), test_size=0.2, stratify=adata.obs["cell_type"], random_state=0
    )
    ref, test = adata[train_idx].copy(), adata[test_idx].copy()
    sct.SCTransformer.setup_anndata(ref, labels_key="cell_type", regulons="collectri")
    model = sct.SCTransformer(ref, n_top_genes=500)
    strategy = {"strategy": "ddp"} if devices > 1 else {}
    # the same number of optimiser steps either way: each of 2 processes reads half the cells;
    # plain weights (no EMA), whose average would lag behind in so short a run
    model.train(max_epochs=8, batch_size=64 // devices, accelerator="cpu", devices=devices,
                weight_averaging=False, enable_progress_bar=False, **strategy)
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        sct.SCTransformer.prepare_query_anndata(test, model)
        pred = model.predict(test)
        f1 = f1_score(test.obs["cell_type"].astype(str), pred, average="macro")
        with open(out, "w") as fh:
            accuracy = float((pred == test.obs["cell_type"].astype(str)).mean())
            json.dump({"f1": f1, "accuracy": accuracy, "epochs": len(model.history["train_loss"])}, fh)
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="DDP on CPU processes is exercised on Linux")
def test_two_cpu_processes_reach_the_quality_of_one(tmp_path, pbmc3k_path):
    script = tmp_path / "train_ddp.py"
    script.write_text(SCRIPT)
    results = {}
    for devices in (1, 2):
        out = tmp_path / f"result_{devices}.json"
        env = dict(os.environ, OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 2) // devices)))
        done = subprocess.run(
            [sys.executable, str(script), str(pbmc3k_path), str(devices), str(out)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        results[devices] = json.loads(out.read_text())
    assert results[1]["epochs"] == results[2]["epochs"] == 8
    # one process reaches ~0.87 macro-F1 in these 8 epochs; two processes must match it
    assert results[1]["f1"] > 0.75, results
    assert abs(results[2]["f1"] - results[1]["f1"]) < 0.08, results
    assert abs(results[2]["accuracy"] - results[1]["accuracy"]) < 0.05, results


PRETRAIN_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, warnings
    import sctransformer_tools as sct

    warnings.simplefilter("ignore")
    devices, out = int(sys.argv[1]), sys.argv[2]
    adata = sct.ds.pbmc68k_reduced()
    sct.SCTransformer.setup_anndata(adata, labels_key="bulk_labels")
    model = sct.SCTransformer(adata, d_model=16, n_layers=1, n_heads=2, n_top_genes=0)
    strategy = {"strategy": "ddp"} if devices > 1 else {}
    model.pretrain(masking="mam", max_epochs=4, batch_size=32 // devices, accelerator="cpu", devices=devices,
                   enable_progress_bar=False, **strategy)
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        history = {k: [float(x) for x in v.to_numpy().ravel()] for k, v in model.pretraining_history_.items()}
        with open(out, "w") as fh:
            json.dump({"history": history, "trained": model.is_trained_, "done": model.pretraining_}, fh, default=str)
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="DDP on CPU processes is exercised on Linux")
def test_pretrain_runs_data_parallel(tmp_path):
    """``pretrain`` goes through the same Lightning path as ``train``: with 2 DDP processes it learns."""
    script = tmp_path / "pretrain_ddp.py"
    script.write_text(PRETRAIN_SCRIPT)
    out = tmp_path / "pretrain_2.json"
    done = subprocess.run(
        [sys.executable, str(script), "2", str(out)],
        cwd=tmp_path,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    mse = result["history"]["validation_mse"]
    assert len(mse) == 4 and mse[-1] < 0.85 * mse[0], mse  # the reconstruction is learned
    assert not result["trained"] and result["done"]["masking"] == "mam"
