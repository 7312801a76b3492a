"""Data paths for every test and doctest (tests/ and the package's docstrings).

decoupler downloads regulons at run time and fails offline; tests read real copies from ../shared/data, or,
where that is absent, the pbmc68k_reduced fixture (tests/data/regulons), which the core suite runs on.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("SCTRANSFORMER_SHARED_DATA", ROOT.parent / "shared" / "data"))
REGULONS = SHARED / "regulons"
SCRNA = SHARED / "scrna"
#: Regulon edges among the genes of scanpy's pbmc68k_reduced (tests/data/make_fixtures.py): the core suite
#: runs on that bundled dataset where ../shared is absent, and gives the same panels as the full files there.
FIXTURE_REGULONS = ROOT / "tests" / "data" / "regulons"

if os.environ.get("SCTRANSFORMER_REQUIRE_SHARED") and not SHARED.exists():
    raise pytest.UsageError(
        f"SCTRANSFORMER_REQUIRE_SHARED is set but the shared data is missing at {SHARED}: the real-data tests "
        "would all be skipped. Put ../shared beside the project (or unset the variable to run the core suite only)."
    )

# decoupler downloads regulons at run time; tests read the real copies instead (or the pbmc68k fixture)
# (made absolute, so that subprocesses started in another folder find them too)
if not Path(os.environ.get("SCTRANSFORMER_TOOLS_DATA", REGULONS)).expanduser().exists():
    os.environ["SCTRANSFORMER_TOOLS_DATA"] = str(FIXTURE_REGULONS)
os.environ.setdefault("SCTRANSFORMER_TOOLS_DATA", str(REGULONS))
os.environ["SCTRANSFORMER_TOOLS_DATA"] = str(Path(os.environ["SCTRANSFORMER_TOOLS_DATA"]).expanduser().resolve())
os.environ.setdefault("SCTRANSFORMER_TOOLS_SCRNA", str(SCRNA.resolve()))


@pytest.fixture(scope="session", autouse=True)
def _toy_model_for_doctests(doctest_namespace):
    """The docstring examples that only need a trained model share one: ``sct.ds.toy_model()`` trains a tiny model
    once per process (at its first call) and gives each caller a new copy, loaded from where it was saved.

    The examples call it themselves, so that they run as the documentation shows them; doctests also find it in
    their namespace as ``toy_model``. Training starts at the first example that asks for it, never for a session
    without one.
    """
    from sctransformer_tools.ds import toy_model

    doctest_namespace["toy_model"] = toy_model
