"""The README's result tables, generated from the committed records (no table in the README is typed by hand).

Each table sits between ``<!-- table:NAME -->`` and ``<!-- /table -->`` in README.md and is rendered here from
(the documentation's results pages, ``docs/results/``, show them all: ``docs/conf.py`` calls :func:`tables`):

- ``defaults``: ``docs/results/evaluation.json`` (profiles ``defaults``, ``unlabelled``, ``mapping``,
  ``no_tokens``: today's defaults in each training mode beside the peers, macro-F1 mean ± sd over seeds);
- ``defaults_reading``: the same records in words (each mode against the best peer and against labelled-only
  training, and the model without its Transformer layers, paired by seed);
- ``allen_in_donor``: ``benchmarks/results/semi_supervised.jsonl`` (experiment ``in_donor``) beside the evaluation's
  Allen M1 records: the default model against the peers within the training donor and on the other donor;
- ``mapping_reading``: the evaluation's mapped and labelled-only runs, the mapping validation of
  ``benchmarks/results/semi_supervised.jsonl`` and the calls mapping changes on pbmc3k -> pbmc68k
  (``benchmarks/results/cross_study_confusion.json``), in words;
- ``cross_study_reading``: ``benchmarks/results/cross_study_confusion.json``: pbmc3k -> pbmc68k per hard type, the
  correct calls of each method and the marker genes the split lacks;
- ``label_efficiency``: ``benchmarks/results/semi_supervised.jsonl`` and the peers of
  ``benchmarks/results/pretraining.jsonl`` (``docs/results/label_efficiency.md``'s first table);
- ``evaluation``: ``docs/results/evaluation.json`` (full profile: macro-F1 mean ± sd over seeds per dataset,
  and the pooled paired comparison of the GRN mask with its controls);
- ``headline``: the same records, only the pooled comparison of the GRN mask with its controls;
- ``headline_reading``: that comparison in words (pairs higher, lower and tied; the smallest t-test p);
- ``pretraining``: ``benchmarks/results/pretraining.jsonl`` (``benchmarks/pretraining.py``), pretrained arms minus
  training from scratch, paired by seed (:func:`harness.pretraining_report.headline`);
- ``pretraining_query``: the same records, MAM with the query's cells in the corpus minus without them
  (cross-study; the pretraining tutorial's section 5);
- ``speed``: ``benchmarks/results/annotation_speed.json`` (``benchmarks/annotation_speed.py``);
- ``first_hour``: ``benchmarks/results/first_hour.json`` (``benchmarks/first_hour.py``);
- ``attention``: ``benchmarks/results/attention.json`` (``benchmarks/attention.py``);
- ``out_of_core``: ``benchmarks/results/out_of_core.json`` (``benchmarks/out_of_core.py``).

The tutorials' markdown cells (``tutorials/*.ipynb``) may mark the same blocks; they are rendered too (the stored
outputs are left as they are).

Usage (from the project root)::

    python benchmarks/readme_tables.py           # rewrite the tables in README.md and the tutorials' markdown
    python benchmarks/readme_tables.py --check   # exit 1 if either differs from the records
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from annotation_speed import markdown as speed_markdown  # noqa: E402
from first_hour import markdown as first_hour_markdown  # noqa: E402
from harness.pretraining_report import headline as pretraining_headline  # noqa: E402
from harness.pretraining_report import load_records as load_pretraining_records  # noqa: E402
from harness.pretraining_report import query_cells_reading  # noqa: E402
from harness.records import load_records, variant_name  # noqa: E402
from harness.semi_supervised_report import (  # noqa: E402
    in_donor_reading,
    label_efficiency_frame,
    label_efficiency_lines,
    paired,
)
from harness.stats import TIE, pooled_comparison  # noqa: E402

DATASETS = {
    "pbmc3k": "pbmc3k (80/20)",
    "darmanis2015": "Darmanis (held-out donors)",
    "allen_m1": "Allen M1 (donor → donor)",
    "pbmc3k_to_pbmc68k": "pbmc3k → pbmc68k",
}
VARIANTS = {
    "grn (collectri)": "grn (CollecTRI)",
    "shuffled (collectri)": "shuffled (CollecTRI)",
    "random (collectri)": "random (CollecTRI)",
    "dense (collectri)": "dense",
    "grn (dorothea_ABC)": "grn (DoRothEA A–C)",
    "shuffled (dorothea_ABC)": "shuffled (DoRothEA A–C)",
    "logistic_regression": "logistic regression",
    "celltypist": "CellTypist",
    "scanvi": "scANVI",
}
#: Rows of the table of today's defaults: (profile, method, mask) -> label. scTransformer rows are its GRN mask
#: (CollecTRI) in each training mode, and its degree-preserving shuffle trained on the labelled cells.
DEFAULT_ROWS = {
    ("defaults", "sctransformer", "grn"): "scTransformer, labelled cells",
    ("unlabelled", "sctransformer", "grn"): "scTransformer, + test cells unlabelled",
    ("mapping", "sctransformer", "grn"): "scTransformer, mapped onto the test cells",
    ("defaults", "sctransformer", "shuffled"): "scTransformer, shuffled mask (labelled cells)",
    ("no_tokens", "sctransformer", "grn"): "scTransformer without its Transformer layers (labelled cells)",
    ("defaults", "logistic_regression", None): "logistic regression",
    ("defaults", "celltypist", None): "CellTypist",
    ("defaults", "celltypist_majority", None): "CellTypist, majority voting",
    ("defaults", "scanvi", None): "scANVI",
    ("defaults", "scanvi_surgery", None): "scANVI + scArches surgery",
}
_SCT_MODES = [k for k in DEFAULT_ROWS if k[1] == "sctransformer" and k[2] == "grn" and k[0] != "no_tokens"]
_PEER_ROWS = [k for k in DEFAULT_ROWS if k[1] != "sctransformer"]


def _defaults_frame(records: list[dict]) -> pd.DataFrame:
    profiles = {k[0] for k in DEFAULT_ROWS}
    rows = [r for r in records if r.get("profile") in profiles and not r.get("error")]
    frame = pd.DataFrame(rows, columns=["profile", "dataset", "method", "mask", "regulons", "seed", "macro_f1"])
    frame = frame[(frame["method"] != "sctransformer") | (frame["regulons"] == "collectri")]
    frame["mask"] = frame["mask"].where(frame["method"] == "sctransformer", None)
    frame["row"] = [
        DEFAULT_ROWS.get((p, m, k)) for p, m, k in zip(frame["profile"], frame["method"], frame["mask"], strict=True)
    ]
    frame["macro_f1"] = pd.to_numeric(frame["macro_f1"], errors="coerce")
    return frame.dropna(subset=["row", "macro_f1"])


def defaults_table(records: list[dict]) -> str:
    """Today's defaults in each training mode and the peers: macro-F1 per dataset, mean ± sd (n seeds)."""
    frame = _defaults_frame(records)
    datasets = [d for d in DATASETS if d in set(frame["dataset"])]
    if not datasets:
        return "(not measured yet at today's defaults)"
    lines = ["| macro-F1 | " + " | ".join(DATASETS[d] for d in datasets) + " |", "|---" * (len(datasets) + 1) + "|"]
    for label in DEFAULT_ROWS.values():
        cells = []
        for dataset in datasets:
            values = frame[(frame["row"] == label) & (frame["dataset"] == dataset)]["macro_f1"]
            if values.empty:
                cells.append("–")
            else:
                sd = f" ± {values.std(ddof=1):.3f}" if len(values) > 1 else ""
                cells.append(f"{values.mean():.3f}{sd} (n={len(values)})")
        if any(c != "–" for c in cells):
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _paired(frame: pd.DataFrame, a: str, b: str) -> dict | None:
    """``a - b`` paired by dataset and seed (rows of :func:`_defaults_frame`, one run per row, dataset and seed)."""
    return paired(frame.rename(columns={"row": "arm"}), a, b, ("dataset", "seed"))


