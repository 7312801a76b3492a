"""Parameter descriptions shared by several docstrings, substituted by docrep (as scvi-tools' ``setup_anndata_dsp``).

A docstring decorated with ``@dsp.dedent`` is dedented and its ``%(name)s`` fields are replaced by the texts
below (a literal percent sign is written ``%%`` there). Each text is a numpydoc parameter entry: the name, then
its description indented by four spaces.
"""

from __future__ import annotations

from docrep import DocstringProcessor

_QUERY_LAYER = """\
    Layer of a query holding raw counts (``None``: ``X``). Default: the layer the reference was trained on if
    the query has it, else ``X`` (or a layer named ``"counts"``/``"raw_counts"``/... when ``X`` holds no whole
    numbers)."""

#: ``layer``: where a query keeps its counts.
param_layer = "layer\n" + _QUERY_LAYER

#: ``counts_layer``: the same, where ``layer`` means a layer of the network.
param_counts_layer = "counts_layer\n" + _QUERY_LAYER

#: ``gene_symbols``: the ``var`` column of a query's gene names.
param_gene_symbols = """\
gene_symbols
    ``var`` column of a query holding gene names in the model's naming (e.g. symbols when ``var_names`` are
    Ensembl IDs); ``var_names`` when ``None``."""

#: ``library_size_key``: a query's per-cell totals.
param_library_size_key = """\
library_size_key
    ``obs`` column of a query with each cell's total counts over all genes. Default: a column with a usual name
    (``n_counts``, ``total_counts``, ``nCount_RNA``, ``nUMI``, ...) when it can be one, else the row sums (with a
    warning when the query measures only a subset of genes)."""

#: ``batch_size`` of the methods that read cells (no training).
param_read_batch_size = """\
batch_size
    Cells per minibatch, a speed setting (what is computed for a cell does not depend on it). ``None``: chosen
    from the data, as many cells as hold about ``READ_TOKENS_CPU`` gene tokens on CPU and at most ``READ_MAX_CELLS``
    (:mod:`sctransformer_tools._constants`; see
    :meth:`CellReader.cells_per_minibatch <sctransformer_tools.model._reader.CellReader.cells_per_minibatch>`)."""

#: ``min_panel_match``: the share of panel genes a query must measure.
param_min_panel_match = """\
min_panel_match
    Smallest share of the model's panel genes the query must measure."""

#: ``ax`` of a one-panel plot.
param_ax = """\
ax
    Axes to draw into (a new figure by default)."""

#: ``show`` of every plot.
param_show = """\
show
    Show the figure (default: ``sc.settings.autoshow``); ``False`` returns the plot (see Returns)."""

#: ``save`` of every plot.
param_save = """\
save
    ``True``, a path, or a scanpy-style suffix: write the figure (see :func:`~sctransformer_tools.pl.save_path`)."""

#: The package's docstring processor: ``@dsp.dedent`` fills ``%(param_layer)s`` and the other fields above.
dsp = DocstringProcessor(
    param_layer=param_layer,
    param_counts_layer=param_counts_layer,
    param_gene_symbols=param_gene_symbols,
    param_read_batch_size=param_read_batch_size,
    param_library_size_key=param_library_size_key,
    param_min_panel_match=param_min_panel_match,
    param_ax=param_ax,
    param_show=param_show,
    param_save=param_save,
)
