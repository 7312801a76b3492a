"""Reproduce the study's claims with the referee's controls and the strongest peers: one command, real data, a report.

For every dataset and seed, scTransformer is trained with the GRN mask and its three controls of the same
density (dense, random, degree-preserving shuffled), on CollecTRI and on DoRothEA A-C, next to logistic
regression, CellTypist and scANVI on the same split; every run is scored on held-out cells (labels,
embedding, attention vs regulons, time, memory). Records are appended to ``evaluation.json`` as runs
finish and ``evaluation.md`` (tables, paired comparisons, a reading generated from the numbers, figures)
is regenerated from all records. Each run goes through :func:`sctransformer_tools.bm.run`; the study's
datasets, measurements, records and report live in ``benchmarks/harness``; this is the command line over them.

Usage (from the project root; the shared data are read from ``../shared/data``)::

    SCTRANSFORMER_TOOLS_DATA=../shared/data/regulons python benchmarks/evaluate.py --quick
    SCTRANSFORMER_TOOLS_DATA=../shared/data/regulons python benchmarks/evaluate.py --resume
    SCTRANSFORMER_TOOLS_DATA=../shared/data/regulons python benchmarks/evaluate.py \\
        --datasets pbmc3k darmanis2015 --seeds 0 1 2 3 --resume       # extend a run
    python benchmarks/evaluate.py --report-only                        # re-render the markdown

``--quick`` (pbmc3k, seed 0, four masks, logistic regression and CellTypist, a small model trained for a few
epochs) checks the whole path in a few minutes; its records carry ``profile="quick"`` and are reported
apart from full runs. ``--resume`` skips runs already in the JSON file (same profile, dataset, method,
mask, regulons and seed); without it a run replaces its earlier record.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shlex
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

_T0 = time.perf_counter()  # the reported wall time covers importing the libraries and loading data too
ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
os.environ.setdefault("SCTRANSFORMER_TOOLS_DATA", str(SHARED / "regulons"))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the study harness beside this script

import matplotlib  # noqa: E402

matplotlib.use("Agg")  # a script: figures go to files

from harness import study  # noqa: E402
from harness.datasets import DATASETS as SPLITS  # noqa: E402
from harness.datasets import load_split  # noqa: E402
from harness.records import PROFILE_ORDER, append_invocation, append_record, load_records, record_identity  # noqa: E402
from harness.report import write_report  # noqa: E402

import sctransformer_tools as sct  # noqa: E402

DATASETS = list(SPLITS)
#: Regulon sets of the study; the first is the one the peers and the other sets are compared with.
REGULONS = {"collectri": "collectri", "dorothea_ABC": "dorothea_ABC"}
MAIN_REGULONS = next(iter(REGULONS))

#: What the training-mode profiles share: scTransformer only, GRN against its shuffled control, 3 seeds.
MODE_ARMS = {
    "seeds": [0, 1, 2],
    "methods": ["sctransformer"],
    "dataset_methods": {},
    "masks": ["grn", "shuffled"],
    "model_kwargs": {},
    "dataset_model_kwargs": {"darmanis2015": {"max_tokens": 1024}},
    "train_kwargs": {},
    "peer_kwargs": {},
    "attention_kwargs": {},
    "attention": False,
}

#: Settings of each profile. ``dataset_model_kwargs`` override ``model_kwargs`` per dataset; ``mode`` is how
#: scTransformer learns (``sct.bm.run``'s ``modes``); ``dataset_methods`` restrict the methods per dataset.
PROFILES = {
    "defaults": {  # today's defaults, labelled training cells; every mask, every peer
        "datasets": DATASETS,
        "seeds": [0, 1, 2],
        "methods": ["sctransformer", "logistic_regression", "celltypist", "celltypist_majority", "scanvi"],
        "dataset_methods": {d: ["scanvi_surgery"] for d in ("darmanis2015", "allen_m1", "pbmc3k_to_pbmc68k")},
        "masks": ["grn", "dense", "random", "shuffled", "grn@dorothea_ABC", "shuffled@dorothea_ABC"],
        "mode": "labelled",
        "model_kwargs": {},
        "dataset_model_kwargs": {"darmanis2015": {"max_tokens": 1024}},
        "train_kwargs": {},
        "peer_kwargs": {},
        "attention_kwargs": {"n_shuffles": 3, "max_cells": 2000},
        "attention": True,
    },
    # the test cells join the reference as unlabelled cells (semi-supervised, labels unread)
    "unlabelled": {**MODE_ARMS, "datasets": DATASETS, "mode": "unlabelled"},
    # trained on the reference, then mapped onto the test cells (another donor or study)
    "mapping": {**MODE_ARMS, "datasets": ["darmanis2015", "allen_m1", "pbmc3k_to_pbmc68k"], "mode": "mapping"},
    # what the gene tokens add: the same panel and profile, no Transformer layer (the CLS state is the profile's
    # projection, read by the classifier); labelled training cells, as `defaults`
    "no_tokens": {
        **MODE_ARMS,
        "datasets": DATASETS,
        "masks": ["grn"],
        "mode": "labelled",
        "model_kwargs": {"n_layers": 0},
    },
    "full": {  # 0.2.0's study settings (records of that release)
        "datasets": DATASETS,
        "seeds": [0, 1, 2],
        "methods": ["sctransformer", "logistic_regression", "celltypist", "scanvi"],
        "dataset_methods": {},
        "masks": ["grn", "dense", "random", "shuffled", "grn@dorothea_ABC", "shuffled@dorothea_ABC"],
        "mode": "labelled",
        "model_kwargs": {},
        "dataset_model_kwargs": {"darmanis2015": {"max_tokens": 1024}},
        # pinned: the study's settings, whatever the package's defaults of train() become
        "train_kwargs": {"max_epochs": 30, "lr": 2e-3, "batch_size": 64, "weight_averaging": True},
        "peer_kwargs": {},
        "attention_kwargs": {"n_shuffles": 3, "max_cells": 2000},
        "attention": True,
    },
    "quick": {
        "datasets": ["pbmc3k"],
        "seeds": [0],
        "methods": ["sctransformer", "logistic_regression", "celltypist"],
        "dataset_methods": {},
        "masks": ["grn", "dense", "random", "shuffled"],
        "mode": "labelled",
        "model_kwargs": {"d_model": 32, "n_layers": 2, "n_heads": 2, "n_top_genes": 500, "max_tokens": 256},
        "dataset_model_kwargs": {},
        "train_kwargs": {"max_epochs": 8, "batch_size": 64, "lr": 5e-3, "weight_averaging": False},
        "peer_kwargs": {},
        "attention_kwargs": {"n_shuffles": 2, "max_cells": 256},
        "attention": True,
    },
}

PROFILE_NOTES = {
    "defaults": (
        "`defaults`: the package's defaults as a user gets them (`SCTransformer(adata, mask=...)`, `train()`: the "
        "expression profile, size factors over the panel genes, 8 epochs or 600 steps), trained on the labelled "
        "training cells; every mask and every peer (CellTypist also with majority voting; scANVI also with scArches "
        "surgery where the test cells are another donor or study)."
    ),
    "unlabelled": (
        "`unlabelled`: the same model with the test cells joined to the reference as unlabelled cells (their labels "
        "unread), as a user annotating a dataset together with a reference does; the GRN mask and its shuffle."
    ),
    "mapping": (
        "`mapping`: the same model trained on the reference, then mapped onto the test cells "
        "(`SCTransformer.load_query_data(test, model)` + `train()`), where they are another donor or study; the GRN "
        "mask and its shuffle."
    ),
    "no_tokens": (
        "`no_tokens`: the `defaults` model without its Transformer layers (`n_layers=0`: the CLS state is the "
        "expression profile's projection, no gene token is read), trained on the labelled training cells: what the "
        "gene tokens, and so the mask, add to the calls."
    ),
    "full": (
        "Full profile: the package's default model (d_model 64, 2 layers x 4 heads, CollecTRI/DoRothEA "
        "panel + 2,000 HVGs, up to 2,048 gene tokens per cell; 1,024 on Darmanis 2015, whose full-length cells "
        "express ~4,000 panel genes and would make the dense control ~4x slower), 30 epochs with weight "
        "averaging; peers at their defaults (scVI/scANVI epochs by scvi-tools' heuristics)."
    ),
    "quick": (
        "**Quick profile (a smoke test, not the study's numbers):** pbmc3k only, one seed, a reduced model "
        "(d_model 32, 2 layers x 2 heads, panel = regulon genes + 500 HVGs, at most 256 gene tokens per cell), "
        "8 epochs at batch 64 (peak learning rate 5e-3) without weight averaging; attention read on 256 test "
        "cells; logistic regression and CellTypist as peers (scANVI only in the full profile)."
    ),
}


def _methods_note() -> str:
    return """### How the evaluation is made