def _said(stats: dict) -> str:
    return f"{stats['mean']:+.3f} (higher in {stats['wins']}, lower in {stats['losses']}, tied in {stats['ties']} of {stats['n_pairs']})"


def defaults_reading(records: list[dict]) -> str:
    """The table of today's defaults in words, every number computed from the records (paired by seed)."""
    frame = _defaults_frame(records)
    if frame.empty:
        return "(not measured yet at today's defaults)"
    sentences = []
    for dataset in [d for d in DATASETS if d in set(frame["dataset"])]:
        part = frame[frame["dataset"] == dataset]
        means = part.groupby("row")["macro_f1"].mean()
        peers = [DEFAULT_ROWS[k] for k in _PEER_ROWS if DEFAULT_ROWS[k] in means]
        if not peers:
            continue
        peer = max(peers, key=means.get)  # the peer of highest mean: the comparison least kind to scTransformer
        said = []
        for mode in [DEFAULT_ROWS[k] for k in _SCT_MODES if DEFAULT_ROWS[k] in means]:
            stats = _paired(part, mode, peer)
            if stats:
                said.append(f"{mode.removeprefix('scTransformer, ')} {_said(stats)}")
        if said:
            sentences.append(f"{DATASETS[dataset]}, minus {peer} (the best peer there): " + ", ".join(said))
    text = (
        "scTransformer's macro-F1 in each training mode minus the best peer's, paired by seed (a tie being "
        f"|difference| < {TIE}): " + "; ".join(sentences) + "."
    )
    tokens = _paired(frame, DEFAULT_ROWS[("no_tokens", "sctransformer", "grn")], DEFAULT_ROWS[_SCT_MODES[0]])
    shuffled = _paired(frame, DEFAULT_ROWS[_SCT_MODES[0]], DEFAULT_ROWS[("defaults", "sctransformer", "shuffled")])
    if tokens:
        text += (
            " Without its Transformer layers (the expression profile alone) minus the default model, pooled over "
            f"datasets and seeds: {_said(tokens)} pairs."
        )
    if shuffled:
        text += f" The GRN mask minus its degree-preserving shuffle: {_said(shuffled)} pairs."
    return text


