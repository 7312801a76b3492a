"""A smoke test per benchmark entry point (``benchmarks/*.py``), in the default suite.

Each script is imported, parses its arguments (``--help``), and runs a report-only or tiny path on data that ships
with scanpy, so that a change of the package's API breaks a test here rather than the next run of a study. The
measurements themselves are not run (hours on real data); the study harness is tested in ``test_harness.py``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
RESULTS = BENCHMARKS / "results"
SCRIPTS = sorted(path.stem for path in BENCHMARKS.glob("*.py"))
TINY = {"d_model": 16, "n_layers": 1, "n_heads": 2, "n_top_genes": 0}


def _script(name: str):
    """``benchmarks/<name>.py`` imported as a module (its folder on ``sys.path``, as when it runs)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: Loggers whose level a script sets for its process (benchmarks/evaluate.py quiets several).
SCRIPT_LOGGERS = (
    "sctransformer_tools",
    "sctransformer_tools.model",
    "sctransformer_tools.bm",
    "lightning.pytorch",
    "lightning_fabric",
    "scvi",
    "celltypist",
)


@pytest.fixture(autouse=True)
def restored():
    """Scripts set torch's threads and log levels for their process: give both back (a later test of the session
    reading the package's log would otherwise find it quieted)."""
    threads = torch.get_num_threads()
    levels = {name: logging.getLogger(name).level for name in SCRIPT_LOGGERS}
    yield
    torch.set_num_threads(threads)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture
def pbmc68k_file(pbmc68k_full, tmp_path) -> Path:
    """scanpy's pbmc68k_reduced as an h5ad with the columns the scripts read (``cell_type``, ``batch``, totals)."""
    adata = pbmc68k_full.copy()
    adata.obs["cell_type"] = adata.obs["bulk_labels"].astype(str)
    adata.obs["batch"] = np.where(np.arange(adata.n_obs) % 2, "a", "b")
    adata.obs["total_counts_all_genes"] = adata.obs["n_counts"]
    path = tmp_path / "pbmc68k.h5ad"
    adata.write_h5ad(path)
    return path


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_script_imports_and_parses_its_arguments(name, capsys):
    script = _script(name)
    with pytest.raises(SystemExit) as done:
        script.main(["--help"])
    assert done.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_annotation_speed_tables_and_a_training_step(pbmc68k_full, capsys):
    script = _script("annotation_speed")
    script.main(["--markdown", str(RESULTS / "annotation_speed.json")])
    assert "| training step, float32 |" in capsys.readouterr().out
    adata = pbmc68k_full.copy()
    adata.obs["cell_type"] = adata.obs["bulk_labels"].astype(str)
    step = script.step_times(adata, rounds=1, steps=1, **TINY)
    assert step["float32_s"] > 0 and step["auto_picks"] in ("bf16-mixed", "32-true")
    import sctransformer_tools as sct
    from sctransformer_tools.model import _reader

    model, small = sct.ds.toy_model()
    minibatch = script.minibatch_sizes(model, {"toy": small[:100]}, rounds=1)
    assert set(minibatch["toy"]["cells_per_s"]) == {f"{b} tokens" for b in script.TOKEN_BUDGETS} | {"256 cells"}
    assert all(v > 0 for v in minibatch["toy"]["cells_per_s"].values())
    assert script.best_token_budget(minibatch) in script.TOKEN_BUDGETS
    assert _reader.READ_TOKENS_CPU == sct._constants.READ_TOKENS_CPU  # the benchmark's changes are undone


def test_the_token_budget_of_reading_is_the_benchmarks_pick():
    """``READ_TOKENS_CPU`` (cells per minibatch of ``predict`` & co.) is the budget the committed record finds
    fastest against 256 cells per minibatch."""
    from sctransformer_tools._constants import READ_TOKENS_CPU

    record = json.loads((RESULTS / "annotation_speed.json").read_text())
    assert _script("annotation_speed").best_token_budget(record["minibatch"]) == READ_TOKENS_CPU


def test_attention_layer_workers_and_model_figures(pbmc68k_full, tmp_path):
    script = _script("attention")
    records = [script.worker(60, 2, "fp32", "real", method, repeats=1) for method in ("grn", "dense", "floor")]
    records.append(script.worker(60, 2, "fp32", "real", "grn_fused", repeats=1))
    records.append(script.worker(60, 2, "fp32", "real", "dense", repeats=1, part="core"))
    for record, name in zip(records, ("grn", "dense", "floor", "grn_fused", "dense_core"), strict=True):
        assert record[f"{name}_s"] > 0, record
    grid = [records[0] | records[1]]
    script.plot(grid, tmp_path / "attention.png")
    assert (tmp_path / "attention.png").stat().st_size > 1000
    adata = pbmc68k_full[:300].copy()  # the FLOPs are counted on 256 cells
    figures = script.model_figures(1, adata, labels_key="bulk_labels", **TINY)
    assert figures["precision"] in ("bf16-mixed", "32-true") and figures["train_cells_per_s"] > 0