- **Same split for every method.** Every method trains on the training cells' raw counts and labels and
  predicts the test cells without their labels. Genes a test set lacks are zero-filled for scTransformer
  (never tokens) and scANVI (`prepare_query_anndata`); CellTypist drops their coefficients and logistic
  regression gives them their training mean (no contribution). Library sizes
  are the totals over all measured genes (`obs["library_size"]`). Test cells whose type is absent from
  training are not scored (`n_test_excluded`).
- **scTransformer** (`method="sctransformer"`): one model per mask: `grn` (the regulons), `dense` (no mask),
  `random` (uniform pairs, as many as the GRN mask), `shuffled` (degree-preserving permutation of the
  regulons' targets); all four share the panel, code path and (for the three masked ones) the realised
  density. Regulons: CollecTRI, and DoRothEA levels A-C (`regulons="dorothea", regulon_levels="ABC"`).
- **Peers** (`mask`/`regulons` null): logistic regression (scikit-learn, multinomial, 2,000 training
  HVGs, log-normalised and standardised); CellTypist (`celltypist.train` on all genes, trained locally, best
  match, no majority voting); scANVI (scVI pre-training then `SCANVI.from_scvi_model` on the training
  cells' 2,000 HVGs; test cells are classified and embedded by the trained reference model after
  `SCANVI.prepare_query_anndata`, without query training or surgery). Profile `defaults` adds CellTypist
  with majority voting and, where the test cells are another donor or study, `scanvi_surgery`: scVI built
  as scvi-tools' scArches tutorial builds a reference (`sct.bm.peers.SCARCHES_SCVI`: the batch enters the
  encoder), the reference one batch and the test cells another, whose parameters are trained on them
  (`SCANVI.load_query_data`, 100 epochs) before they are classified. No other method uses a batch covariate.
