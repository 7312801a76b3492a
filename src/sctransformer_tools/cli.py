"""Command line of sctransformer-tools: annotate a dataset with a reference, or run the demo.

sctransformer-tools annotate --reference ref.h5ad --labels-key cell_type --query new.h5ad --out annotated.h5ad
sctransformer-tools annotate --model model_dir --query new.h5ad --out annotated.h5ad
sctransformer-tools demo --out sctransformer_demo
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

# Only the standard library and the package's leaf modules at import time: `--version` and `--help` must not wait
# for torch, scvi-tools or scanpy (each command imports what it needs).
from sctransformer_tools._constants import AUTO, MASK_KINDS, NOVELTY_THRESHOLD

logger = logging.getLogger("sctransformer_tools.cli")
#: Help of --max-epochs (the same rule as the API's train(max_epochs=None)).
EPOCHS_HELP = "training epochs (default: 8, or more on small references for at least 300 optimiser steps)"
#: How ``annotate`` uses the query's cells by default: chosen on the validation splits of
#: ``benchmarks/semi_supervised.py`` (a held-out donor group of Darmanis' training donors, and Allen M1's training
#: donor), where neither mapping nor training with the query unlabelled beat the reference alone
#: (docs/results/semi_supervised.md, "Which mode sctransformer-tools annotate uses").
ANNOTATE_MODE = "labelled"
MODE_HELP = {
    "labelled": "predict with the model trained on the reference alone",
    "unlabelled": "train on the reference with the query's cells as unlabelled cells (with --reference only)",
    "mapping": "map the trained model onto the query (load_query_data + train), then predict",
}


def demo(
    out: Path, max_epochs: int | None = None, mask: str = "grn", regulons: str = "collectri", seed: int = 0
) -> dict:
    """Run the whole path on scanpy's ``pbmc68k_reduced`` (counts rebuilt, see :func:`sctransformer_tools.ds.pbmc68k_reduced`).

    Trains on a stratified 80% of the cells (labels: the FACS-sorted populations in ``bulk_labels``),
    annotates the other 20% as a query without labels, embeds every cell, and writes ``umap.png`` (the
    UMAP of the scTransformer embedding of every cell; the held-out cells coloured by population and by
    prediction, one colour per cell type in both panels, the training cells in grey), ``report.txt`` and
    ``report.json`` to ``out``. The accuracy and macro-F1 it reports are the held-out cells'.

    Returns
    -------
    The report as a dict.
    """
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd
    import scanpy as sc
    from sklearn.metrics import accuracy_score, f1_score

    import sctransformer_tools as sct
    from sctransformer_tools._data import stratified_split

    out.mkdir(parents=True, exist_ok=True)
    adata = sct.ds.pbmc68k_reduced()
    labels = adata.obs["bulk_labels"].astype(str).to_numpy()
    train_idx, test_idx = stratified_split(labels, 0.8, seed)
    ref, query = adata[train_idx].copy(), adata[test_idx].copy()
    truth = query.obs.pop("bulk_labels").astype(str).to_numpy()

    sct.SCTransformer.setup_anndata(ref, labels_key="bulk_labels", regulons=regulons)
    model = sct.SCTransformer(ref, mask=mask, seed=seed)
    start = time.perf_counter()
    model.train(max_epochs=max_epochs)
    train_s = time.perf_counter() - start
    pred = model.predict(query)

    model.get_latent_representation(adata)
    sc.pp.neighbors(adata, use_rep="X_sctransformer", random_state=seed)
    sc.tl.umap(adata, random_state=seed)
    held_out = np.zeros(adata.n_obs, dtype=bool)
    held_out[test_idx] = True
    adata.obs["held-out population"] = adata.obs["bulk_labels"].where(held_out)  # training cells: grey
    adata.obs["held-out prediction"] = pd.Series(pd.NA, index=adata.obs_names, dtype=object)
    adata.obs.loc[adata.obs_names[test_idx], "held-out prediction"] = query.obs["sctransformer_prediction"].astype(str)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    title = f"held-out cells ({len(test_idx)}; training cells grey)"
    shown = {"model": model, "na_in_legend": False}  # the grey training cells are not a category
    sct.pl.label_umap(adata, "held-out population", ax=axes[0], title=f"FACS-sorted population\n{title}", **shown)
    sct.pl.label_umap(adata, "held-out prediction", ax=axes[1], title=f"scTransformer prediction\n{title}", **shown)
    fig.tight_layout()
    fig.savefig(out / "umap.png", dpi=120)
    plt.close(fig)

    history = model.history
    report = {
        "dataset": "scanpy pbmc68k_reduced (700 cells, 765 genes; counts rebuilt from .raw)",
        "split": f"stratified 80/20 on bulk_labels, seed {seed}: {len(train_idx)} reference, {len(test_idx)} query cells",
        "mask": model.mask_summary(),
        "epochs": len(history["train_loss"]),
        "train_seconds": round(train_s, 1),
        "validation_macro_f1": round(float(history["validation_f1_macro"].iloc[-1].item()), 4),
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
        f"training: {report['epochs']} epochs in {report['train_seconds']} s, validation macro-F1 {report['validation_macro_f1']:.3f}",
        f"query (labels withheld): accuracy {report['query_accuracy']:.3f}, macro-F1 {report['query_macro_f1']:.3f}, "
        f"median confidence {report['median_confidence']:.3f}",
        f"UMAP of the embedding: {out / 'umap.png'}",
    ]
    (out / "report.txt").write_text("\n".join(lines) + "\n")
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    print("\n".join(lines))
    return report


def annotate(args: argparse.Namespace) -> None:
    """Train on a labelled reference (or load a saved model), annotate a query, write it with the results added."""
    import anndata as ad

    import sctransformer_tools as sct

    if args.model is None and (args.reference is None or args.labels_key is None):
        raise SystemExit("annotate: give --reference and --labels-key to train, or --model to use a saved model.")
    query = ad.read_h5ad(args.query)
    read = {
        "layer": args.query_layer if args.query_layer != "auto" else "auto",
        "gene_symbols": args.query_gene_symbols,
        "library_size_key": args.query_library_size_key,
        "min_panel_match": args.min_panel_match,
    }
    mode = args.mode
    if mode == "unlabelled" and args.model is not None:
        raise SystemExit("annotate: --mode unlabelled trains with the query's cells: give --reference, not --model.")
    if args.model is not None:
        model = sct.SCTransformer.load(args.model, allow_pickle=args.allow_pickle)
        sct.SCTransformer.prepare_query_anndata(query, args.model, **read, allow_pickle=args.allow_pickle)
        source = str(args.model)
    else:
        ref = ad.read_h5ad(args.reference)
        if mode == "unlabelled":
            ref = sct.bm.with_unlabelled(ref, query, args.labels_key, layer=args.layer)
        sct.SCTransformer.setup_anndata(
            ref,
            layer=args.layer,
            labels_key=args.labels_key,
            batch_key=args.batch_key,
            regulons=args.regulons,
            library_size_key=args.library_size_key,
        )
        model = sct.SCTransformer(ref, mask=args.mask)
        model.train(max_epochs=args.max_epochs, enable_progress_bar=not args.no_progress_bar)
        if args.save_model is not None:
            model.save(args.save_model, overwrite=True)
            print(f"Saved the model to {args.save_model}")
        sct.SCTransformer.prepare_query_anndata(query, model, **read)
        source = str(args.reference)
    if mode == "mapping":
        model = sct.SCTransformer.load_query_data(query, model, **{k: v for k, v in read.items() if k != "layer"})
        model.train(enable_progress_bar=not args.no_progress_bar)
    print(f"Mode: {mode} ({MODE_HELP[mode]}){' (the default)' if mode == ANNOTATE_MODE else ''}.")
    model.predict(query, unknown_threshold=args.unknown_threshold, novelty_threshold=args.novelty_threshold)
    model.get_latent_representation(query)
    query.uns["sctransformer"]["reference"] = source
    query.uns["sctransformer"]["mode"] = mode
    query.uns["sctransformer"]["mask"] = model.mask_summary()
    query.write_h5ad(args.out)
    counts = query.obs["sctransformer_prediction"].value_counts()
    print(
        f"Annotated {query.n_obs:,} cells -> {args.out} (obs['sctransformer_prediction'], ['sctransformer_confidence'],"
    )
    print("  ['sctransformer_novelty'], obsm['X_sctransformer']); predicted cell types:")
    print(counts.to_string())


class _HelpFormatter(argparse.HelpFormatter):
    """Adds ``(default: ...)`` to an option's help unless the help states its default or there is none to state."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or "default" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


