"""The documentation site builds with warnings as errors, and what it shows is there (issue 16).

The site is built once per session with ``sphinx-build -W --keep-going -n -b html docs <tmp>`` (no notebook is
executed: they are stored executed), then every built page is read: each local ``href``/``src`` (links, images,
scripts, style sheets) must name an existing file, and each ``#anchor`` of a local link an element of the page it
points to. Skipped where the ``docs`` extra is not installed.
"""

from __future__ import annotations

import doctest
import os
import re
import subprocess
import sys
from functools import cache
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
#: Every call of the user contract has a documented method on the model's API page.
CONTRACT_METHODS = [
    "setup_anndata",
    "train",
    "predict",
    "get_latent_representation",
    "get_attention",
    "prepare_query_anndata",
    "save",
    "load",
    "mask_summary",
]
PUBLIC_MODULES = ["grn", "tl", "pl", "bm", "pp", "ds", "module", "nn", "model"]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The built site (one build per test session)."""
    for module in ("sphinx", "myst_nb", "sphinx_book_theme", "sphinx_autodoc_typehints", "scanpydoc"):
        pytest.importorskip(module, reason="the docs extra is not installed: pip install -e '.[docs]'")
    out = tmp_path_factory.mktemp("docs") / "html"
    env = {k: v for k, v in os.environ.items() if k != "SCT_DOCS_INTERSPHINX"}  # offline build
    env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"  # extensions' notices about Sphinx 10, not build warnings
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-b", "html", "-q"]
    command += ["-d", str(out.parent / "doctrees"), str(DOCS), str(out)]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"sphinx-build failed (warnings are errors):\n{log[-8000:]}"
    return out


class _Page(HTMLParser):
    """The ids of a page and its local references (``href``/``src``)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.refs: list[tuple[str, str]] = []  # (tag, url)
        self.images: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name"):
            if attrs.get(key) and (key == "id" or tag == "a"):
                self.ids.add(attrs[key])
        for key in ("href", "src"):
            if attrs.get(key):
                self.refs.append((tag, attrs[key]))
        if tag == "img" and attrs.get("src"):
            self.images.append(attrs["src"])


@cache
def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def _pages(site: Path) -> list[Path]:
    """The built pages (``_static/`` holds the theme's template fragments, not pages)."""
    return sorted(page for page in site.rglob("*.html") if "_static" not in page.relative_to(site).parts)


def test_every_local_link_resolves(site):
    broken = []
    pages = _pages(site)
    assert len(pages) > 20
    for page in pages:
        for tag, url in _parse(page).refs:
            parts = urlsplit(url)
            if parts.scheme or parts.netloc or url.startswith(("data:", "javascript:", "mailto:")):
                continue  # external (no internet here) or inline
            target = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                broken.append(f"{page.relative_to(site)}: <{tag}> {url} (no file)")
            elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in _parse(target).ids:
                broken.append(f"{page.relative_to(site)}: <{tag}> {url} (no #{parts.fragment} there)")
    assert not broken, f"{len(broken)} broken local links:\n" + "\n".join(broken[:50])


def test_model_api_page_documents_the_contract(site):
    page = site / "api" / "generated" / "sctransformer_tools.SCTransformer.html"
    assert page.is_file(), "no API page for sctransformer_tools.SCTransformer"
    ids = _parse(page).ids
    missing = [m for m in CONTRACT_METHODS if f"sctransformer_tools.SCTransformer.{m}" not in ids]
    assert not missing, f"SCTransformer page lacks {missing}"
    text = page.read_text(encoding="utf-8")
    assert "Sets the following fields" in text and "sctransformer_prediction" in text  # predict's docstring rendered


def test_every_public_name_has_a_documented_object(site):
    """Each name of a public submodule's ``__all__`` is documented (under that module or where it is re-exported)."""
    import importlib
    import inspect

    ids = set()
    for page in _pages(site):
        ids |= {i for i in _parse(page).ids if i.startswith("sctransformer_tools.")}
    missing = []
    for name in PUBLIC_MODULES:
        module = importlib.import_module(f"sctransformer_tools.{name}")
        for member in module.__all__:
            if inspect.ismodule(getattr(module, member)):
                continue
            if not any(i == f"{module.__name__}.{member}" or i.endswith(f".{member}") for i in ids):
                missing.append(f"{module.__name__}.{member}")
    assert not missing, f"not in docs/api.md: {missing}"


