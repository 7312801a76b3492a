"""Held-out macro-F1 / accuracy on pbmc3k for every mask at default settings.

The split of the core issue: stratified 80/20 on ``obs["cell_type"]`` with ``random_state=0``. Each mask
trains the default model on the 80% (its own 10% validation split inside) and predicts the 20%.

Usage (from the project root)::

    SCTRANSFORMER_TOOLS_DATA=../shared/data/regulons python benchmarks/pbmc3k_masks.py \
        --masks grn dense random shuffled --seeds 0 1 2 --out benchmarks/results/pbmc3k_masks.jsonl
    python benchmarks/pbmc3k_masks.py --summarize benchmarks/results/pbmc3k_masks.jsonl

``--summarize`` prints a markdown table: mean and standard deviation over seeds per mask, and the GRN
mask's paired difference (same seed) against each control.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split

import sctransformer_tools as sct

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "scrna" / "pbmc3k_seurat_labels.h5ad"


def run(mask: str, seed: int, adata: ad.AnnData, train_idx, test_idx, max_epochs: int, **model_kwargs) -> dict:
    ref, test = adata[train_idx].copy(), adata[test_idx].copy()
    sct.SCTransformer.setup_anndata(ref, labels_key="cell_type", regulons="collectri")
    model = sct.SCTransformer(ref, mask=mask, seed=seed, **model_kwargs)
    start = time.perf_counter()
    model.train(max_epochs=max_epochs, enable_progress_bar=False)
    train_s = time.perf_counter() - start
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sct.SCTransformer.prepare_query_anndata(test, model)
    start = time.perf_counter()
    pred = model.predict(test)
    predict_s = time.perf_counter() - start
    truth = test.obs["cell_type"].astype(str)
    summary = model.mask_summary()
    return {
        "mask": mask,
        "seed": seed,
        "macro_f1": round(float(f1_score(truth, pred, average="macro")), 4),
        "accuracy": round(float(accuracy_score(truth, pred)), 4),
        "train_s": round(train_s, 1),
        "epochs": len(model.history["train_loss"]),
        "predict_cells_per_s": round(len(test_idx) / predict_s, 1),
        "density": summary["density"],
        "edges": summary["edges"],
        "panel_genes": summary["panel_genes"],
        "model_kwargs": model_kwargs,
    }


def summarize(path: Path) -> str:
    """Markdown table of a results file: per mask mean (sd) over seeds, and paired GRN - control."""
    import pandas as pd

    runs = pd.read_json(path, lines=True).drop_duplicates(["mask", "seed"], keep="last")
    lines = [
        "| mask | seeds | macro-F1 | accuracy | train s | predict cells/s | density | GRN - mask, macro-F1 (per seed) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    grn = runs[runs["mask"] == "grn"].set_index("seed")["macro_f1"]
    for mask, group in runs.groupby("mask", sort=False):
        diff = ""
        if mask != "grn":
            paired = (grn - group.set_index("seed")["macro_f1"]).dropna()
            diff = f"{paired.mean():+.3f} ({', '.join(f'{d:+.3f}' for d in paired)})"
        lines.append(
            f"| {mask} | {len(group)} | {group.macro_f1.mean():.3f} ({group.macro_f1.std(ddof=1):.3f}) "
            f"| {group.accuracy.mean():.3f} ({group.accuracy.std(ddof=1):.3f}) | {group.train_s.mean():.0f} "
            f"| {group.predict_cells_per_s.mean():.0f} | {group.density.iloc[0]:.2e} | {diff} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--masks", nargs="+", default=["grn", "dense", "random", "shuffled"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=None, help="append records to this JSON-lines file")
    parser.add_argument("--model-kwargs", default="{}", help="extra SCTransformer kwargs as a JSON object")
    parser.add_argument("--summarize", type=Path, default=None, help="print the table of a results file and exit")
    args = parser.parse_args(argv)
    if args.summarize is not None:
        print(summarize(args.summarize))
        return

    adata = ad.read_h5ad(args.data)
    train_idx, test_idx = train_test_split(
        np.arange(adata.n_obs), test_size=0.2, stratify=adata.obs["cell_type"], random_state=0
    )
    for seed in args.seeds:
        for mask in args.masks:
            record = run(mask, seed, adata, train_idx, test_idx, args.max_epochs, **json.loads(args.model_kwargs))
            print(json.dumps(record), flush=True)
            if args.out is not None:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                with args.out.open("a") as fh:
                    fh.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