def label_efficiency_table() -> str:
    """The first table of ``docs/results/label_efficiency.md``: macro-F1 at 1-100% of pbmc3k's labels."""
    results = ROOT / "benchmarks" / "results"
    ours = [json.loads(x) for x in (results / "semi_supervised.jsonl").read_text().splitlines() if x.strip()]
    peers = [json.loads(x) for x in (results / "pretraining.jsonl").read_text().splitlines() if x.strip()]
    frame = label_efficiency_frame(ours, peers)
    lines = label_efficiency_lines(frame) if not frame.empty else ["(not measured yet)"]
    table = lines[2 : lines.index("", 2)] if "" in lines[2:] else lines
    # training times of the two sources come from different machines and thread counts: not compared here
    return "\n".join(line.rsplit("|", 2)[0] + "|" if line.startswith("|") else line for line in table)


def allen_in_donor_reading(records: list[dict]) -> str:
    """Allen M1: the default model against the peers within its training donor and on the other donor."""
    results = ROOT / "benchmarks" / "results"
    ours = [json.loads(x) for x in (results / "semi_supervised.jsonl").read_text().splitlines() if x.strip()]
    return in_donor_reading(ours, records)


def mapping_reading(records: list[dict]) -> str:
    """Reference mapping against the same reference without it: the evaluation, the validation split, and how
    many calls mapping changes (``benchmarks/results/cross_study_confusion.json``)."""
    frame = _defaults_frame(records)
    mapped, labelled = DEFAULT_ROWS[("mapping", "sctransformer", "grn")], DEFAULT_ROWS[_SCT_MODES[0]]
    said = []
    for dataset in [d for d in DATASETS if d in set(frame["dataset"])]:
        stats = _paired(frame[frame["dataset"] == dataset], mapped, labelled)
        if stats:
            said.append(f"{DATASETS[dataset]} {_said(stats)}")
    if not said:
        return "(reference mapping not measured yet at today's defaults)"
    text = (
        "Reference mapping (`load_query_data` + `train()`) minus the same reference without it, macro-F1 paired by "
        "seed: " + "; ".join(said) + "."
    )
    results = ROOT / "benchmarks" / "results"
    ours = [json.loads(x) for x in (results / "semi_supervised.jsonl").read_text().splitlines() if x.strip()]
    validation = pd.DataFrame([r for r in ours if r.get("experiment") == "mapping"])
    stats = paired(validation, "mapped: pseudo-labels", "reference only", ("seed",)) if len(validation) else None
    if stats:
        text += (
            " On the validation split (a donor group of Darmanis' training donors as the query, "
            f"`docs/results/semi_supervised.md`): {_said(stats)}."
        )
    confusion = json.loads((results / "cross_study_confusion.json").read_text())
    changed = (confusion.get("changed_by_mapping") or {}).get(CONFUSION_MAPPED) or {}
    if changed:
        seeds = sorted(changed, key=int)
        n_cells = sum(sum(c.values()) for c in next(iter(confusion["calls"][CONFUSION_DEFAULT].values())).values())
        counts = ", ".join(str(sum(changed[s].values())) for s in seeds)
        text += (
            f" On pbmc3k → pbmc68k mapping changed the calls of {counts} of the {n_cells:,} query cells (seeds "
            f"{', '.join(seeds)}; `docs/results/cross_study_confusion.md`)."
        )
    return text


