"""How long a new user waits: default train + predict on pbmc3k against scANVI, in one run on this machine.

Measured in one process, one after the other (ratios, not absolute times, carry to other machines):

1. **Training step, float32 vs bf16 autocast**: the default model on 64-cell pbmc3k minibatches, forward +
   backward + optimiser step, the two precisions alternated (median seconds per step), and what
   ``precision="auto"`` picks here.
2. **Default train + predict on all of pbmc3k** (2,638 cells, default settings, progress bar off) against
   **scANVI** trained and applied the way the evaluation's peer is (scVI then scANVI on the 2,000 most variable
   genes, scvi-tools' default epochs): wall time of each, and the ratio.
3. **Throughput** of the trained default model on all 2,638 cells: ``predict``, ``get_latent_representation``
   and ``get_attention`` (grouped by cell type), in cells per second.
5. **Reference mapping** of a 3,500-cell query (the first cells of the four unlabelled 10x PBMC sets, other
   chemistries): ``load_query_data`` + ``train()`` + ``predict`` with the model of part 2, in seconds.
6. **With unlabelled cells**: pbmc3k and the four unlabelled sets in one AnnData (their shared genes; the
   unlabelled cells ``"Unknown"``): scTransformer's default train + predict against scANVI's on the same cells
   (scVI then scANVI, scvi-tools' defaults), and the ratio.
4. **Macro-F1 at the new defaults against the previous ones** (30 epochs, batch 64, lr 2e-3) on the
   evaluation's pbmc3k splits (stratified 80/20, ``random_state`` = seed), seeds 0-2, paired by seed.

Usage (from the project root, alone on the machine)::

    SCTRANSFORMER_TOOLS_DATA=../shared/data/regulons python benchmarks/annotation_speed.py \\
        --out benchmarks/results/annotation_speed.json

Against the previous release on the same machine (the throughput target is a ratio): run this script from a
checkout of that release first, then pass its JSON, which is kept in today's under ``baseline``::

    git worktree add ../sct-0.2.0 bff19f3 && (cd ../sct-0.2.0 && PYTHONPATH=src \\
        SCTRANSFORMER_TOOLS_DATA=../shared/data/regulons python benchmarks/annotation_speed.py --skip-f1 \\
        --out /tmp/speed-0.2.0.json)
    python benchmarks/annotation_speed.py --skip-f1 --baseline /tmp/speed-0.2.0.json

``--skip-f1`` leaves out part 4 (the longest). The JSON holds the machine (CPU model, native bf16 or not,
torch threads) with every figure; ``--markdown`` prints the tables of the README from a JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
PBMC3K = ROOT.parent / "shared" / "data" / "scrna" / "pbmc3k_seurat_labels.h5ad"
UNLABELLED = ROOT.parent / "shared" / "data" / "scrna" / "unlabelled_pbmc"
#: The defaults before this benchmark's change (what the evaluation's full profile still pins).
PREVIOUS_DEFAULTS = {"max_epochs": 30, "batch_size": 64, "lr": 2e-3}

sys.path.insert(0, str(ROOT / "benchmarks"))
from harness.resources import machine  # noqa: E402


def step_times(adata, rounds: int = 3, steps: int = 4, **model_kwargs) -> dict:
    """Median seconds per training step of the default model, float32 vs bf16 autocast, alternated.

    ``model_kwargs`` change the model (the tests time a tiny one).
    """
    import torch

    import sctransformer_tools as sct

    ref = adata.copy()
    sct.SCTransformer.setup_anndata(ref, labels_key="cell_type")
    model = sct.SCTransformer(ref, **model_kwargs)
    batches = list(model._make_data_loader(adata=ref, indices=np.arange(64 * steps), batch_size=64, shuffle=False))
    module = model.module.train()
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4)

    def run(bf16: bool) -> float:
        start = time.perf_counter()
        for tensors in batches:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = module(tensors)["classification"]
            out.loss.float().backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return (time.perf_counter() - start) / len(batches)

    run(False), run(True)  # warm-up of both paths
    times = {"float32": [], "bf16": []}
    for _ in range(rounds):
        times["float32"].append(run(False))
        times["bf16"].append(run(True))
    fp32, bf16 = float(np.median(times["float32"])), float(np.median(times["bf16"]))
    chosen = sct.model.choose_precision(module, batches[0], "cpu")
    return {"float32_s": fp32, "bf16_s": bf16, "bf16_over_float32": bf16 / fp32, "auto_picks": chosen["precision"]}


def scanvi_all(adata) -> dict:
    """scVI then scANVI on the 2,000 most variable genes (scvi-tools' default epochs), trained and applied to all cells."""
    import scvi

    from sctransformer_tools.pp import align_genes, highly_variable_genes

    start = time.perf_counter()
    genes = highly_variable_genes(adata, 2000)
    ref = align_genes(adata, genes)
    ref.obs = adata.obs[["cell_type"]].astype(str).copy()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        scvi.model.SCVI.setup_anndata(ref, labels_key="cell_type")
        vae = scvi.model.SCVI(ref, n_latent=10)
        vae.train(enable_progress_bar=False, accelerator="cpu")
        model = scvi.model.SCANVI.from_scvi_model(vae, unlabeled_category="__unlabeled__", labels_key="cell_type")
        model.train(enable_progress_bar=False, accelerator="cpu")
        pred = model.predict(ref)
    return {
        "wall_s": time.perf_counter() - start,
        "scvi_epochs": int(len(vae.history["elbo_train"])),
        "scanvi_epochs": int(len(model.history["elbo_train"])),
        "training_accuracy": float(np.mean(np.asarray(pred) == ref.obs["cell_type"].to_numpy())),
    }


def sctransformer_all(adata) -> tuple[dict, object, object]:
    """Default setup + train + predict on all cells; the trained model for the throughput part."""
    import sctransformer_tools as sct

    ref = adata.copy()
    start = time.perf_counter()
    sct.SCTransformer.setup_anndata(ref, labels_key="cell_type")
    model = sct.SCTransformer(ref)
    model.train(enable_progress_bar=False)
    trained = time.perf_counter()
    pred = model.predict(ref)
    end = time.perf_counter()
    return (
        {
            "wall_s": end - start,
            "train_s": trained - start,
            "predict_s": end - trained,
            "epochs": int(len(model.history["train_loss"])),
            "precision": model.precision_["precision"],
            "training_accuracy": float(np.mean(pred == ref.obs["cell_type"].astype(str).to_numpy())),
        },
        model,
        ref,
    )


def throughput(model, adata) -> dict:
    """Cells per second of predict, get_latent_representation and get_attention on ``adata`` (a copy)."""
    query = adata.copy()
    out = {}
    for name, call in (
        ("predict", lambda: model.predict(query)),
        ("get_latent_representation", lambda: model.get_latent_representation(query)),
        ("get_attention", lambda: model.get_attention(query, groupby="cell_type")),
    ):
        start = time.perf_counter()
        call()
        out[f"{name}_cells_per_s"] = query.n_obs / (time.perf_counter() - start)
    return out


#: Gene-token budgets of a minibatch of reading compared by :func:`minibatch_sizes` (the package's
#: ``READ_TOKENS_CPU`` is the best of them), and the fixed cell count of 0.2 they are compared with.
TOKEN_BUDGETS = (4_096, 8_192, 16_384, 32_768)
FIXED_CELLS = 256


def minibatch_sizes(model, queries: dict, rounds: int = 3) -> dict:
    """``predict`` cells/s per gene-token budget of a minibatch (``batch_size=None``) and at 256 cells per
    minibatch, on each query; rounds alternate the settings and the best round of each is kept."""
    from sctransformer_tools.model import _reader

    default = _reader.READ_TOKENS_CPU
    out = {}
    try:
        for name, query in queries.items():
            query = query.copy()
            model.predict(query)  # warm-up
            settings = {f"{b} tokens": (b, None) for b in TOKEN_BUDGETS} | {
                f"{FIXED_CELLS} cells": (default, FIXED_CELLS)
            }
            best = dict.fromkeys(settings, np.inf)
            cells = {}
            for _ in range(rounds):
                for label, (budget, batch_size) in settings.items():
                    _reader.READ_TOKENS_CPU = budget
                    start = time.perf_counter()
                    model.predict(query, batch_size=batch_size)
                    best[label] = min(best[label], time.perf_counter() - start)
                    if batch_size is None:
                        with model.reader.read(query) as data:
                            cells[label] = model.reader.cells_per_minibatch(data.adata)
                    else:
                        cells[label] = batch_size
            out[name] = {
                "n_cells": int(query.n_obs),
                "cells_per_s": {label: query.n_obs / seconds for label, seconds in best.items()},
                "cells_per_minibatch": cells,
            }
    finally:
        _reader.READ_TOKENS_CPU = default
    return out


def best_token_budget(minibatch: dict) -> int:
    """The budget with the highest mean ratio of throughput to :data:`FIXED_CELLS` cells over the queries
    (ties: the smaller budget)."""
    fixed = f"{FIXED_CELLS} cells"
    ratios = {
        b: np.mean([q["cells_per_s"][f"{b} tokens"] / q["cells_per_s"][fixed] for q in minibatch.values()])
        for b in TOKEN_BUDGETS
    }
    return max(TOKEN_BUDGETS, key=lambda b: (ratios[b], -b))


def unlabelled_corpus(adata):
    """pbmc3k (labelled) and the four unlabelled 10x PBMC sets (``"Unknown"``), their shared genes, one AnnData."""
    import anndata as ad

    parts = [adata[:, :].copy()]
    parts[0].obs = pd.DataFrame({"cell_type": adata.obs["cell_type"].astype(str)}, index=adata.obs_names)
    for path in sorted(UNLABELLED.glob("*.h5ad")):
        other = ad.read_h5ad(path)
        other.obs = pd.DataFrame({"cell_type": "Unknown"}, index=other.obs_names.astype(str))
        parts.append(other)
    return ad.concat(parts, join="inner", index_unique="-")


def semi_supervised_cost(corpus) -> dict:
    """Default train + predict with unlabelled cells present, against scANVI on the same cells (its defaults)."""
    import scvi

    import sctransformer_tools as sct
    from sctransformer_tools._data import align_genes, highly_variable_genes

    ref = corpus.copy()
    start = time.perf_counter()
    sct.SCTransformer.setup_anndata(ref, labels_key="cell_type", unlabeled_category="Unknown")
    model = sct.SCTransformer(ref)
    model.train(enable_progress_bar=False)
    model.predict(ref)
    ours = time.perf_counter() - start
    start = time.perf_counter()
    genes = highly_variable_genes(corpus, 2000)
    data = align_genes(corpus, genes)
    data.obs = corpus.obs[["cell_type"]].astype(str).copy()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        scvi.model.SCVI.setup_anndata(data, labels_key="cell_type")
        vae = scvi.model.SCVI(data, n_latent=10)
        vae.train(enable_progress_bar=False, accelerator="cpu")
        scanvi = scvi.model.SCANVI.from_scvi_model(vae, unlabeled_category="Unknown", labels_key="cell_type")
        scanvi.train(enable_progress_bar=False, accelerator="cpu")
        scanvi.predict(data)
    theirs = time.perf_counter() - start
    return {
        "n_cells": int(corpus.n_obs),
        "n_unlabelled": int((corpus.obs["cell_type"] == "Unknown").sum()),
        "sctransformer_s": ours,
        "objectives": model.training_["objectives"],
        "epochs": int(model.training_["max_epochs"]),
        "scanvi_s": theirs,
        "scvi_epochs": int(len(vae.history["elbo_train"])),
        "ratio": ours / theirs,
    }


def mapping_cost(model, corpus, n_cells: int = 3500) -> dict:
    """Reference mapping of a ``n_cells`` query (the first cells of the unlabelled sets): load_query_data, train
    (defaults) and predict, in seconds."""
    import sctransformer_tools as sct

    unlabelled = corpus[corpus.obs["cell_type"] == "Unknown"]
    query = unlabelled[:n_cells].copy()
    del query.obs["cell_type"]
    start = time.perf_counter()
    query_model = sct.SCTransformer.load_query_data(query, model)
    query_model.train(enable_progress_bar=False)
    trained = time.perf_counter()
    query_model.predict(query)
    end = time.perf_counter()
    return {
        "n_cells": int(query.n_obs),
        "wall_s": end - start,
        "adapt_s": trained - start,
        "predict_s": end - trained,
        "epochs": int(query_model.mapping_["max_epochs"]),
        "objectives": query_model.mapping_["objectives"],
    }


def macro_f1_by_seed(adata, seeds=(0, 1, 2)) -> list[dict]:
    """Held-out macro-F1 and training time at the new defaults and at the previous ones, per seed."""
    from sklearn.metrics import f1_score
    from sklearn.model_selection import train_test_split

    import sctransformer_tools as sct

    rows = []
    for seed in seeds:
        train, test = train_test_split(
            np.arange(adata.n_obs), test_size=0.2, stratify=adata.obs["cell_type"], random_state=seed
        )
        for name, kwargs in (("new defaults", {}), ("previous defaults", PREVIOUS_DEFAULTS)):
            ref, query = adata[np.sort(train)].copy(), adata[np.sort(test)].copy()
            truth = query.obs.pop("cell_type").astype(str).to_numpy()
            start = time.perf_counter()
            sct.SCTransformer.setup_anndata(ref, labels_key="cell_type")
            model = sct.SCTransformer(ref, seed=seed)
            model.train(enable_progress_bar=False, **kwargs)
            seconds = time.perf_counter() - start
            pred = model.predict(query)
            rows.append(
                {
                    "seed": seed,
                    "settings": name,
                    "macro_f1": float(f1_score(truth, pred, average="macro")),
                    "accuracy": float(np.mean(pred == truth)),
                    "train_s": seconds,
                }
            )
            print(rows[-1], flush=True)
    return rows


def markdown(result: dict) -> str:
    """The README's tables from a result JSON."""
    m, s, w = result["machine"], result["step"], result["wall"]
    lines = [
        f"Machine: {m['cpu']}, {'native' if m['native_bf16'] else 'no native'} bfloat16, torch {m['torch']}, "
        f"{m['torch_threads']} threads.",
        "",
        "| | seconds | ratio |",
        "|---|---|---|",
        f"| training step, float32 | {s['float32_s']:.2f} | 1 |",
        f"| training step, bf16 autocast | {s['bf16_s']:.2f} | {s['bf16_over_float32']:.2f} |",
        f'| `precision="auto"` picks | {s["auto_picks"]} | |',
        f"| scANVI, train + predict, all of pbmc3k | {w['scanvi']['wall_s']:.0f} | 1 |",
        f"| scTransformer defaults, train + predict | {w['sctransformer']['wall_s']:.0f} | "
        f"{w['sctransformer']['wall_s'] / w['scanvi']['wall_s']:.2f} |",
    ]
    t = result["throughput"]
    lines += [
        "",
        "| | cells/s |",
        "|---|---|",
        *(f"| `{k.removesuffix('_cells_per_s')}` | {v:.0f} |" for k, v in t.items()),
    ]
    if "baseline" in result:
        b = result["baseline"]
        same = b["machine"]["cpu"] == m["cpu"] and b["machine"]["torch_threads"] == m["torch_threads"]
        where = "the same machine" if same else f"another machine ({b['machine']['cpu']}): not comparable"
        lines += ["", f"Against release {b['release']} run by the same benchmark on {where}:", ""]
        lines += [f"| | {b['release']} | now | now / {b['release']} |", "|---|---|---|---|"]
        lines.append(
            f"| scTransformer defaults, train + predict (s) | {b['wall_s']:.0f} | {w['sctransformer']['wall_s']:.0f} "
            f"| {w['sctransformer']['wall_s'] / b['wall_s']:.2f} |"
        )
        for key, value in t.items():
            if key in b["throughput"]:
                old = b["throughput"][key]
                lines.append(
                    f"| `{key.removesuffix('_cells_per_s')}` (cells/s) | {old:.0f} | {value:.0f} | {value / old:.2f} |"
                )
    if "minibatch" in result:
        mb = result["minibatch"]
        labels = list(next(iter(mb.values()))["cells_per_s"])
        lines += [
            "",
            "`predict` throughput by minibatch size (`batch_size=None`: as many cells as hold the gene-token budget; "
            f"best of rounds; the package's budget is the best mean ratio to {FIXED_CELLS} cells, "
            f"{best_token_budget(mb):,} tokens):",
            "",
            "| minibatch | " + " | ".join(f"{name} (cells per minibatch: cells/s)" for name in mb) + " |",
            "|---|" + "---|" * len(mb),
        ]
        for label in labels:
            cells = [f"{q['cells_per_minibatch'][label]}: {q['cells_per_s'][label]:.0f}" for q in mb.values()]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if "mapping" in result:
        mp = result["mapping"]
        lines += [
            "",
            f"Reference mapping of a {mp['n_cells']:,}-cell query (10x PBMCs of other chemistries): "
            f"{mp['wall_s']:.0f} s ({mp['adapt_s']:.0f} s adapting, {mp['epochs']} epochs of "
            f"{' + '.join(mp['objectives'])}; {mp['predict_s']:.0f} s predicting).",
        ]
    if "semi_supervised" in result:
        ss = result["semi_supervised"]
        lines += [
            "",
            f"With {ss['n_unlabelled']:,} unlabelled cells beside pbmc3k ({ss['n_cells']:,} cells): scTransformer's "
            f"default train + predict {ss['sctransformer_s']:.0f} s, scANVI's {ss['scanvi_s']:.0f} s "
            f"(ratio {ss['ratio']:.2f}).",
        ]
    if result.get("macro_f1"):
        rows = result["macro_f1"]
        by = {(r["settings"], r["seed"]): r for r in rows}
        seeds = sorted({r["seed"] for r in rows})
        lines += [
            "",
            "| seed | macro-F1 new | previous | difference | train s new | previous |",
            "|---|---|---|---|---|---|",
        ]
        diffs = []
        for seed in seeds:
            new, old = by[("new defaults", seed)], by[("previous defaults", seed)]
            diffs.append(new["macro_f1"] - old["macro_f1"])
            lines.append(
                f"| {seed} | {new['macro_f1']:.3f} | {old['macro_f1']:.3f} | {diffs[-1]:+.3f} | "
                f"{new['train_s']:.0f} | {old['train_s']:.0f} |"
            )
        new = [by[("new defaults", s)]["macro_f1"] for s in seeds]
        old = [by[("previous defaults", s)]["macro_f1"] for s in seeds]
        lines.append(
            f"| mean | {np.mean(new):.3f} | {np.mean(old):.3f} | {np.mean(diffs):+.3f} ± {np.std(diffs, ddof=1):.3f} | | |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "annotation_speed.json")
    parser.add_argument("--skip-f1", action="store_true", help="leave out the macro-F1 comparison (part 4)")
    parser.add_argument("--skip-semi", action="store_true", help="leave out the semi-supervised cost (part 6)")
    parser.add_argument("--markdown", type=Path, help="print the tables of an existing result JSON and stop")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a result JSON of this benchmark run by an earlier release on this machine, kept beside today's",
    )
    parser.add_argument("--baseline-release", default="0.2.0", help="the release that wrote --baseline")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return
    import anndata as ad

    adata = ad.read_h5ad(PBMC3K)
    result = {
        "machine": machine(),
        "command": "python benchmarks/annotation_speed.py"
        + (" --skip-f1" if args.skip_f1 else "")
        + (" --skip-semi" if args.skip_semi else ""),
    }
    result["step"] = step_times(adata)
    print(result["step"], flush=True)
    scanvi = scanvi_all(adata)
    print("scanvi", scanvi, flush=True)
    ours, model, ref = sctransformer_all(adata)
    print("sctransformer", ours, flush=True)
    result["wall"] = {"scanvi": scanvi, "sctransformer": ours, "ratio": ours["wall_s"] / scanvi["wall_s"]}
    result["throughput"] = throughput(model, adata)
    print(result["throughput"], flush=True)
    result["minibatch"] = minibatch_sizes(
        model, {"pbmc3k": adata, "pbmc1k 10x v3": ad.read_h5ad(UNLABELLED / "pbmc1k_10xv3.h5ad")}
    )
    print("minibatch", result["minibatch"], flush=True)
    corpus = unlabelled_corpus(adata)
    result["mapping"] = mapping_cost(model, corpus)
    print("mapping", result["mapping"], flush=True)
    if not args.skip_semi:
        result["semi_supervised"] = semi_supervised_cost(corpus)
        print("semi-supervised", result["semi_supervised"], flush=True)
    if not args.skip_f1:
        result["macro_f1"] = macro_f1_by_seed(adata)
    if args.baseline:
        before = json.loads(args.baseline.read_text())
        result["baseline"] = {
            "release": args.baseline_release,
            "machine": before["machine"],
            "command": before.get("command"),
            "wall_s": before["wall"]["sctransformer"]["wall_s"],
            "scanvi_wall_s": before["wall"]["scanvi"]["wall_s"],
            "throughput": before["throughput"],
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(markdown(result))


if __name__ == "__main__":
    main()
