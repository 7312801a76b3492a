"""Command line: ``sctransformer-tools demo`` and ``sctransformer-tools annotate``."""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np


def _stratified_split(labels, test_size: float, seed: int):
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    return train_test_split(idx, test_size=test_size, stratify=labels, random_state=seed)


def demo(out: Path, max_epochs: int = 30, mask: str = "grn", regulons: str = "collectri", seed: int = 0) -> dict:
    """Run the whole path on scanpy's ``pbmc68k_reduced`` (counts rebuilt, see :func:`sctransformer_tools.ds.pbmc68k_reduced`).

    Trains on a stratified 80% of the cells (labels: the FACS-sorted populations in ``bulk_labels``),
    annotates the other 20% as a query without labels, embeds every cell, and writes
    ``umap.png`` (UMAP of the scTransformer embedding), ``report.txt`` and ``report.json`` to ``out``.

    Returns
    -------
    The report as a dict.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import scanpy as sc
    from sklearn.metrics import accuracy_score, f1_score

    import sctransformer_tools as sct

    out.mkdir(parents=True, exist_ok=True)
    adata = sct.ds.pbmc68k_reduced()
    labels = adata.obs["bulk_labels"].astype(str).to_numpy()
    train_idx, test_idx = _stratified_split(labels, 0.2, seed)
    ref, query = adata[train_idx].copy(), adata[test_idx].copy()
    truth = query.obs.pop("bulk_labels").astype(str).to_numpy()

    sct.SCTransformer.setup_anndata(ref, labels_key="bulk_labels", regulons=regulons, library_size_key="n_counts")
    model = sct.SCTransformer(ref, mask=mask, seed=seed)
    start = time.perf_counter()
    model.train(max_epochs=max_epochs)
    train_s = time.perf_counter() - start
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the query has exactly the reference genes
        sct.SCTransformer.prepare_query_anndata(query, model, library_size_key="n_counts")
    pred = model.predict(query)

    adata.obs["split"] = "reference"
    adata.obs.iloc[test_idx, adata.obs.columns.get_loc("split")] = "query"
    full = adata.copy()
    sct.SCTransformer.prepare_query_anndata(full, model, library_size_key="n_counts")
    model.predict(full)
    model.get_latent_representation(full)
    sc.pp.neighbors(full, use_rep="X_sctransformer", random_state=seed)
    sc.tl.umap(full, random_state=seed)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    sc.pl.umap(full, color="bulk_labels", ax=axes[0], show=False, title="FACS-sorted population")
    sc.pl.umap(full, color="sctransformer_prediction", ax=axes[1], show=False, title="scTransformer prediction")
    fig.tight_layout()
    fig.savefig(out / "umap.png", dpi=120)
    plt.close(fig)

    report = {
        "dataset": "scanpy pbmc68k_reduced (700 cells, 765 genes; counts rebuilt from .raw)",
        "split": f"stratified 80/20 on bulk_labels, seed {seed}: {len(train_idx)} reference, {len(test_idx)} query cells",
        "mask": model.mask_summary(),
        "epochs": len(model.history["train_loss"]),
        "train_seconds": round(train_s, 1),
        "query_accuracy": round(float(accuracy_score(truth, pred)), 4),
        "query_macro_f1": round(float(f1_score(truth, pred, average="macro")), 4),
        "median_confidence": round(float(np.median(query.obs["sctransformer_confidence"])), 4),
    }
    s = report["mask"]
    lines = [
        "sctransformer-tools demo",
        f"data: {report['dataset']}",
        f"split: {report['split']}",
        f"mask: {s['mask']} over {s['genes']} panel genes ({s['tfs']} TFs, {s['edges']} allowed pairs, density {s['density']:.2e})",
        f"training: {report['epochs']} epochs in {report['train_seconds']} s",
        f"query (labels withheld): accuracy {report['query_accuracy']:.3f}, macro-F1 {report['query_macro_f1']:.3f}, "
        f"median confidence {report['median_confidence']:.3f}",
        f"UMAP of the embedding: {out / 'umap.png'}",
    ]
    (out / "report.txt").write_text("\n".join(lines) + "\n")
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    print("\n".join(lines))
    return report


def annotate(args: argparse.Namespace) -> None:
    """Train on a labelled reference (or load a saved model), annotate a query, write it to ``--out``."""
    import anndata as ad

    import sctransformer_tools as sct

    query = ad.read_h5ad(args.query)
    if args.model is not None:
        model_dir = args.model
        sct.SCTransformer.prepare_query_anndata(
            query,
            model_dir,
            gene_symbols=args.query_gene_symbols,
            min_panel_match=args.min_panel_match,
            library_size_key=args.query_library_size_key,
        )
        model = sct.SCTransformer.load(model_dir, adata=query)
    else:
        if args.reference is None or args.labels_key is None:
            raise SystemExit("annotate: give --reference and --labels-key to train, or --model to use a saved model.")
        ref = ad.read_h5ad(args.reference)
        sct.SCTransformer.setup_anndata(
            ref,
            layer=args.layer,
            labels_key=args.labels_key,
            batch_key=args.batch_key,
            regulons=args.regulons,
            library_size_key=args.library_size_key,
        )
        model = sct.SCTransformer(ref, mask=args.mask)
        model.train(max_epochs=args.max_epochs)
        if args.save_model is not None:
            model.save(args.save_model, overwrite=True)
        sct.SCTransformer.prepare_query_anndata(
            query,
            model,
            gene_symbols=args.query_gene_symbols,
            min_panel_match=args.min_panel_match,
            library_size_key=args.query_library_size_key,
        )
    model.predict(query, unknown_threshold=args.unknown_threshold, novelty_threshold=args.novelty_threshold)
    model.get_latent_representation(query)
    query.uns["sctransformer"] = {"mask": model.mask_summary(), "reference": str(args.reference or args.model)}
    query.write_h5ad(args.out)
    counts = query.obs["sctransformer_prediction"].value_counts()
    print(f"Annotated {query.n_obs} cells -> {args.out}")
    print(counts.to_string())


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``sctransformer-tools``."""
    parser = argparse.ArgumentParser(prog="sctransformer-tools", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p_demo = sub.add_parser("demo", help="train and annotate on scanpy's pbmc68k_reduced; write a UMAP and a report")
    p_demo.add_argument("--out", type=Path, default=Path("sctransformer_demo"), help="output folder")
    p_demo.add_argument("--max-epochs", type=int, default=30)
    p_demo.add_argument("--mask", default="grn", choices=["grn", "dense", "random", "shuffled"])
    p_demo.add_argument("--regulons", default="collectri", help="collectri, dorothea, or a CSV/TSV path")
    p_demo.add_argument("--seed", type=int, default=0)

    p_ann = sub.add_parser("annotate", help="annotate a query h5ad with a model trained on a reference h5ad")
    p_ann.add_argument("--reference", type=Path, help="labelled reference .h5ad with raw counts")
    p_ann.add_argument("--labels-key", help="obs column of the reference holding cell types")
    p_ann.add_argument("--query", type=Path, required=True, help="query .h5ad with raw counts")
    p_ann.add_argument("--out", type=Path, required=True, help="annotated query .h5ad to write")
    p_ann.add_argument("--regulons", default="collectri", help="collectri, dorothea, or a CSV/TSV path")
    p_ann.add_argument("--layer", default=None, help="layer with raw counts (default: X)")
    p_ann.add_argument("--batch-key", default=None)
    p_ann.add_argument("--library-size-key", default=None, help="obs column with total counts (reference)")
    p_ann.add_argument("--query-library-size-key", default=None, help="obs column with total counts (query)")
    p_ann.add_argument(
        "--query-gene-symbols", default=None, help="var column of the query with gene names in the reference's naming"
    )
    p_ann.add_argument(
        "--min-panel-match",
        type=float,
        default=0.05,
        help="refuse a query measuring less than this share of the model's panel genes (default 0.05)",
    )
    p_ann.add_argument("--mask", default="grn", choices=["grn", "dense", "random", "shuffled"])
    p_ann.add_argument("--max-epochs", type=int, default=20)
    p_ann.add_argument("--model", type=Path, default=None, help="use this saved model instead of training")
    p_ann.add_argument("--save-model", type=Path, default=None, help="save the trained model here")
    p_ann.add_argument(
        "--unknown-threshold", type=float, default=None, help="call cells below this calibrated confidence Unknown"
    )
    p_ann.add_argument(
        "--novelty-threshold",
        type=float,
        default=None,
        help="call cells more atypical than this share of the reference cells of their nearest type Unknown (e.g. 0.95)",
    )

    args = parser.parse_args(argv)
    if args.command == "demo":
        demo(args.out, args.max_epochs, args.mask, args.regulons, args.seed)
    else:
        annotate(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