#: The default model's row in ``benchmarks/results/cross_study_confusion.json``, and the rows set beside it.
CONFUSION_DEFAULT = "scTransformer, labelled cells"
#: The default query model's row there.
CONFUSION_MAPPED = "scTransformer, mapped onto the test cells"


def cross_study_reading(confusion: dict | None = None) -> str:
    """pbmc3k -> pbmc68k per hard type (``confusion``: default ``benchmarks/results/cross_study_confusion.json``): the
    sorted cells scored as it, how many each method calls right (summed over seeds), and the marker genes the split
    lacks."""
    if confusion is None:
        confusion = json.loads((ROOT / "benchmarks" / "results" / "cross_study_confusion.json").read_text())
    scored_as = confusion["populations"]
    methods = list(confusion["calls"])
    types = [t for t in ("Naive CD4 T", "Memory CD4 T", "CD8 T", "CD14+ Mono", "DC") if t in scored_as.values()]
    seeds = len(confusion["seeds"])
    lines = [
        f"| sorted cells scored as | cells × {seeds} seeds | "
        + " | ".join(methods)
        + f" | most frequent call ({CONFUSION_DEFAULT}) |",
        "|---" * (len(methods) + 3) + "|",
    ]
    for cell_type in types:
        populations = [p for p, t in scored_as.items() if t == cell_type]
        right, calls_of_default, n_cells = [], {}, 0
        for method in methods:
            n_right = 0
            for table in confusion["calls"][method].values():
                for population in populations:
                    calls = table.get(population, {})
                    n_right += calls.get(cell_type, 0)
                    if method == CONFUSION_DEFAULT:
                        n_cells += sum(calls.values())
                        for call, n in calls.items():
                            calls_of_default[call] = calls_of_default.get(call, 0) + n
            right.append(n_right)
        top = max(sorted(calls_of_default), key=calls_of_default.get)
        cells = " | ".join(str(n) for n in right)
        lines.append(f"| {cell_type} | {n_cells} | {cells} | {top} ({calls_of_default[top]}) |")
    total = [
        sum(table.get(p, {}).get(t, 0) for table in confusion["calls"][m].values() for p, t in scored_as.items())
        for m in methods
    ]
    n_all = sum(
        sum(calls.values()) for table in confusion["calls"][CONFUSION_DEFAULT].values() for calls in table.values()
    )
    lines.append(f"| every sorted population | {n_all} | " + " | ".join(str(n) for n in total) + " | |")
    missing = sorted({g for genes in confusion["missing_markers"].values() for g in genes})
    lines += [
        "",
        f"Cells: correct calls, summed over {seeds} seeds. Marker genes of these types that the split's "
        f"{confusion['n_query_genes']} genes lack: {', '.join(missing) if missing else 'none'}.",
    ]
    return "\n".join(lines)


_BLOCK = re.compile(r"(<!-- table:(?P<name>[a-z_]+) -->\n)(.*?)(<!-- /table -->)", flags=re.S)


def evaluation_table(records: list[dict]) -> str:
    """Macro-F1 (mean ± sd over seeds) per variant and dataset, the GRN edges kept, and the pooled comparisons."""
    full = [r for r in records if r.get("profile") == "full"]
    frame = pd.DataFrame(full)
    frame["variant"] = [variant_name(r) for r in full]
    lines = ["| | " + " | ".join(DATASETS.values()) + " |", "|---" * (len(DATASETS) + 1) + "|"]
    for variant, label in VARIANTS.items():
        cells = []
        for dataset in DATASETS:
            rows = frame[(frame["variant"] == variant) & (frame["dataset"] == dataset)]
            values = pd.to_numeric(rows["macro_f1"], errors="coerce").dropna()
            if len(values):
                sd = values.std(ddof=1) if len(values) > 1 else float("nan")
                cells.append(f"{values.mean():.3f} ± {sd:.3f} (n={len(values)})")
            elif len(rows):
                errors = " ".join(str(e) for e in rows.get("error", pd.Series(dtype=object)).dropna())
                cells.append("no regulon edge (refused)" if "No regulon edge" in errors else "failed (see report)")
            else:
                cells.append("–")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    kept = []
    for dataset in DATASETS:
        rows = frame[(frame["variant"] == "grn (collectri)") & (frame["dataset"] == dataset)]
        edges, tfs = pd.to_numeric(rows["grn_edges_kept"]).dropna(), pd.to_numeric(rows["grn_tfs_kept"]).dropna()
        kept.append(f"{int(edges.iloc[0]):,} / {int(tfs.iloc[0]):,}" if len(edges) else "–")
    lines.append("| GRN kept (CollecTRI edges / TFs) | " + " | ".join(kept) + " |")
    return "\n".join([*lines, "", pooled_table(full)])