- **Label metrics** over the types present in the test set: accuracy, macro-F1, balanced accuracy, and
  `rare_f1` = mean F1 of the third of types with the fewest training cells.
- **Embedding metrics** on the scored test cells: silhouette of the true labels (sklearn, euclidean,
  -1..1) and ARI/NMI of Leiden clusters (igraph, modularity, on the symmetrised 15-nearest-neighbour
  graph; resolutions 0.25/0.5/1/2, the one with the best NMI kept, as scib does). Embeddings: scTransformer's CLS state, scANVI's latent space; for logistic regression
  and CellTypist (which learn none) the 50-component PCA of the test cells' log-normalised training
  HVGs, i.e. the space the linear peers classify in.
- **Attention vs regulons** (dense models only: a masked model attends only along its edges): for each
  TF -> target pair, the dense model's attention of the target on the TF (mean over heads and layers)
  averaged over the test cells expressing both (a seeded sample of at most 2,000 test cells; 256 in the
  quick profile); AUROC of the regulon edges against 3x as many random non-edges (TF keys, target
  queries, no edge either way; pairs co-expressed in < 3 cells dropped). Null: the same AUROC for
  degree-preserving shuffles of the regulons (`attention_auroc_null`), and edges vs shuffled edges
  directly (`attention_auroc_vs_shuffled`).
- **TF programs vs ULM** (`grn` and `dense` models): `get_attention` on the scored test cells grouped by
  their true type (types with >= 10 test cells), TFs ranked by specificity of the attention mass flowing
  from each TF into its targets; decoupler ULM activity on the same cells (log-normalised, all measured
  genes, the full regulons), ranked the same way (`sct.tl.compare_tf_activity`). Per type: Spearman of the
  two rankings and the overlap of the top-10 lists against a TF-label permutation null (1,000
  permutations); the record keeps the means over types (`tf_activity_spearman`, `tf_top_overlap`,
  `tf_top_overlap_null`) and the share of types whose overlap is beyond chance (`tf_overlap_significant`).