def test_evaluate_report_only_renders_the_committed_records(tmp_path, monkeypatch):
    script = _script("evaluate")
    for name in ("evaluation.json", "evaluation_meta.json"):
        if (ROOT / "docs" / "results" / name).exists():
            shutil.copy(ROOT / "docs" / "results" / name, tmp_path / name)
    monkeypatch.setattr(sys, "argv", ["evaluate.py"])
    script.main(["--report-only", "--out-dir", str(tmp_path)])
    assert "grn" in (tmp_path / "evaluation.md").read_text()


def test_mam_reward_one_epoch(restored, capsys):
    script = _script("mam_reward")
    script.main(["--seeds", "0", "--epochs", "1", "--arms", "uniform", "mam, relative reward", "--n-cells", "200"])
    out = capsys.readouterr().out
    assert "rho_expression" in out and "mam, relative reward" in out


def test_model_step_alternates_the_three_paths(pbmc68k_file, capsys):
    script = _script("model_step")
    args = ["--data", str(pbmc68k_file), "--batches", "1", "--rounds", "1", "--model-kwargs", json.dumps(TINY)]
    script.main(args)
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result["step_s"]) == {"fused", "csr", "gather"}


def test_out_of_core_worker_on_a_backed_file(pbmc68k_file):
    script = _script("out_of_core")
    record = script.worker(str(pbmc68k_file), True, 2, 50)
    assert record["backed"] and record["cells"] == 700 and record["predict_mb"] > 0


def test_pbmc3k_masks_runs_and_summarizes(pbmc68k_file, tmp_path, capsys):
    script = _script("pbmc3k_masks")
    out = tmp_path / "masks.jsonl"
    args = ["--data", str(pbmc68k_file), "--masks", "grn", "random", "--max-epochs", "1", "--out", str(out)]
    script.main([*args, "--model-kwargs", json.dumps(TINY)])
    script.main(["--summarize", str(out)])
    assert "| random | 1 |" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["pretraining", "semi_supervised"])
def test_report_only_renders_the_committed_records(name, tmp_path, monkeypatch, restored):
    script = _script(name)
    monkeypatch.setattr(script, "REPORT", tmp_path / f"{name}.md")
    if name == "semi_supervised":  # its second report: rendered into tmp_path too, never over the committed one
        monkeypatch.setattr(script, "LABEL_EFFICIENCY_REPORT", tmp_path / "label_efficiency.md")
    script.main(["--report-only"])
    assert (tmp_path / f"{name}.md").stat().st_size > 1000
    if name == "semi_supervised":
        committed = BENCHMARKS.parent / "docs" / "results"
        for page in ("semi_supervised.md", "label_efficiency.md"):
            assert (tmp_path / page).read_text() == (committed / page).read_text(), f"{page}: rerun --report-only"


def test_first_hour_table_and_the_readme_example_it_times(capsys):
    script = _script("first_hour")
    example = script.readme_example()
    assert "sct.SCTransformer.setup_anndata(reference" in example and "model.predict(query" in example
    script.main(["--markdown", str(RESULTS / "first_hour.json")])
    out = capsys.readouterr().out
    assert "| `sctransformer-tools demo` (train, held-out report, UMAP) |" in out and "held-out accuracy" in out


def test_novelty_report_only_renders_the_committed_records(tmp_path, restored):
    """The report and figure are redrawn from the committed records; the threshold is chosen on validation only."""
    script = _script("novelty")
    report = tmp_path / "novelty.md"
    script.main(["--report-only", "--report", str(report)])
    text = report.read_text()
    records = json.loads((RESULTS / "novelty.json").read_text())
    assert f"Recommended `novelty_threshold={records['meta']['recommended_threshold']}`" in text
    assert (tmp_path / "novelty.png").stat().st_size > 10_000
    frame = script._frame(records["rows"])
    chosen = script.recommended_threshold(script.summaries(frame, "validation")[script.PACKAGE])
    assert chosen == records["meta"]["recommended_threshold"]


def test_readme_tables_match_the_records():
    script = _script("readme_tables")
    with pytest.raises(SystemExit) as done:
        script.main(["--check"])
    assert done.value.code == 0, "README.md differs from the records: run python benchmarks/readme_tables.py"


def test_structure_report_prints_imports_and_sizes(capsys):
    _script("structure_report").main(["--before", "HEAD"])  # HEAD: in any checkout, even a shallow one
    out = capsys.readouterr().out
    assert "| model " in out and "| model/_save.py " in out and "| total " in out


def test_every_script_has_a_smoke_test():
    """A new script gets a test of its own here (beyond --help)."""
    tested = {"annotation_speed", "attention", "evaluate", "first_hour", "mam_reward", "model_step", "out_of_core"}
    tested |= {"pbmc3k_masks", "pretraining", "semi_supervised", "readme_tables", "novelty", "structure_report"}
    tested |= {"cross_study_confusion"}
    assert set(SCRIPTS) == tested