def pooled_table(records: list[dict], comparators: tuple[str, ...] | None = None) -> str:
    """The GRN mask against its controls and the peers, every dataset x seed pair of the full profile pooled.

    ``comparators`` keeps only the comparisons with those variants (``None``: all).
    """
    full = [r for r in records if r.get("profile") == "full"]
    pooled = pooled_comparison(full)
    pooled = pooled[pooled["profile"] == "full"]
    if comparators is not None:
        pooled = pooled[pooled["comparator"].isin(comparators)]
    lines = ["| paired by dataset × seed | pairs | mean difference ± sd | wins / losses / ties | t-test p |"]
    lines.append("|---|---|---|---|---|")
    for _, row in pooled.iterrows():
        reference = VARIANTS.get(row["reference"], row["reference"])
        comparator = VARIANTS.get(row["comparator"], row["comparator"])
        lines.append(
            f"| {reference} − {comparator} | {int(row['n_pairs'])} | {row['mean']:+.3f} ± {row['sd']:.3f} | "
            f"{int(row['wins'])} / {int(row['losses'])} / {int(row['ties'])} | {row['p_value']:.2f} |"
        )
    return "\n".join(lines)


#: The GRN mask's same-density controls (and the dense model) of the README's headline.
HEADLINE_COMPARATORS = ("shuffled (collectri)", "random (collectri)", "dense (collectri)", "shuffled (dorothea_ABC)")


def headline_reading(records: list[dict], comparators: tuple[str, ...] = HEADLINE_COMPARATORS) -> str:
    """The headline comparison in words: per comparison, the pairs where the GRN mask was higher, lower or tied.

    A tie is ``|difference| < harness.stats.TIE``, as in the table; the sentence names the smallest paired t-test p.
    """
    full = [r for r in records if r.get("profile") == "full"]
    pooled = pooled_comparison(full)
    pooled = pooled[(pooled["profile"] == "full") & pooled["comparator"].isin(comparators)]
    if pooled.empty:
        return "(no pooled comparison recorded yet)"
    parts = []
    for _, row in pooled.iterrows():
        reference = VARIANTS.get(row["reference"], row["reference"])
        comparator = VARIANTS.get(row["comparator"], row["comparator"])
        wins, losses, ties = int(row["wins"]), int(row["losses"]), int(row["ties"])
        more = "more losses than wins" if losses > wins else "more wins than losses" if wins > losses else "as many"
        parts.append(
            f"{reference} − {comparator}: higher in {wins}, lower in {losses}, tied in {ties} of {int(row['n_pairs'])}"
            f" pairs ({more})"
        )
    p_values = pooled["p_value"].dropna()
    below = pooled[pooled["p_value"] < 0.05]
    if below.empty:
        closing = f"no pooled difference has a paired t-test p below 0.05 (the smallest is {p_values.min():.2f})"
    else:
        closing = "paired t-test p below 0.05: " + ", ".join(
            f"{VARIANTS.get(r, r)} − {VARIANTS.get(c, c)} ({p:.3f})"
            for r, c, p in zip(below["reference"], below["comparator"], below["p_value"], strict=True)
        )
    return (
        f"Pairs (dataset × seed) where the GRN mask's macro-F1 was higher, lower or tied (|difference| < {TIE}): "
        + "; ".join(parts)
        + f"; {closing}."
    )


