"""Cost of GRN-masked attention: dense masked SDPA vs the package's edge-based (sparse) path.

For ``genes`` gene tokens per cell (every token present, as in a panel of that size) and the real
CollecTRI edges among them (or as many random edges), one :class:`~sctransformer_tools.nn.MaskedMultiheadAttention`
layer (d_model 128, 4 heads) runs forward + backward on ``batch`` cells. Genes are the CollecTRI genes
ranked by degree (hub TFs and their most regulated targets first); beyond the ~6,700 CollecTRI genes, the
panel is filled with genes without edges (they attend to themselves only). Each measurement runs in its
own process: time is the median of the repeats; memory, measured in a second process, is the peak
resident set size above the process's footprint once inputs are built (Linux ``VmHWM``, reset through
``/proc/self/clear_refs``), with glibc told to return every freed block above 64 kB to the system so that
the RSS follows the live tensors (that costs page faults, hence the separate timing process). A
run that cannot allocate under the memory cap (``--mem-cap-gb``) or exceeds ``--timeout`` gives ``null``.

Usage (from the project root)::

    SCTRANSFORMER_TOOLS_DATA=../shared/data/regulons python benchmarks/attention.py --quick
    SCTRANSFORMER_TOOLS_DATA=../shared/data/regulons python benchmarks/attention.py \
        --out benchmarks/results/attention.json --plot benchmarks/results/attention.png

``--quick`` runs 1,000 and 4,000 genes, batch 8, fp32, real edges (under 3 minutes) and prints one JSON
object whose ``"grid"`` holds records with ``genes``, ``edges``, ``batch``, ``dtype``, ``dense_s``,
``grn_s``, ``dense_mb``, ``grn_mb``. ``grn`` is the package's default sparse layer. Every fp32 row also measures ``floor``: a bias-free ``d_model x d_model`` linear
layer in the same harness, i.e. what any layer that maps the tokens to new tokens costs here (its output,
the loss's temporaries and the input gradient: ~4 tensors of ``batch x genes x d_model``);
``memory_ratio_above_floor`` compares the two paths' memory beyond it. In the full run, rows of batch 8,
fp32, real edges also measure the fused sparse layer (``grn_fused_*``:
:class:`~sctransformer_tools.nn.MaskedMultiheadAttention` with ``fused=True``, a few cells and one head at a time,
projections recomputed in backward) and time the attention proper from given q, k, v (``*_core_s``, ``*_core_mb``: without the QKV
and output projections). The full run adds 500, 2,000 and 8,000 genes, batch 32, bf16 and random edges.
``--model`` adds model-level figures of the default model on pbmc3k (training and inference cells/s, model
FLOP utilisation against this machine's measured matmul peak). ``--whole-panel`` trains a model over every
CollecTRI gene of Darmanis 2015 (brain; ~8,000-gene panel with the HVGs, every expressed panel gene a token:
thousands per cell) with the sparse and with the dense attention path, at batch 32 and at batch 256, where
the dense path needs more than the memory cap.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PBMC3K = ROOT.parent / "shared" / "data" / "scrna" / "pbmc3k_seurat_labels.h5ad"
D_MODEL, N_HEADS = 128, 4
#: glibc returns every freed block above 64 kB to the system, so that peak RSS follows the live tensors
#: (by default it keeps freed blocks around, and the peak depends on the order of allocations)
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}


# ----------------------------------------------------------------------------- inputs
def panel_edges(n_genes: int, edge_kind: str, seed: int = 0):
    """``(n_pairs, 2)`` (query, key) pairs among ``n_genes`` genes: real CollecTRI edges or as many random."""
    import numpy as np

    import sctransformer_tools as sct

    net = sct.grn.load_regulons("collectri")
    degree = net["source"].value_counts().add(net["target"].value_counts(), fill_value=0).sort_values(ascending=False)
    genes = list(degree.index[:n_genes]) + [f"filler{i}" for i in range(max(0, n_genes - len(degree)))]
    edges = sct.grn.regulon_edges_in(genes, net)
    mask = sct.grn.build_mask(n_genes, edges, kind="grn" if edge_kind == "real" else "random", seed=seed)
    return np.asarray(mask.pairs, dtype=np.int64)


def _peak_rss_reset() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def worker(genes: int, batch: int, dtype: str, edge_kind: str, method: str, repeats: int, part: str = "layer") -> dict:
    """One measurement (run in a fresh process).

    ``part="layer"``: the whole attention layer (QKV and output projections included) from ``x``.
    ``part="core"``: the attention proper from given ``q, k, v`` (what the two paths do differently):
    its memory is the working memory beyond the inputs.
    """
    import torch

    from sctransformer_tools.nn import MaskedMultiheadAttention, TokenPairs

    torch.manual_seed(0)
    pairs = torch.as_tensor(panel_edges(genes, edge_kind))
    n_edges = len(pairs)
    self_loops = torch.arange(genes)[:, None].expand(genes, 2)
    pairs = torch.cat([pairs, self_loops])
    layer = MaskedMultiheadAttention(D_MODEL, N_HEADS, fused=method == "grn_fused")
    x = torch.randn(batch, genes, D_MODEL, requires_grad=True)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16")
    record = {"genes": genes, "edges": n_edges, "batch": batch, "dtype": dtype, "edge_kind": edge_kind}
    name = method if part == "layer" else f"{method}_core"
    if method == "floor":
        kwargs = {}
    elif method == "dense":
        allowed = torch.zeros(genes, genes, dtype=torch.bool)
        allowed[pairs[:, 0], pairs[:, 1]] = True
        kwargs = {"allowed": allowed[None].expand(batch, genes, genes)}
    else:
        offset = (torch.arange(batch) * genes)[:, None]
        query = (pairs[:, 0][None] + offset).reshape(-1)
        key = (pairs[:, 1][None] + offset).reshape(-1)
        order = torch.argsort(query, stable=True)
        cell = torch.arange(batch * genes) // genes
        kwargs = {"pairs": TokenPairs(query[order], key[order], batch * genes, group=cell)}

    if method == "floor":  # a bias-free d x d linear map: what any layer costs in this harness

        def run():
            return layer.out(x)
    elif part == "core":
        shape = (batch, genes, N_HEADS, D_MODEL // N_HEADS)
        qkv = [torch.randn(shape, requires_grad=True) for _ in range(3)]
        if method == "dense":
            mask = kwargs["allowed"]

            def run():
                return layer._dense(*qkv, mask, None, False)[0]
        else:
            flat = [z.view(-1, *shape[2:]) for z in qkv]

            def run():
                return layer._sparse(*flat, kwargs["pairs"], None)[0]
    else:

        def run():
            return layer(x, **kwargs)[0]

    def step() -> None:
        if method.startswith("grn"):  # the pairs' CSR structure is built per minibatch: count it
            p = kwargs["pairs"]
            kwargs["pairs"] = TokenPairs(p.query, p.key, p.n_tokens, group=p.group)
        with autocast:
            out = run()
        out.float().square().mean().backward()
        x.grad = None
        layer.zero_grad(set_to_none=True)

    base = _status_mb("VmRSS")
    _peak_rss_reset()
    times = []
    try:
        for i in range(repeats + 1):  # the first run warms up
            start = time.perf_counter()
            step()
            if i:
                times.append(time.perf_counter() - start)
    except (RuntimeError, MemoryError) as err:  # cannot allocate under the cap
        record.update({f"{name}_s": None, f"{name}_mb": None, "error": str(err).splitlines()[0][:200]})
        return record
    record[f"{name}_s"] = round(sorted(times)[len(times) // 2], 4)
    record[f"{name}_mb"] = round(_status_mb("VmHWM") - base, 1)
    return record


def _run_worker(args: list, mem_cap_gb: float, timeout: float, name: str, env: dict) -> dict:
    cmd = [sys.executable, __file__, "--worker", json.dumps(args)]
    env = dict(os.environ, SCT_BENCH_MEM_CAP_GB=str(mem_cap_gb), **env)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        return {f"{name}_s": None, f"{name}_mb": None, f"{name}_error": f"over {timeout} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        tail = (done.stderr.strip().splitlines() or ["killed"])[-1][:200]
        return {f"{name}_s": None, f"{name}_mb": None, f"{name}_error": tail}
    record = json.loads(lines[-1])
    if "error" in record:
        record[f"{name}_error"] = record.pop("error")
    return record


def measure(genes, batch, dtype, edge_kind, method, repeats, mem_cap_gb, timeout, part="layer") -> dict:
    """Time (default allocator, median of ``repeats``) and peak memory (a second process, see above)."""
    name = method if part == "layer" else f"{method}_core"
    timed = _run_worker([genes, batch, dtype, edge_kind, method, repeats, part], mem_cap_gb, timeout, name, {})
    if timed.get(f"{name}_s") is None:
        return timed
    sized = _run_worker([genes, batch, dtype, edge_kind, method, 1, part], mem_cap_gb, timeout, name, MALLOC_ENV)
    return timed | {f"{name}_mb": sized.get(f"{name}_mb")}


def grid(configs, repeats, mem_cap_gb, timeout, core: bool = True) -> list[dict]:
    records = []
    for genes, batch, dtype, edge_kind in configs:
        record = {}
        for method in ("grn", "dense"):
            record.update(measure(genes, batch, dtype, edge_kind, method, repeats, mem_cap_gb, timeout))
        if dtype == "fp32":  # the memory and time of a bare linear layer in the same harness
            record.update(measure(genes, batch, dtype, edge_kind, "floor", repeats, mem_cap_gb, timeout))
        if core and (batch, dtype, edge_kind) == (8, "fp32", "real"):  # attention proper, without projections
            record.update(measure(genes, batch, dtype, edge_kind, "grn_fused", repeats, mem_cap_gb, timeout))
            for method in ("grn", "dense"):
                record.update(measure(genes, batch, dtype, edge_kind, method, repeats, mem_cap_gb, timeout, "core"))
        record = {k: record.get(k) for k in ("genes", "edges", "batch", "dtype", "edge_kind")} | {
            k: v for k, v in record.items() if k not in ("genes", "edges", "batch", "dtype", "edge_kind")
        }
        record["genes"], record["batch"], record["dtype"], record["edge_kind"] = genes, batch, dtype, edge_kind
        if record.get("dense_s") and record.get("grn_s"):
            record["time_ratio"] = round(record["dense_s"] / record["grn_s"], 1)
        if record.get("dense_mb") and record.get("grn_mb"):
            record["memory_ratio"] = round(record["dense_mb"] / max(record["grn_mb"], 1.0), 1)
            if record.get("floor_mb"):  # memory beyond what a bare linear layer takes
                above = [record[f"{m}_mb"] - record["floor_mb"] for m in ("dense", "grn")]
                record["memory_ratio_above_floor"] = round(above[0] / max(above[1], 1.0), 1)
        if record.get("dense_core_s") and record.get("grn_core_s"):
            record["core_time_ratio"] = round(record["dense_core_s"] / record["grn_core_s"], 1)
        if record.get("dense_core_mb") and record.get("grn_core_mb"):
            record["core_memory_ratio"] = round(record["dense_core_mb"] / max(record["grn_core_mb"], 1.0), 1)
        print(json.dumps(record), file=sys.stderr, flush=True)
        records.append(record)
    return records


# ----------------------------------------------------------------------------- machine and model
def matmul_peak_gflops(dtype: str, n: int = 2048, repeats: int = 5) -> float:
    """Best observed GFLOP/s of an ``n x n`` matmul on this machine."""
    import torch

    dt = torch.bfloat16 if dtype == "bf16" else torch.float32
    a, b = torch.randn(n, n, dtype=dt), torch.randn(n, n, dtype=dt)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return round(2 * n**3 / best / 1e9, 1)


def _sparse_aware_flops() -> dict:
    """FLOP formulas for torch's counter that count sparse CSR products by their stored entries.

    The stock formulas count a sparse ``(m, m)`` @ dense ``(m, d)`` product as dense (``2 m² d``) and
    skip SDDMM; the sparse attention does ``2 nnz d`` in each.
    """
    import torch
    from torch.utils import flop_counter

    aten = torch.ops.aten

    def sparse_or(dense_formula, *positions):
        def formula(*args, out_val=None, **kwargs):
            for i in positions:
                if isinstance(args[i], torch.Tensor) and args[i].layout != torch.strided:
                    other = args[i + 1] if i + 1 < len(args) and isinstance(args[i + 1], torch.Tensor) else None
                    return 2 * args[i]._nnz() * (other.shape[-1] if other is not None else 1)
            return dense_formula(*args, out_val=out_val, **kwargs)  # the stock formula (takes tensors)

        formula._get_raw = True
        return formula

    def sddmm(pattern, mat1, mat2, *args, out_val=None, **kwargs):
        return 2 * pattern._nnz() * mat1.shape[-1]

    sddmm._get_raw = True
    return {
        aten.mm: sparse_or(flop_counter.mm_flop, 0),
        aten.addmm: sparse_or(flop_counter.addmm_flop, 1),
        aten.sparse_sampled_addmm: sddmm,
    }


def model_figures(max_epochs: int = 3, adata=None, labels_key: str = "cell_type", **model_kwargs) -> dict:
    """Training / inference cells per second and FLOP utilisation of the default model on pbmc3k.

    ``adata`` (default: pbmc3k), ``labels_key`` and ``model_kwargs`` change the data and the model (the tests run a
    tiny model on scanpy's pbmc68k_reduced).
    """
    import anndata as ad
    import numpy as np
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    import sctransformer_tools as sct

    adata = ad.read_h5ad(PBMC3K) if adata is None else adata
    sct.SCTransformer.setup_anndata(adata, labels_key=labels_key)
    model = sct.SCTransformer(adata, **model_kwargs)
    start = time.perf_counter()
    model.train(max_epochs=max_epochs, enable_progress_bar=False, train_size=1.0)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    model.predict(adata)
    predict_s = time.perf_counter() - start

    # FLOPs of one forward + backward over a sample of cells, in the training precision
    loader = model._make_data_loader(adata=adata, indices=np.arange(256), batch_size=256)
    tensors = next(iter(loader))
    precision = model.precision_["precision"]  # what train(precision="auto") chose here
    module = model.module.train()
    with FlopCounterMode(display=False, custom_mapping=_sparse_aware_flops()) as counter:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
            loss = module.loss(tensors)  # the classification loss, as training computes it
        loss.loss.backward()
    module.zero_grad(set_to_none=True)
    flops_per_cell = counter.get_total_flops() / 256
    dtype = "bf16" if precision == "bf16-mixed" else "fp32"
    peak = matmul_peak_gflops(dtype)
    train_cells_per_s = adata.n_obs * max_epochs / train_s
    return {
        "cells": adata.n_obs,
        "panel_genes": model.mask_summary()["panel_genes"],
        "precision": precision,
        "train_cells_per_s": round(train_cells_per_s, 1),
        "inference_cells_per_s": round(adata.n_obs / predict_s, 1),
        "train_gflop_per_cell": round(flops_per_cell / 1e9, 3),
        "matmul_peak_gflops": peak,
        "mfu": round(train_cells_per_s * flops_per_cell / (peak * 1e9), 4),
        "threads": torch.get_num_threads(),
    }


DARMANIS = ROOT.parent / "shared" / "data" / "scrna" / "darmanis2015_brain.h5ad"


def whole_panel_worker(path: str, attention: str, steps: int, batch_size: int) -> dict:
    """Train steps of a model over every CollecTRI gene of a dataset (+ HVGs), all expressed genes as tokens."""
    import warnings

    import anndata as ad

    import sctransformer_tools as sct

    warnings.simplefilter("ignore")
    adata = ad.read_h5ad(path)
    sct.SCTransformer.setup_anndata(adata, labels_key="cell_type", regulons="collectri")
    model = sct.SCTransformer(adata, max_tokens=16_384, attention=attention)
    summary = model.mask_summary()
    record = {"attention": attention, "panel_genes": summary["panel_genes"], "edges": summary["edges"]}
    base = _status_mb("VmRSS")
    _peak_rss_reset()
    start = time.perf_counter()
    try:
        model.train(
            max_epochs=1, batch_size=batch_size, train_size=1.0, limit_train_batches=steps, enable_progress_bar=False
        )
    except (RuntimeError, MemoryError) as err:
        return record | {"step_s": None, "peak_mb": None, "error": str(err).splitlines()[0][:200]}
    return record | {
        "step_s": round((time.perf_counter() - start) / steps, 2),
        "peak_mb": round(_status_mb("VmHWM") - base, 1),
    }


def whole_panel(mem_cap_gb: float, timeout: float, steps: int = 4, batch_sizes=(32, 256)) -> list[dict]:
    """The whole-panel model on Darmanis 2015 (brain, full-length: cells express thousands of panel genes).

    At the larger batch size the dense path needs more than ``mem_cap_gb`` (its masks alone are
    ``batch x tokens²``): the sparse path trains where dense does not fit.
    """
    records = []
    for batch_size, attention in itertools.product(batch_sizes, ("sparse", "dense")):
        cmd = [
            sys.executable,
            __file__,
            "--whole-panel-worker",
            json.dumps([str(DARMANIS), attention, steps, batch_size]),
        ]
        env = dict(os.environ, SCT_BENCH_MEM_CAP_GB=str(mem_cap_gb))
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
            lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
            record = (
                json.loads(lines[-1])
                if lines
                else {
                    "attention": attention,
                    "step_s": None,
                    "peak_mb": None,
                    "error": (done.stderr.strip().splitlines() or ["killed"])[-1][:200],
                }
            )
        except subprocess.TimeoutExpired:
            record = {"attention": attention, "step_s": None, "peak_mb": None, "error": f"over {timeout} s"}
        record["batch_size"] = batch_size
        print(json.dumps(record), file=sys.stderr, flush=True)
        records.append(record)
    return records


def plot(records: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    groups = sorted({(r["batch"], r["dtype"]) for r in records if r["edge_kind"] == "real"})
    for batch, dtype in groups:
        rows = sorted(
            (r for r in records if (r["batch"], r["dtype"], r["edge_kind"]) == (batch, dtype, "real")),
            key=lambda r: r["genes"],
        )
        for method, style in (("dense", "--"), ("grn", "-")):
            for ax, unit in zip(axes, ("s", "mb"), strict=True):
                pts = [(r["genes"], r[f"{method}_{unit}"]) for r in rows if r.get(f"{method}_{unit}")]
                if pts:
                    ax.plot(*zip(*pts, strict=True), style, marker="o", label=f"{method} batch {batch} {dtype}")
    for ax, label in zip(axes, ("forward + backward (s)", "peak memory (MB)"), strict=True):
        ax.set(xscale="log", yscale="log", xlabel="genes (tokens per cell)", ylabel=label)
        ticks = sorted({r["genes"] for r in records})
        ax.set_xticks(ticks, [f"{t:,}" for t in ticks])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Masked attention, CollecTRI edges, d_model 128, 4 heads (missing points: did not fit)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1,000 and 4,000 genes, batch 8, fp32")
    parser.add_argument("--model", action="store_true", help="also measure the default model on pbmc3k")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mem-cap-gb", type=float, default=16.0, help="address-space cap of each run")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per run before it counts as null")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--whole-panel", action="store_true", help="also train over every CollecTRI gene (Darmanis)")
    parser.add_argument("--grid", action=argparse.BooleanOptionalAction, default=True, help="run the layer grid")
    parser.add_argument("--genes", type=int, nargs="+", default=None, help="only these gene counts (fp32, real edges)")
    parser.add_argument("--batches", type=int, nargs="+", default=[8], help="batch sizes with --genes")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--whole-panel-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker is not None or args.whole_panel_worker is not None:
        cap = float(os.environ.get("SCT_BENCH_MEM_CAP_GB", "16")) * 2**30
        _, hard = resource.getrlimit(resource.RLIMIT_DATA)
        resource.setrlimit(resource.RLIMIT_DATA, (int(cap), hard))
        if args.worker is not None:
            print(json.dumps(worker(*json.loads(args.worker))))
        else:
            print(json.dumps(whole_panel_worker(*json.loads(args.whole_panel_worker))))
        return

    import torch

    peak = {"fp32": matmul_peak_gflops("fp32")}
    native_bf16 = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    if not args.quick and not args.genes:
        peak["bf16"] = matmul_peak_gflops("bf16", n=2048 if native_bf16 else 256)
    if args.quick:
        configs = [(g, 8, "fp32", "real") for g in (1000, 4000)]
    elif args.genes:
        configs = [(g, b, "fp32", "real") for b in args.batches for g in args.genes]
    else:
        configs = [
            (g, b, dt, ek)
            for ek in ("real", "random")
            for dt in ("fp32", "bf16")
            for b in (8, 32)
            for g in (500, 1000, 2000, 4000, 8000)
            if (ek == "real" or b == 8)  # random edges: the batch-8 rows suffice to compare with real ones
            # without native bfloat16 matmuls (no AVX512-BF16 / AMX) bf16 is emulated and slower than fp32:
            # measure it where it finishes, to show it
            and (dt == "fp32" or native_bf16 or (ek == "real" and b == 8 and g <= 1000))
        ]
    result = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "matmul_peak_gflops": peak,
            "native_bf16": native_bf16,
        },
        "layer": {"d_model": D_MODEL, "heads": N_HEADS, "self_loops": True, "mem_cap_gb": args.mem_cap_gb},
        "grid": grid(configs, args.repeats, args.mem_cap_gb, args.timeout, core=not args.quick) if args.grid else [],
    }
    if args.whole_panel:
        result["whole_panel"] = whole_panel(args.mem_cap_gb, args.timeout)
    if args.model:
        result["model"] = model_figures()
    if (
        args.out is not None and args.out.exists() and not args.quick and not args.genes
    ):  # keep the sections not run this time
        previous = json.loads(args.out.read_text())
        for section in ("grid", "whole_panel", "model"):
            if not result.get(section) and previous.get(section):
                result[section] = previous[section]
    text = json.dumps(result, indent=None if args.quick else 1)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    if args.plot is not None and result["grid"]:
        plot(result["grid"], args.plot)


if __name__ == "__main__":
    main()