- **Cost**: `train_s` is the wall time of building and training a model (scTransformer: setup, panel,
  mask, training and temperature fit); `peak_mb` the peak resident memory (RSS) of the process while
  training, sampled every 20 ms from `/proc/self/statm` (it includes the interpreter, libraries and data;
  `peak_delta_mb`, "MB rise" in the tables, is the rise during training: the better comparison between
  methods, since `peak_mb` also carries what earlier runs in the same process left allocated). All methods run one after another in one process, with
  the torch and BLAS threads fixed (`--threads`, default 1; the machine line above says how many).
  RSS also counts memory the C allocator keeps after torch frees it, which depends on fragmentation: the
  same scTransformer configuration (pbmc3k, grn, seed 0) peaked at 1.5 GB in one run and 4.4 GB in
  another, and grn and random masks measured in fresh processes side by side differ by 1% (2,893 vs
  2,867 MB after 2 epochs). Read scTransformer's `peak_mb` as an upper bound, good to a factor of ~3;
  `benchmarks/attention.py` measures the attention's own memory with the allocator set to return freed
  blocks.
- **Precision.** scTransformer trains with `precision="auto"`: float32 on CPUs without native bfloat16
  matmuls, bf16 mixed precision (float32 weights and sparse-attention kernels) on CPUs with AVX512-BF16.
  The sessions that produced these records ran on both kinds of machine; each scTransformer record says
  which in `precision` (the invocations list says which machine). Times of runs at different precisions
  are not comparable.