def _novelty_threshold(value: str) -> float:
    """``--novelty-threshold``: a probability, or ``auto`` for the measured threshold."""
    return NOVELTY_THRESHOLD if value == AUTO else float(value)


def _parser() -> argparse.ArgumentParser:
    from sctransformer_tools import __version__  # importlib.metadata: the package's modules stay unimported

    formatter = _HelpFormatter
    parser = argparse.ArgumentParser(
        prog="sctransformer-tools",
        description="scTransformer: GRN-masked Transformers for cell-type annotation (scverse / Scanpy).",
        formatter_class=formatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p_demo = sub.add_parser(
        "demo",
        help="train and annotate on scanpy's pbmc68k_reduced; write a UMAP and a report",
        formatter_class=formatter,
    )
    p_demo.add_argument("--out", type=Path, default=Path("sctransformer_demo"), help="output folder")
    p_demo.add_argument("--max-epochs", type=int, default=None, help=EPOCHS_HELP)
    p_demo.add_argument("--mask", default="grn", choices=MASK_KINDS, help="attention mask")
    p_demo.add_argument("--regulons", default="collectri", help="collectri, dorothea, or a CSV/TSV path")
    p_demo.add_argument("--seed", type=int, default=0, help="seed of the split and the model")

    p_ann = sub.add_parser(
        "annotate",
        help="annotate a query .h5ad with a model trained on a reference .h5ad (or a saved model)",
        formatter_class=formatter,
    )
    p_ann.add_argument("--query", type=Path, required=True, help="query .h5ad with raw counts")
    p_ann.add_argument(
        "--out", type=Path, required=True, help="where to write the query with the results added (.h5ad)"
    )
    p_ann.add_argument("--reference", type=Path, help="labelled reference .h5ad with raw counts")
    p_ann.add_argument("--labels-key", help="obs column of the reference holding cell types")
    p_ann.add_argument("--model", type=Path, default=None, help="use this saved model instead of training")
    p_ann.add_argument("--save-model", type=Path, default=None, help="save the trained model to this folder")
    p_ann.add_argument("--regulons", default="collectri", help="collectri, dorothea, or a CSV/TSV path")
    p_ann.add_argument("--mask", default="grn", choices=MASK_KINDS, help="attention mask")
    p_ann.add_argument(
        "--mode",
        default=ANNOTATE_MODE,
        choices=list(MODE_HELP),
        help="how the query's cells are used: " + "; ".join(f"{k}: {v}" for k, v in MODE_HELP.items()),
    )
    p_ann.add_argument("--max-epochs", type=int, default=None, help=EPOCHS_HELP)
    p_ann.add_argument("--layer", default=None, help="layer of the reference with raw counts (default: X)")
    p_ann.add_argument("--batch-key", default=None, help="obs column of the reference with batches")
    p_ann.add_argument(
        "--library-size-key",
        default=None,
        help="obs column of the reference with total counts per cell (default: a usual column such as "
        "n_counts or nCount_RNA if present, else the row sums)",
    )
    p_ann.add_argument(
        "--query-layer",
        default="auto",
        help="layer of the query with raw counts (default: auto, the reference's layer if the query has it, else X)",
    )
    p_ann.add_argument(
        "--query-library-size-key", default=None, help="obs column of the query with total counts per cell"
    )
    p_ann.add_argument(
        "--query-gene-symbols", default=None, help="var column of the query with gene names in the reference's naming"
    )
    p_ann.add_argument(
        "--min-panel-match",
        type=float,
        default=0.05,
        help="refuse a query measuring less than this share of the model's panel genes",
    )
    p_ann.add_argument(
        "--unknown-threshold", type=float, default=None, help="call cells below this calibrated confidence Unknown"
    )
    p_ann.add_argument(
        "--novelty-threshold",
        type=_novelty_threshold,
        nargs="?",
        const=NOVELTY_THRESHOLD,
        default=None,
        help="call cells more atypical than this share of the reference cells of their nearest type Unknown "
        f"(alone or 'auto': the measured {NOVELTY_THRESHOLD})",
    )
    p_ann.add_argument("--no-progress-bar", action="store_true", help="train without a progress bar")
    p_ann.add_argument(
        "--allow-pickle",
        action="store_true",
        help="also open a model folder saved by an earlier version (a pickle: only for folders you trust)",
    )
    return parser


@contextlib.contextmanager
def _plain_warnings() -> Iterator[None]:
    """Warnings printed as ``UserWarning: message``, without the file and line that raised them.

    On the command line that place is the console script's ``sys.exit(main())`` or a line inside the package, which
    tells the user nothing; the message itself names the input and the option to change. Nothing is filtered.
    """
    original = warnings.formatwarning

    def formatwarning(message, category, filename, lineno, line=None) -> str:
        return f"{category.__name__}: {message}\n"

    warnings.formatwarning = formatwarning
    try:
        yield
    finally:
        warnings.formatwarning = original


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``sctransformer-tools``."""
    with _plain_warnings():
        args = _parser().parse_args(argv)
        if args.command == "demo":
            demo(args.out, args.max_epochs, args.mask, args.regulons, args.seed)
        else:
            annotate(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