def attention_table(result: dict) -> str:
    """One layer, forward + backward: sparse (default), fused and dense paths per gene count and batch."""
    m = result["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['threads']} threads, torch {m['torch']}, "
        f"{'native' if m['native_bf16'] else 'no native'} bfloat16, float32 matmul peak "
        f"{m['matmul_peak_gflops']['fp32']:.0f} GFLOP/s.",
        "",
        "| genes | edges | batch | sparse s | fused s | dense s | dense / sparse time | sparse MB | fused MB | "
        "dense MB | floor MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def number(value, fmt):
        return "–" if value is None or (isinstance(value, float) and np.isnan(value)) else format(value, fmt)

    for row in result["grid"]:
        if row.get("edge_kind") != "real" or row.get("dtype") != "fp32" or row["genes"] < 1000:
            continue
        lines.append(
            f"| {row['genes']:,} | {row['edges']:,} | {row['batch']} | {number(row.get('grn_s'), '.2f')} | "
            f"{number(row.get('grn_fused_s'), '.2f')} | {number(row.get('dense_s'), '.2f')} | "
            f"{number(row.get('time_ratio'), '.1f')} | {number(row.get('grn_mb'), ',.0f')} | "
            f"{number(row.get('grn_fused_mb'), ',.0f')} | {number(row.get('dense_mb'), ',.0f')} | "
            f"{number(row.get('floor_mb'), ',.0f')} |"
        )
    lines += [
        "",
        "| whole Darmanis panel | genes | edges | batch | s per step | peak MB |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["whole_panel"]:
        step = number(row.get("step_s"), ".2f") if row.get("step_s") is not None else "cannot allocate"
        lines.append(
            f"| {row['attention']} | {row['panel_genes']:,} | {row['edges']:,} | {row['batch_size']} | {step} | "
            f"{number(row.get('peak_mb'), ',.0f')} |"
        )
    return "\n".join(lines)


def out_of_core_table(result: dict) -> str:
    """Peak memory after each step, in memory vs backed."""
    lines = [
        "| file | cells | opened | peak MB after setup / train / predict / embed |",
        "|---|---|---|---|",
    ]
    for row in result["runs"]:
        peaks = " / ".join(f"{row[k]:,.0f}" for k in ("setup_mb", "train_mb", "predict_mb", "embed_mb"))
        opened = "backed" if row["backed"] else "in memory"
        lines.append(f"| {row['file']} | {row['cells']:,} | {opened} | {peaks} |")
    return "\n".join(lines)


def tables() -> dict[str, str]:
    """Every generated table, by name."""
    results = ROOT / "benchmarks" / "results"
    records = load_records(ROOT / "docs" / "results" / "evaluation.json")
    pretraining = load_pretraining_records(results / "pretraining.jsonl")
    out = {
        "defaults": defaults_table(records),
        "defaults_reading": defaults_reading(records),
        "label_efficiency": label_efficiency_table(),
        "allen_in_donor": allen_in_donor_reading(records),
        "mapping_reading": mapping_reading(records),
        "cross_study_reading": cross_study_reading(),
        "evaluation": evaluation_table(records),
        # the README's headline: the GRN mask against its controls of the same density (and the dense model)
        "headline": pooled_table(records, HEADLINE_COMPARATORS),
        "headline_reading": headline_reading(records),
        "pretraining": pretraining_headline(pretraining),
        "pretraining_query": query_cells_reading(pretraining),
        "attention": attention_table(json.loads((results / "attention.json").read_text())),
        "out_of_core": out_of_core_table(json.loads((results / "out_of_core.json").read_text())),
        "first_hour": first_hour_markdown(json.loads((results / "first_hour.json").read_text())),
    }
    speed = results / "annotation_speed.json"
    out["speed"] = (
        speed_markdown(json.loads(speed.read_text())) if speed.exists() else "(not measured yet on this commit)"
    )
    return out


def render(text: str) -> str:
    """``text`` with every marked table replaced by its generated content."""
    generated = tables()

    def replace(match: re.Match) -> str:
        name = match.group("name")
        if name not in generated:
            raise KeyError(f"README.md marks a table {name!r} that this script does not generate.")
        return match.group(1) + generated[name] + "\n" + match.group(4)

    return _BLOCK.sub(replace, text)


def render_notebook(text: str) -> str:
    """A stored notebook (its JSON text) with the marked blocks of its markdown cells rendered; its format kept."""
    notebook = json.loads(text)
    changed = False
    for cell in notebook["cells"]:
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] != "markdown" or "<!-- table:" not in source:
            continue
        new = render(source)
        if new != source:
            lines = new.split("\n")
            cell["source"] = [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
            changed = True
    if not changed:
        return text
    indent = 1 if text.startswith('{\n "') else 2
    return json.dumps(notebook, indent=indent, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a file differs from the records")
    args = parser.parse_args(argv)
    files = {ROOT / "README.md": render}
    files.update(dict.fromkeys(sorted((ROOT / "tutorials").glob("*.ipynb")), render_notebook))
    stale = []
    for path, rendering in files.items():
        text = path.read_text()
        new = rendering(text)
        if new != text:
            stale.append(path)
            if not args.check:
                path.write_text(new)
    if args.check:
        raise SystemExit(1 if stale else 0)


if __name__ == "__main__":
    main()