- **Cross-study split.** pbmc3k -> `pbmc68k_reduced` keeps, for every method, only the 763 genes both
  studies measure (pbmc3k library sizes stay its totals over all genes, as the query's `n_counts`); the
  query's counts are rebuilt from its log-normalised `.raw` (`sct.ds.pbmc68k_reduced`) and its labels
  mapped with `sct.ds.PBMC68K_TO_PBMC3K` (CD34+ progenitors have no pbmc3k type and are not scored).
  The split is the same for every seed; only the models' seeds vary.
- **Seeds.** Each seed re-draws the split where the split is random (pbmc3k: `random_state=seed`;
  Darmanis: fold `seed mod 4`; Allen: the subsample) and seeds the models; paired comparisons pair runs
  of the same dataset and seed, i.e. the same split."""


def _preamble(meta: dict, records: list[dict]) -> str:
    lines = [
        "Generated by `benchmarks/evaluate.py` (see its docstring) from `evaluation.json`; rerun with "
        "`--report-only` to re-render. Numbers below are computed from the records; no sentence is written "
        "by hand.",
        "",
    ]
    profiles = list(dict.fromkeys((r.get("profile") or "custom") for r in records))
    for profile in sorted(profiles, key=lambda p: PROFILE_ORDER.get(p, PROFILE_ORDER["custom"])):
        if profile in PROFILE_NOTES:
            lines.append(f"- {PROFILE_NOTES[profile]}")
        runs = [m for m in meta.get("invocations", []) if m.get("profile") == profile]
        if runs:
            last = runs[-1]
            total = sum(m.get("wall_s", 0) for m in runs)
            lines.append(
                f"- `{profile}`: last invocation `{last['command']}` took **{last['wall_s'] / 60:.1f} min** wall time "
                f"({last['records_added']} runs) on {last['machine']}"
                + (f"; {len(runs)} invocations, {total / 3600:.2f} h in all." if len(runs) > 1 else ".")
            )
    lines += ["", _methods_note()]
    return "\n".join(lines)


def render(out_dir: Path) -> Path:
    recs = load_records(out_dir / "evaluation.json")
    meta_path = out_dir / "evaluation_meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    return write_report(
        recs,
        out_dir,
        title="scTransformer: GRN mask vs controls and peers on real data",
        preamble=_preamble(meta, recs),
        umap_dir=out_dir / "umap",
        main_regulons=MAIN_REGULONS,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="pbmc3k, one seed, small model, few epochs")
    parser.add_argument(
        "--profile", choices=[p for p in PROFILES if p != "quick"], default="defaults", help="settings of the runs"
    )
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=None)
    parser.add_argument("--seeds", nargs="+", type=int, default=None)
    parser.add_argument("--methods", nargs="+", choices=list(study.METHODS), default=None)
    parser.add_argument("--masks", nargs="+", default=None, help="e.g. grn dense random shuffled grn@dorothea_ABC")
    parser.add_argument("--max-epochs", type=int, default=None, help="scTransformer epochs (overrides the profile)")
    parser.add_argument("--model-kwargs", type=json.loads, default={}, help="JSON: SCTransformer arguments to override")
    parser.add_argument(
        "--peer-kwargs", type=json.loads, default={}, help='JSON, e.g. {"scanvi": {"scvi_epochs": 100}}'
    )
    parser.add_argument("--out-dir", type=Path, default=ROOT / "docs" / "results")
    parser.add_argument("--resume", action="store_true", help="skip runs already recorded in the JSON file")
    parser.add_argument("--data-dir", type=Path, default=SHARED / "scrna", help="folder of the shared .h5ad files")
    parser.add_argument("--allen-max-cells", type=int, default=10_000, help="per-donor cap of Allen M1 nuclei")
    parser.add_argument("--umap-datasets", nargs="*", default=["pbmc3k"], help="datasets whose UMAPs are drawn")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch, BLAS and numba threads (default 1: processes on more threads than their share of the cores stall)",
    )
    parser.add_argument("--report-only", action="store_true", help="re-render evaluation.md from the JSON and exit")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stdout)
    for name in (
        "lightning",
        "lightning.pytorch",
        "lightning_fabric",
        "scvi",
        "sctransformer_tools.model",
        "sctransformer_tools.bm",
        "celltypist",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    out_dir: Path = args.out_dir
    if args.report_only:
        print(render(out_dir))
        return

    import torch
    from harness.resources import use_threads

    use_threads(args.threads)
    profile_name = "quick" if args.quick else args.profile
    profile = PROFILES[profile_name]
    datasets = args.datasets or profile["datasets"]
    seeds = args.seeds if args.seeds is not None else profile["seeds"]
    methods = args.methods or profile["methods"]
    masks = args.masks or profile["masks"]
    train_kwargs = dict(profile["train_kwargs"])
    if args.max_epochs is not None:
        train_kwargs["max_epochs"] = args.max_epochs
    json_path = out_dir / "evaluation.json"
    done = {record_identity(r) for r in load_records(json_path) if not r.get("error")} if args.resume else set()

    def skip(identity: dict) -> bool:
        return record_identity(identity) in done

    added = 0

    def on_record(record: dict) -> None:
        nonlocal added
        added += 1
        append_record(json_path, record)
        render(out_dir)

    started = datetime.now(UTC).isoformat(timespec="seconds")
    for dataset in datasets:
        for seed in seeds:
            kwargs = {"max_train_cells": args.allen_max_cells, "max_test_cells": args.allen_max_cells}
            split = load_split(dataset, seed, data_dir=args.data_dir, **(kwargs if dataset == "allen_m1" else {}))
            logging.info("%s seed %d: %s", dataset, seed, split.description)
            study.evaluate(
                split.train,
                split.test,
                split.labels_key,
                methods=list(methods) + [m for m in profile["dataset_methods"].get(dataset, []) if not args.methods],
                masks=masks,
                mode=profile["mode"],
                attention=profile["attention"],
                regulons=REGULONS,
                seeds=[seed],
                dataset=dataset,
                library_size_key=split.library_size_key,
                model_kwargs=profile["model_kwargs"]
                | profile["dataset_model_kwargs"].get(dataset, {})
                | args.model_kwargs,
                train_kwargs=train_kwargs,
                peer_kwargs=profile["peer_kwargs"] | args.peer_kwargs,
                attention_kwargs=profile["attention_kwargs"],
                umap_dir=out_dir / "umap" if dataset in args.umap_datasets and seed == min(seeds) else None,
                profile=profile_name,
                extra={"split": split.description, **split.info},
                skip=skip,
                on_record=on_record,
                raise_errors=False,
            )
    wall = time.perf_counter() - _T0
    bf16 = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    append_invocation(
        out_dir / "evaluation_meta.json",
        {
            "profile": profile_name,
            "command": "python benchmarks/evaluate.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
            "started": started,
            "wall_s": round(wall, 1),
            "records_added": added,
            "machine": f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}, native bf16: "
            f"{'yes' if bf16 else 'no'}), torch {torch.__version__}, {torch.get_num_threads()} torch/BLAS thread(s)",
            "versions": {"sctransformer_tools": sct.__version__, "python": platform.python_version()},
        },
    )
    path = render(out_dir)
    logging.info("%d runs in %.1f min; report: %s", added, wall / 60, path)


if __name__ == "__main__":
    main()
