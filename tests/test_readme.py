"""The README's code runs as written (issue 13.9): every ```python block, in order, in one namespace.

The documentation page that continues the README's example (``docs/usage.md``: reading the model, comparing masks
on your own data) runs after it, in the same namespace (issue 16 moved those blocks out of the README). Only the
number of training epochs is lowered (``README_EPOCHS``, default 2); nothing else changes. The data is the README's
own (scanpy's bundled pbmc68k_reduced), so this runs anywhere.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import matplotlib
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
#: Pages of the documentation whose code continues the README's example.
CONTINUED_IN = [README.parent / "docs" / "usage.md"]
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
DOC_BLOCKS = [
    (f"{page.relative_to(README.parent)} block {number}", block)
    for page in CONTINUED_IN
    for number, block in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S), 1)
]


def test_readme_has_code_blocks():
    assert len(BLOCKS) >= 1 and len(DOC_BLOCKS) >= 2
    assert 'sc.read_h5ad("reference.h5ad")' not in BLOCKS[0]  # no placeholder files in the code itself


def test_readme_code_runs(tmp_path, monkeypatch):
    import sctransformer_tools as sct

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    epochs = int(os.environ.get("README_EPOCHS", "2"))
    train = sct.SCTransformer.train

    def fewer_epochs(self, max_epochs=epochs, **kwargs):
        return train(self, max_epochs=min(max_epochs, epochs), **{"enable_progress_bar": False, **kwargs})

    monkeypatch.setattr(sct.SCTransformer, "train", fewer_epochs)
    namespace: dict = {}
    blocks = [(f"README.md block {number}", block) for number, block in enumerate(BLOCKS, 1)] + DOC_BLOCKS
    for name, block in blocks:
        try:
            exec(compile(block, name, "exec"), namespace)
        except Exception as err:  # name the block that failed
            pytest.fail(f"{name} failed: {type(err).__name__}: {err}")
    query = namespace["query"]
    assert "sctransformer_prediction" in query.obs and "bulk_labels" not in query.obs
    assert (tmp_path / "model_dir" / "model.h5").exists()


def test_readme_tables_are_generated_from_the_records():
    """No table is typed by hand: benchmarks/readme_tables.py renders each marked table from committed results."""
    import importlib.util

    path = README.parent / "benchmarks" / "readme_tables.py"
    spec = importlib.util.spec_from_file_location("readme_tables", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = README.read_text()
    assert text.count("<!-- table:") >= 1
    assert module.render(text) == text, "README tables differ from the records: run python benchmarks/readme_tables.py"
    tutorials = sorted((README.parent / "tutorials").glob("*.ipynb"))
    assert any("<!-- table:" in path.read_text() for path in tutorials)
    for path in tutorials:  # the tutorials' marked markdown blocks too
        text = path.read_text()
        assert module.render_notebook(text) == text, f"{path.name}: run python benchmarks/readme_tables.py"


def test_ci_runs_exactly_the_readmes_set_up_commands():
    """Issue 25.1: CI runs the README's two set-up commands as written, and the offline default in a clean clone."""
    set_up = README.read_text().split("## Set up", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)\n```", set_up, flags=re.S)
    ci = (README.parent / ".ci" / "run").read_text()
    assert len(commands) == 2
    lines = ci.splitlines()
    assert all(command in lines for command in commands), commands
    assert lines.index(commands[0]) < lines.index(commands[1])
    assert "git clone --quiet --local ." in ci and "-u SCTRANSFORMER_TOOLS_DATA" in ci and "snapshot of" in ci


@pytest.mark.slow
def test_readme_code_runs_verbatim_and_trusts_its_model(tmp_path, monkeypatch):
    """Issue 25.3: the README's example, as written (default epochs), trains a model that does not warn against
    its own calls."""
    import warnings

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for number, block in enumerate(BLOCKS, 1):
            exec(compile(block, f"README.md block {number}", "exec"), namespace)
    distrust = [str(w.message) for w in seen if "not to be trusted" in str(w.message)]
    assert not distrust, distrust
    from sctransformer_tools.model._training import POOR_MACRO_F1

    history = namespace["model"].history  # the loaded model keeps the training history
    assert float(history["validation_f1_macro"].iloc[-1].item()) >= POOR_MACRO_F1
