"""Run tutorial notebooks and store them executed (the stored outputs the docs show).

Usage, from the repository root (one torch thread, as the stored runs; pbmc3k from ../shared/data)::

    SCTRANSFORMER_SHARED_DATA=../shared/data OMP_NUM_THREADS=1 python tutorials/execute.py tutorials/*.ipynb

Each notebook runs in a fresh temporary working folder (its model files and figures land there) and is written
back in place with its outputs. ``tests/test_tutorial.py`` re-runs them with small settings.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def execute(path: Path) -> float:
    """Execute ``path`` in a temporary folder and store it with its outputs; return the seconds it took."""
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sct_tutorial_") as folder:
        NotebookClient(
            notebook, timeout=3600, kernel_name="python3", resources={"metadata": {"path": folder}}
        ).execute()
    nbformat.write(notebook, path)
    return time.perf_counter() - start


if __name__ == "__main__":
    for name in sys.argv[1:]:
        seconds = execute(Path(name))
        print(f"{name}: {seconds:.0f} s", flush=True)