def test_cross_study_confusion_report_renders_the_committed_record(tmp_path):
    """The report is re-rendered from the committed record as committed; its tables sum to the query's cells."""
    script = _script("cross_study_confusion")
    out = tmp_path / "report.md"
    script.main(["--report-only", "--report", str(out)])
    committed = BENCHMARKS.parent / "docs" / "results" / "cross_study_confusion.md"
    assert out.read_text() == committed.read_text(), "rerun python benchmarks/cross_study_confusion.py --report-only"
    record = json.loads(script.RECORD.read_text())
    n_cells = None
    for by_seed in record["calls"].values():
        for table in by_seed.values():
            total = sum(sum(calls.values()) for calls in table.values())
            n_cells = n_cells or total
            assert total == n_cells  # every method calls every query cell once per seed
    assert set(record["populations"].values()) <= set(script.MARKERS) | {"B"}


def test_cross_study_reading_counts_correct_calls_per_scored_type():
    """Per pbmc3k type, the sorted populations scored as it are pooled: correct calls per method summed over seeds,
    the default model's most frequent call, and the markers the split lacks (deduplicated, sorted)."""
    tables = _script("readme_tables")
    confusion = {
        "seeds": [0, 1],
        "n_query_genes": 10,
        "populations": {"CD8 naive": "CD8 T", "CD8 cytotoxic": "CD8 T", "Mono": "CD14+ Mono"},
        "missing_markers": {"CD14+ Mono": ["CD14"], "Naive CD4 T": ["SELL", "CD14"]},
        "calls": {
            tables.CONFUSION_DEFAULT: {
                "0": {"CD8 naive": {"Memory CD4 T": 3, "CD8 T": 1}, "CD8 cytotoxic": {"CD8 T": 2}, "Mono": {"DC": 1}},
                "1": {"CD8 naive": {"Memory CD4 T": 4}, "CD8 cytotoxic": {"CD8 T": 1, "NK": 1}, "Mono": {"DC": 1}},
            },
            "scANVI": {
                "0": {"CD8 naive": {"CD8 T": 4}, "CD8 cytotoxic": {"CD8 T": 2}, "Mono": {"CD14+ Mono": 1}},
                "1": {"CD8 naive": {"CD8 T": 4}, "CD8 cytotoxic": {"NK": 2}, "Mono": {"DC": 1}},
            },
        },
    }
    lines = tables.cross_study_reading(confusion).splitlines()
    assert lines[2] == "| CD8 T | 12 | 4 | 10 | Memory CD4 T (7) |"
    assert lines[3] == "| CD14+ Mono | 2 | 0 | 1 | DC (2) |"
    assert lines[-1].endswith("the split's 10 genes lack: CD14, SELL.")


def test_in_donor_tables_set_the_validation_beside_the_other_donor():
    """The in-donor report pairs by seed within the training donor and, from the evaluation's records, on the other
    donor; arms the evaluation does not run show a dash."""
    _script("semi_supervised")  # puts the benchmarks folder on sys.path
    from harness.semi_supervised_report import in_donor_tables

    def rec(arm, seed, f1):
        return {"experiment": "in_donor", "arm": arm, "seed": seed, "macro_f1": f1, "train_s": 1.0}

    frame = pd.DataFrame(
        [rec("default", s, 0.90 + 0.01 * s) for s in range(3)]
        + [rec("CellTypist", s, 0.88 + 0.01 * s) for s in range(3)]
        + [rec("no Transformer layer", s, 0.91 + 0.01 * s) for s in range(3)]
    )
    evaluation = [
        {
            "dataset": "allen_m1",
            "profile": "defaults",
            "method": m,
            "mask": mask,
            "regulons": reg,
            "seed": s,
            "macro_f1": f,
        }
        for s in range(3)
        for m, mask, reg, f in (("sctransformer", "grn", "collectri", 0.87), ("celltypist", None, None, 0.89))
    ] + [{"dataset": "allen_m1", "profile": "full", "method": "celltypist", "seed": 0, "macro_f1": 0.1}]
    text = "\n".join(in_donor_tables(frame, evaluation))
    assert "| default − CellTypist | +0.020 (3 / 0 / 0) | -0.020 (0 / 3 / 0) |" in text
    assert "| default − no Transformer layer | -0.010 (0 / 3 / 0) | – |" in text  # not in these evaluation records
    assert "| CellTypist | 0.890 ± 0.010 | 0.890 ± 0.000 |" in text
    assert "minus CellTypist +0.020 within the training donor (higher in 3, lower in 0 of 3 seeds)" in text
    assert "minus logistic regression" not in text  # not in these records
    assert "behind them on the other donor" in text  # ahead within the donor, behind on the other: said so
