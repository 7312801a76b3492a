"""Does MAM's reward make it prefer highly expressed genes by construction? Raw loss vs per-gene relative loss.

A cheap check of the reward's design (issue 24, item 2), not a benchmark of what pretraining is worth: a tiny
scTransformer (d_model 16, 1 layer) is pretrained on scanpy's ``pbmc68k_reduced`` with MAM rewarded by the raw
per-token loss (``reward="raw"``) and by the loss relative to the gene's running mean loss (``"relative"``, the
default), and with the shuffled-reward control; then ``model.get_masking_preference`` (Monte-Carlo inclusion rates,
128 draws per cell, seeded by the run's seed) gives each gene's ratio to uniform masking, and the Spearman correlation of that ratio with the
gene's mean log-normalised expression (over the cells expressing it) and its detection rate is printed per arm and
seed, for genes expressed in at least 2% of the cells. Uniform masking is the reference (its ratio is 1 up to
Monte-Carlo noise). ``spearman_loss_expression`` (relative-reward arms) correlates each gene's running mean loss,
the raw reward it earns on average, with its expression.

Besides the Spearman correlations of the ratio with expression (``rho_expression``) and detection, it prints the
correlation of the ratio with the gene's running mean loss (``rho_gene_loss``: does the policy follow the raw
loss?), the correlation of that running loss with expression (``rho_loss_expression``: how much the raw reward
is expression), and the share of the 20 most often masked genes among the top decile of expression.

Usage (from the project root; pbmc68k: about ten seconds per arm and seed on one core)::

    python benchmarks/mam_reward.py --seeds 0 1 2 --epochs 30
    python benchmarks/mam_reward.py --data pbmc3k --n-cells 1000 --seeds 0 1 2 --epochs 20
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

import sctransformer_tools as sct

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

ARMS = {
    "mam, raw reward": {"masking": "mam", "objective_kwargs": {"reward": "raw"}},
    "mam, relative reward": {"masking": "mam", "objective_kwargs": {"reward": "relative"}},
    "mam_shuffled, relative reward": {"masking": "mam_shuffled", "objective_kwargs": {"reward": "relative"}},
    "uniform": {"masking": "uniform", "objective_kwargs": {}},
}


def load(data: str, n_cells: int | None, seed: int) -> ad.AnnData:
    """The cells pretrained on: scanpy's pbmc68k_reduced (700 cells, 765 genes) or pbmc3k (shared data, counts)."""
    if data == "pbmc68k":
        adata, setup = sct.ds.pbmc68k_reduced(), {"labels_key": "bulk_labels", "library_size_key": "n_counts"}
    else:
        adata, setup = ad.read_h5ad(SHARED / "scrna" / "pbmc3k_seurat_labels.h5ad"), {"labels_key": "cell_type"}
    if n_cells is not None and n_cells < adata.n_obs:
        adata = adata[np.sort(np.random.default_rng(seed).choice(adata.n_obs, n_cells, replace=False))].copy()
    sct.SCTransformer.setup_anndata(adata, **setup)
    return adata


def run(arm: str, seed: int, epochs: int, target: str, data: str, n_cells: int | None) -> dict:
    adata = load(data, n_cells, seed)
    model = sct.SCTransformer(adata, d_model=16, n_layers=1, n_heads=2, n_top_genes=0, seed=seed)
    settings = ARMS[arm]
    start = time.perf_counter()
    model.pretrain(
        masking=settings["masking"],
        max_epochs=epochs,
        seed=seed,
        enable_progress_bar=False,
        objective_kwargs={**settings["objective_kwargs"], "target": target},
    )
    genes = model.get_masking_preference(adata, n_draws=128, seed=seed, inplace=False)
    objective = model.module.objectives["masked_expression"]
    if objective.gene_loss is not None:  # each gene's running mean loss: the raw reward a gene earns on average
        genes["running_loss"] = objective.gene_loss.cpu().numpy()
        genes.loc[~objective.gene_seen.cpu().numpy(), "running_loss"] = float("nan")
    genes = genes[genes["detection"] >= 0.02].dropna(subset=["ratio_to_uniform"])
    ratio = genes["ratio_to_uniform"]
    top = genes.sort_values("ratio_to_uniform", ascending=False).head(20)
    high = genes["mean_expression"] >= genes["mean_expression"].quantile(0.9)
    loss = genes.get("running_loss", pd.Series(np.nan, index=genes.index))
    return {
        "arm": arm,
        "seed": seed,
        "genes": len(genes),
        "rho_expression": spearmanr(ratio, genes["mean_expression"])[0],
        "rho_detection": spearmanr(ratio, genes["detection"])[0],
        "rho_gene_loss": spearmanr(ratio, loss, nan_policy="omit")[0] if loss.notna().any() else np.nan,
        "rho_loss_expression": spearmanr(loss, genes["mean_expression"], nan_policy="omit")[0]
        if loss.notna().any()
        else np.nan,
        "top20_in_top_decile": float(high[top.index].mean()),
        "ratio_max": ratio.max(),
        "ratio_p95": ratio.quantile(0.95),
        "top10": " ".join(top["symbol"].head(10)),
        "validation_mse": model.pretraining_["validation_mse"],
        "seconds": round(time.perf_counter() - start, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--target", default="counts", choices=["counts", "log_expression", "bins"])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--data", default="pbmc68k", choices=["pbmc68k", "pbmc3k"])
    parser.add_argument("--n-cells", type=int, default=None, help="cells drawn at random (default: all)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    logging.getLogger("sctransformer_tools").setLevel(logging.WARNING)
    rows = []
    for seed in args.seeds:
        for arm in args.arms:
            rows.append(run(arm, seed, args.epochs, args.target, args.data, args.n_cells))
            print(pd.DataFrame(rows[-1:]).to_string(index=False, header=len(rows) == 1), flush=True)
    frame = pd.DataFrame(rows)
    columns = ["rho_expression", "rho_detection", "rho_gene_loss", "rho_loss_expression", "top20_in_top_decile"]
    columns += ["ratio_max", "ratio_p95"]
    summary = frame.groupby("arm", sort=False)[columns].agg(["mean", "std"]).round(3)
    print()
    print(summary.to_string())


if __name__ == "__main__":
    main()