def test_every_tutorial_is_a_page_with_a_figure(site):
    notebooks = sorted((ROOT / "tutorials").glob("*.ipynb"))
    assert notebooks, "no notebook in tutorials/"
    index = (site / "tutorials.html").read_text(encoding="utf-8")
    for notebook in notebooks:
        page = site / "tutorials" / f"{notebook.stem}.html"
        assert page.is_file(), f"{notebook.name} has no page"
        assert f'href="tutorials/{notebook.stem}.html"' in index, f"{notebook.name} is not in the Tutorials toctree"
        images = [src for src in _parse(page).images if "_images/" in src or src.startswith("data:image")]
        assert images, f"{page.relative_to(site)} shows no image output (store the notebook executed)"


def test_results_pages_show_the_records(site):
    """The results pages carry the tables rendered from the records, and the evaluation report its figures."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("readme_tables", ROOT / "benchmarks" / "readme_tables.py")
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    generated = tables.tables()
    for page, name in [("index", "evaluation"), ("speed", "speed"), ("attention", "attention")]:
        text = re.sub(r"<[^>]+>", "", (site / "results" / f"{page}.html").read_text(encoding="utf-8"))
        first_row = next(line for line in generated[name].splitlines() if line.startswith("| ") and "---" not in line)
        cells = [c.strip() for c in first_row.strip("|").split("|") if c.strip()]
        assert all(cell.replace("`", "") in text for cell in cells[:3]), f"results/{page}.html lacks {cells[:3]}"
    report = DOCS / "results" / "evaluation.md"
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", report.read_text())
    shown = _parse(site / "results" / "evaluation.html").images
    assert len(shown) >= len(figures) > 0


def test_mask_page_example_runs():
    """The doctest on the mask page (docs/mask.md) gives what it shows."""
    result = doctest.testfile(str(DOCS / "mask.md"), module_relative=False, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 3 and result.failed == 0


def test_developer_page_example_runs():
    """The objective of the developer page (docs/developers.md) trains as the page shows."""
    result = doctest.testfile(
        str(DOCS / "developers.md"), module_relative=False, optionflags=doctest.NORMALIZE_WHITESPACE
    )
    assert result.attempted >= 5 and result.failed == 0


def test_the_api_pages_show_short_names_and_only_the_public_api(site):
    """Issue 25.7: the sidebar lists ``grn.load_regulons``, not ``sctransformer_tools.grn.load_regulons``, grouped
    by module as scanpy's documentation is, and the name helpers of ``grn`` are not listed."""
    import sctransformer_tools as sct

    page = (site / "api" / "grn.html").read_text(encoding="utf-8")
    sidebar = page.split('class="bd-sidebar-primary', 1)[1].split("</nav>", 1)[0]
    assert ">grn.load_regulons<" in sidebar and ">sctransformer_tools.grn.load_regulons<" not in sidebar
    for group in ("Model", "GRN:", "Tools:", "Plotting:", "Benchmarks:", "Datasets:", "Modules:"):
        assert group in sidebar, group
    for internal in ("gene_key", "positions", "looks_like_mouse", "looks_like_ensembl"):
        assert internal not in sct.grn.__all__ and callable(getattr(sct.grn, internal))  # importable, not public
        assert not list(site.rglob(f"*grn.{internal}.html")), internal
    import html

    text = " ".join(html.unescape(re.sub(r"<[^>]+>", "", page)).split())
    for name in ("MASK_KINDS", "DIRECTIONS"):  # the constants' values as the page writes them
        value = "(" + ", ".join(f'"{item}"' for item in getattr(sct.grn, name)) + ")"
        assert f"sctransformer_tools.grn.{name} = {value}" in text, name
    assert f'sctransformer_tools.grn.DATA_ENV = "{sct.grn.DATA_ENV}"' in text
