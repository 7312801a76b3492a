"""Sphinx configuration of the sctransformer-tools documentation (layout of cookiecutter-scverse).

Build: ``sphinx-build -W --keep-going -n -b html docs docs/_build/html`` (``tests/test_docs.py`` does it).
Before Sphinx reads any page this file (1) copies the stored, executed notebooks of ``tutorials/`` into the
git-ignored ``docs/tutorials/`` (they are rendered, never executed: ``nb_execution_mode = "off"``) and (2) writes
the result tables from the committed records into the git-ignored ``docs/_generated/`` with the functions of
``benchmarks/readme_tables.py``, plus the command line's ``--help`` texts.
Intersphinx is off by default (this build runs offline and no installed package ships an ``objects.inv``):
set ``SCT_DOCS_INTERSPHINX=1`` to link scanpy, anndata, scvi-tools, ... types to their documentation.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import io
import json
import os
import re
import shutil
import sys
from datetime import date
from importlib.metadata import version as _version
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
GENERATED = HERE / "_generated"

# -- Project -------------------------------------------------------------------------------------------------

project = "sctransformer-tools"
author = "sctransformer-tools developers"
copyright = f"{date.today():%Y}, {author}"
release = _version("sctransformer-tools")
version = release
repository_url = "https://github.com/sctransformer-tools/sctransformer-tools"

# -- Build-time inputs: tutorials and generated pages ---------------------------------------------------------

#: Files of tutorials/ the site shows (executed notebooks and any image they link to).
TUTORIAL_SUFFIXES = {".ipynb", ".png", ".svg", ".jpg", ".jpeg", ".gif"}


def _relink(notebook: bytes) -> bytes:
    """Links of the notebook's markdown that are relative to ``tutorials/``, made relative to ``docs/tutorials/``.

    ``../docs/results/evaluation.md`` becomes ``../results/evaluation.md``; a link to another file of the repository
    (``../benchmarks/evaluate.py``) becomes its address on the repository's web page.
    """
    data = json.loads(notebook)
    for cell in data["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        source = re.sub(r"\]\(\.\./docs/", "](../", source)
        source = re.sub(r"\]\(\.\./(?!\.)", f"]({repository_url}/blob/main/", source)
        cell["source"] = source
    return (json.dumps(data, indent=1, ensure_ascii=False) + "\n").encode()


def _sync_tutorials() -> None:
    """Mirror ``tutorials/`` (notebooks and images) into ``docs/tutorials/``; files gone upstream are removed."""
    source, target = ROOT / "tutorials", HERE / "tutorials"
    wanted = {
        path.relative_to(source)
        for path in source.rglob("*")
        if path.is_file() and path.suffix.lower() in TUTORIAL_SUFFIXES and ".ipynb_checkpoints" not in path.parts
    }
    if target.exists():
        for path in sorted(target.rglob("*"), reverse=True):
            if path.is_file() and path.relative_to(target) not in wanted:
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
    for relative in sorted(wanted):
        content = (source / relative).read_bytes()
        if relative.suffix == ".ipynb":
            content = _relink(content)
        dst = target / relative
        if not dst.exists() or dst.read_bytes() != content:  # unchanged copies keep incremental builds
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(content)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _generate_results() -> None:
    """The result tables of ``docs/results/*.md``, rendered from the records by ``benchmarks/readme_tables.py``."""
    spec = importlib.util.spec_from_file_location("readme_tables", ROOT / "benchmarks" / "readme_tables.py")
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    for name, text in tables.tables().items():
        _write(GENERATED / f"{name}.md", text + "\n")
    for figure in (ROOT / "benchmarks" / "results").glob("*.png"):
        if not (GENERATED / figure.name).exists() or (GENERATED / figure.name).read_bytes() != figure.read_bytes():
            shutil.copy2(figure, GENERATED / figure.name)


def _generate_cli_help() -> None:
    """``sctransformer-tools [command] --help``, as the installed command prints it (88 columns)."""
    from sctransformer_tools.cli import main

    os.environ["COLUMNS"] = "88"
    blocks = []
    for command in ([], ["demo"], ["annotate"]):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            main([*command, "--help"])
        title = " ".join(["sctransformer-tools", *command, "--help"])
        blocks.append(f"`{title}`:\n\n```text\n{out.getvalue().rstrip()}\n```\n")
    _write(GENERATED / "cli_help.md", "\n".join(blocks))


# autosummary writes its pages into docs/api/generated/ but never removes one whose object left the API pages
shutil.rmtree(HERE / "api" / "generated", ignore_errors=True)
_sync_tutorials()
_generate_results()
_generate_cli_help()

# -- General configuration ------------------------------------------------------------------------------------

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx_autodoc_typehints",  # after napoleon
    "scanpydoc.elegant_typehints",  # prose "Returns" sections, as scanpy writes them
    "scanpydoc.definition_list_typed_field",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx_copybutton",
]
templates_path = ["_templates"]
exclude_patterns = ["_build", "_generated", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
master_doc = "index"
default_role = "literal"
# The evaluation report (docs/results/evaluation.md) is written by benchmarks/evaluate.py and starts its
# sections at level 3 under the title; that is its format, not a broken page.
suppress_warnings = ["myst.header"]

# MyST and notebooks: notebooks are stored executed (tests/test_tutorial.py runs their code); never re-run here.
myst_enable_extensions = ["colon_fence", "deflist", "dollarmath", "html_image", "html_admonition", "substitution"]
myst_heading_anchors = 3
nb_execution_mode = "off"
nb_output_stderr = "remove"
nb_merge_streams = True

# API: autosummary pages from the numpy docstrings.
autosummary_generate = True
autodoc_member_order = "groupwise"
autodoc_default_options = {"show-inheritance": False}
autodoc_typehints = "description"
typehints_defaults = "braces"
always_document_param_types = False
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_include_init_with_doc = False
napoleon_use_rtype = True
napoleon_use_param = True
napoleon_use_ivar = False
# scanpy's "Sets the following fields" section (with its variants, e.g. "... (when ``inplace``)"): a rubric over a
# definition list of the keys written into the AnnData.
napoleon_custom_sections = sorted(
    {
        header.strip()
        for path in (ROOT / "src").rglob("*.py")
        for header in re.findall(r"^[ \t]*(Sets the following fields[^\n]*)\n[ \t]*-{3,}", path.read_text(), flags=re.M)
    }
)


def _docstring_attributes(cls: type) -> set[str]:
    """Names of the class docstring's numpydoc ``Attributes`` section (napoleon documents those itself)."""
    lines = [*inspect.cleandoc(cls.__doc__ or "").splitlines(), ""]
    names: set[str] = set()
    inside = False
    for line, underline in zip(lines, lines[1:], strict=False):
        is_header = bool(line.strip()) and not line[0].isspace() and set(underline.strip()) == {"-"}
        if is_header:
            inside = line.strip() == "Attributes"
        elif inside and line.strip() and not line[0].isspace() and set(line.strip()) != {"-"}:
            names.update(name.strip() for name in line.split(":")[0].split(","))
    return names


def _own_members() -> dict[str, list[str]]:
    """Per documented class, the members defined in this package (not torch's, scvi-tools' or Python's).

    The class template (``_templates/autosummary/class.rst``) lists only these: an ``nn.Module`` has hundreds of
    inherited methods, and scvi-tools' ``BaseModelClass`` methods that do not apply to a classifier
    (``differential_abundance``, ``get_normalized_expression``) would read as part of the API. Attributes that the
    class docstring describes in its ``Attributes`` section are documented there, not twice.
    """
    import sctransformer_tools as sct

    own: dict[str, list[str]] = {}
    modules = [sct, *(getattr(sct, name) for name in ("grn", "nn", "module", "model", "tl", "pl", "bm", "ds"))]
    modules += [sct.bm.metrics, sct.bm.peers]
    for module in modules:
        for name, obj in vars(module).items():
            if not inspect.isclass(obj) or not obj.__module__.startswith("sctransformer_tools"):
                continue
            described = _docstring_attributes(obj)
            names = []
            for member in dir(obj):
                owner = next((klass for klass in obj.__mro__ if member in vars(klass)), None)
                if owner is not None and owner.__module__.startswith("sctransformer_tools") and member not in described:
                    names.append(member)
            own[f"{module.__name__}.{name}"] = names
    return own


autosummary_context = {"own_members": _own_members()}

# Cross-references: our own names must resolve (-n); external ones through intersphinx when it is on.
INTERSPHINX = os.environ.get("SCT_DOCS_INTERSPHINX", "0") == "1"
EXTERNAL = {
    "python": "https://docs.python.org/3",
    "numpy": "https://numpy.org/doc/stable",
    "pandas": "https://pandas.pydata.org/pandas-docs/stable",
    "scipy": "https://docs.scipy.org/doc/scipy",
    "anndata": "https://anndata.readthedocs.io/en/stable",
    "mudata": "https://mudata.readthedocs.io/en/latest",
    "scanpy": "https://scanpy.readthedocs.io/en/stable",
    "scvi": "https://docs.scvi-tools.org/en/stable",
    "decoupler": "https://decoupler.readthedocs.io/en/latest",
    "torch": "https://docs.pytorch.org/docs/stable",
    "lightning": "https://lightning.ai/docs/pytorch/stable",
    "matplotlib": "https://matplotlib.org/stable",
    "torchmetrics": "https://lightning.ai/docs/torchmetrics/stable",
    "sklearn": "https://scikit-learn.org/stable",
}
if INTERSPHINX:
    extensions.append("sphinx.ext.intersphinx")
    intersphinx_mapping = {name: (url, None) for name, url in EXTERNAL.items()}
nitpicky = True
# Names of the package's private modules (``sctransformer_tools.model._training.TrainingMixin``) are pointers
# into the source, deliberately not documented pages.
nitpick_ignore_regex = [(r"py:.*", r"(~?)sctransformer_tools(\.\w+)*\._\w+.*")]
# ``Callable[..., T]`` in a signature: the ellipsis is Python's, not an object to link
nitpick_ignore_regex += [(r"py:data", r"Ellipsis")]
#: Namespaces without an inventory in ``EXTERNAL``: never linked.
UNLINKED = ["celltypist", "scvi_tools"]
if not INTERSPHINX:  # offline: external types render as text; our own names still must resolve
    _aliases = ["np", "pd", "ad", "sc", "dc", "mu", "os", "pathlib", "contextlib", "collections", "typing"]
    _external = "|".join([*EXTERNAL, *UNLINKED, *_aliases])
    nitpick_ignore_regex += [
        (r"py:.*", rf"(~?)({_external})(\..*)?"),
        (r"py:.*", r"(AnnData|MuData|DataFrame|Series|Index|ndarray|Tensor|Module|Axes|Figure|Path|Generator)"),
        (r"py:.*", r"(ArrayLike|NDArray|Literal|Sequence|Mapping|Iterable|Callable|Any|Self|optional)"),
    ]
else:
    nitpick_ignore_regex += [(r"py:.*", rf"(~?)({'|'.join(UNLINKED)})(\..*)?")]


def _deprecated_aliases() -> list[str]:
    """Old public names a module ``__getattr__`` still serves with a warning (``sctransformer_tools._deprecated``).

    Docstrings may name them (``sctransformer_tools.pl.save_path``); they are no longer documented pages.
    """
    import sctransformer_tools as sct

    names = []
    for module in (sct.bm, sct.module, sct.nn, sct.model, sct.pl):
        closure = getattr(getattr(module, "__getattr__", None), "__closure__", None) or ()
        for cell in closure:
            if isinstance(cell.cell_contents, dict):
                names += [f"{module.__name__}.{name}" for name in cell.cell_contents]
    return names


_DEPRECATED = _deprecated_aliases()
nitpick_ignore_regex += [(r"py:.*", rf"(~?)({'|'.join(re.escape(name) for name in _DEPRECATED)})")]


def _lookup(path: str):
    """The object at a dotted path of the package, or ``None`` (module ``__getattr__`` aliases are not served)."""
    parts = path.split(".")
    for split in range(len(parts), 0, -1):
        module = sys.modules.get(".".join(parts[:split]))
        if module is not None:
            obj = module
            for part in parts[split:]:
                obj = vars(obj).get(part) if hasattr(obj, "__dict__") else None
                if obj is None:
                    return None
            return obj
    return None


def _resolve_own_short_name(app, env, node, contnode):
    """Resolve ``:meth:`predict``` and the like to the one object of this package the short name can mean.

    Docstrings name siblings without their module (``:data:`METRICS``` in ``bm.metrics``, ``:meth:`save``` in an
    autosummary table); Sphinx only finds them with the full path. A name that matches no documented object of
    the package, or several, stays unresolved and fails the build (``-n -W``).
    """
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip("~.")
    domain = env.get_domain("py")
    if target.startswith("sctransformer_tools."):  # a re-export (``bm.METRICS``) of a documented object
        obj, last = _lookup(target), target.rsplit(".", 1)[1]
        matches = [
            name
            for name in domain.objects
            if name.startswith("sctransformer_tools.")
            and name.endswith(f".{last}")
            and obj is not None
            and _lookup(name) is obj
        ]
        if len(matches) != 1:
            return None
        return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], matches[0], node, contnode)
    matches = sorted(
        {name for name in domain.objects if name.startswith("sctransformer_tools.") and name.endswith(f".{target}")}
    )
    if len(matches) > 1:  # prefer the page's own object, then its module
        for scope in (node["refdoc"].rsplit("/", 1)[-1], node.get("py:module") or ""):
            near = [name for name in matches if scope and name.startswith(f"{scope}.")]
            if near:
                matches = near
                break
    if len(matches) > 1:  # the same object re-exported: prefer the shortest (public) path
        shortest = min(len(name.split(".")) for name in matches)
        matches = [name for name in matches if len(name.split(".")) == shortest]
    if len(matches) != 1:
        return None
    return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], matches[0], node, contnode)


def _undocumented_name_as_text(app, env, node, contnode):
    """A short name that exists in the package's code but has no page (a private helper such as
    ``default_max_epochs``, or a deprecated alias such as ``PairGraph``): plain code, no link.

    Names that exist nowhere in the package (typos, removed functions) stay unresolved and fail the build.
    """
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip("~.")
    if "." in target or target.startswith("sctransformer_tools"):
        return None
    for name, module in list(sys.modules.items()):
        if name.startswith("sctransformer_tools") and module is not None and target in vars(module):
            return contnode
    return None


def setup(app):
    """Resolve the package's short cross-references before nitpicky mode reports them."""
    app.connect("missing-reference", _resolve_own_short_name, priority=400)
    app.connect("missing-reference", _undocumented_name_as_text, priority=450)


# -- HTML ----------------------------------------------------------------------------------------------------

html_theme = "sphinx_book_theme"
html_title = "sctransformer-tools"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_js_files = ["wrap_names.js"]  # API names in the sidebar wrap at dots and underscores, not inside words
html_show_sphinx = False
html_theme_options = {
    "repository_url": repository_url,
    "use_repository_button": True,
    "path_to_docs": "docs/",
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
pygments_style = "default"
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True
