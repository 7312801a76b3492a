"""The command line (cli.py): annotate, import cost of --version and --help, help texts, warnings."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest

import sctransformer_tools as sct
from sctransformer_tools.cli import main


def test_annotate_command_trains_saves_and_annotates(pbmc_small, tmp_path):
    ref_path, query_path, out = tmp_path / "ref.h5ad", tmp_path / "query.h5ad", tmp_path / "out.h5ad"
    pbmc_small.write_h5ad(ref_path)
    query = pbmc_small[::3].copy()
    del query.obs["cell_type"]
    query.write_h5ad(query_path)
    args = ["annotate", "--reference", str(ref_path), "--labels-key", "cell_type", "--query", str(query_path)]
    assert main([*args, "--out", str(out), "--max-epochs", "1", "--save-model", str(tmp_path / "model")]) == 0
    annotated = ad.read_h5ad(out)
    assert annotated.obs["sctransformer_prediction"].notna().all()
    assert annotated.obsm["X_sctransformer"].shape == (query.n_obs, 64)
    # reuse the saved model
    out2 = tmp_path / "out2.h5ad"
    reuse = ["annotate", "--model", str(tmp_path / "model"), "--mode", "labelled"]  # the reference's calls, quickly
    assert main([*reuse, "--query", str(query_path), "--out", str(out2)]) == 0
    again = ad.read_h5ad(out2)
    from sctransformer_tools.cli import ANNOTATE_MODE

    assert annotated.uns["sctransformer"]["mode"] == ANNOTATE_MODE and again.uns["sctransformer"]["mode"] == "labelled"
    loaded = sct.SCTransformer.load(tmp_path / "model")
    expected = loaded.predict(ad.read_h5ad(query_path), inplace=False)
    assert (again.obs["sctransformer_prediction"].astype(str).to_numpy() == np.asarray(expected).astype(str)).all()
    # the same query with Unknown calls: the reference's own cells are typical of it
    out3 = tmp_path / "out3.h5ad"
    args = [*reuse, "--query", str(query_path), "--out", str(out3)]
    assert main([*args, "--novelty-threshold", "0.99"]) == 0
    flagged = ad.read_h5ad(out3).obs["sctransformer_prediction"].astype(str) == "Unknown"
    assert flagged.mean() < 0.1
    # a query measuring 3% of the panel is refused unless --min-panel-match allows it
    from sctransformer_tools.model._folder import read_model_folder

    saved = read_model_folder(tmp_path / "model", "SCTransformer")
    panel = saved.spec.genes
    few = panel[: int(0.03 * len(panel))]
    sparse_query_path = tmp_path / "few_genes.h5ad"
    query[:, query.var_names.isin(few) | ~query.var_names.isin(panel)].copy().write_h5ad(sparse_query_path)
    args = [*reuse, "--query", str(sparse_query_path)]
    with pytest.raises(ValueError, match=r"below min_panel_match=5%"):
        main([*args, "--out", str(tmp_path / "out4.h5ad")])
    with pytest.warns(UserWarning, match="treat the calls as provisional"):
        assert main([*args, "--out", str(tmp_path / "out4.h5ad"), "--min-panel-match", "0.01"]) == 0
    assert ad.read_h5ad(tmp_path / "out4.h5ad").uns["sctransformer_query"]["panel_match_ratio"] < 0.05


def _run_python(code: str) -> str:
    """Run ``code`` in a fresh interpreter importing this checkout's package; return its stdout and stderr."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    src = str(Path(sct.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def test_version_and_help_import_neither_torch_nor_scanpy():
    """Issue 25.7: --version and --help answer at once (they took 26 s and 16 s importing torch and scvi-tools)."""
    code = """
import contextlib, io, sys
from sctransformer_tools.cli import main
for argv in (["--version"], ["--help"], ["demo", "--help"], ["annotate", "--help"]):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        main(argv)
heavy = ("torch", "scvi", "scanpy", "anndata", "lightning", "pandas", "decoupler", "matplotlib")
print("imported:", sorted(name for name in heavy if name in sys.modules))
"""
    assert "imported: []" in _run_python(code)


def test_help_states_each_default_once_without_markup(capsys):
    for command in ([], ["demo"], ["annotate"]):
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        text = capsys.readouterr().out
        assert "`" not in text and "(default: None)" not in text
        options = " ".join(text.split()).split(" --")
        assert all(option.count("default") <= 1 for option in options), options
    with pytest.raises(SystemExit):
        main(["annotate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "layer of the reference with raw counts (default: X) --" in text
    assert "model's panel genes (default: 0.05)" in text and "attention mask (default: grn)" in text


def test_warnings_on_the_command_line_show_category_and_message_only():
    """A warning raised while a command runs is printed as 'UserWarning: message', not with the console script's
    `sys.exit(main())` line; nothing is filtered, and Python's own format is back after the command."""
    code = """
import warnings
from sctransformer_tools import cli
original = warnings.formatwarning
cli.demo = lambda *args: warnings.warn("the query's X holds log-normalised values", UserWarning)
cli.main(["demo"])
assert warnings.formatwarning is original
"""
    assert _run_python(code).strip() == "UserWarning: the query's X holds log-normalised values"


def test_cli_version_help_and_a_validation_summary(reference_and_query, tmp_path, capsys, package_log):
    """Issue 13.8: --version, readable help with defaults, and the validation figures of a trained model."""
    from sctransformer_tools import __version__

    with pytest.raises(SystemExit):
        main(["--version"])
    assert __version__ in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["annotate", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "``" not in help_text and "(default: None)" not in help_text
    from sctransformer_tools.model._training import MIN_STEPS

    assert f"(default: 8, or more on small references for at least {MIN_STEPS} optimiser steps" in help_text
    reference, query, _ = reference_and_query
    reference.write_h5ad(tmp_path / "ref.h5ad")
    query.write_h5ad(tmp_path / "query.h5ad")
    args = ["annotate", "--reference", str(tmp_path / "ref.h5ad"), "--labels-key", "bulk_labels", "--layer", "counts"]
    args += ["--query", str(tmp_path / "query.h5ad"), "--out", str(tmp_path / "out.h5ad"), "--max-epochs", "1"]
    with pytest.warns(UserWarning, match="Validation"):
        assert main([*args, "--no-progress-bar"]) == 0
    assert "validation" in package_log.text and "macro-F1" in package_log.text
    written = ad.read_h5ad(tmp_path / "out.h5ad")
    assert written.var_names.equals(query.var_names)
    assert not [c for c in written.obs.columns if c.startswith(("_scvi", "_sct"))]
