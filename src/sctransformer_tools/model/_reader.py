"""The one reader of cells: the reference as registered, any other AnnData aligned to the model's genes.

Every method that reads cells (``predict``, ``get_latent_representation``, ``get_attention``, pretraining,
reference mapping, query checks) goes through a :class:`CellReader`, which the model holds. For the registered
reference it reads the reference; for any other AnnData it builds a private, aligned copy of what the model needs
(the model's genes in its order, counts, library sizes, the batch column), registers *that* with scvi-tools for
the duration of the call and forgets it afterwards. The user's object keeps all of its genes and columns; results
are added to it by the caller. Minibatches reach the caller as :class:`~sctransformer_tools.module.CellBatch`.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scvi.data import AnnDataManager
from scvi.data._constants import _MODEL_NAME_KEY, _SETUP_ARGS_KEY, _SETUP_METHOD_NAME

from sctransformer_tools import grn
from sctransformer_tools._constants import ADATA_KEYS, AUTO, READ_MAX_CELLS, READ_TOKENS_CPU
from sctransformer_tools._data import (
    LIBRARY_SIZE_COLUMNS,
    aligned_matrix,
    check_expression,
    check_var_names,
    find_library_size_key,
    holds_whole_numbers,
    library_sizes,
    match_genes,
    user_stacklevel,
)
from sctransformer_tools.module import CellBatch

from ._mudata import counts_layer
from ._quiet import quiet_scvi

if TYPE_CHECKING:
    from ._model import SCTransformer

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: Layers tried (after the reference's own layer and ``X``) when looking for a query's raw counts.
COUNT_LAYERS = ("counts", "raw_counts", "raw", "umi", "UMI")
#: A query measuring less than this share of the panel, or fewer genes than this, is a gene subset: its row
#: sums are not library sizes.
SUBSET_PANEL_SHARE = 0.5
SUBSET_N_GENES = 5_000
#: Cells the number of gene tokens per cell is estimated from, spread evenly over those read.
READ_PROBE_CELLS = 64


@dataclass
class QueryData:
    """What the model reads for one call.

    Attributes
    ----------
    adata
        A registered AnnData with the model's genes (the reference itself, or a private aligned copy).
    measured
        Boolean per panel gene: the data measure it (genes a query lacks are zero-filled: never tokens).
    report
        Gene match and input choices (written to ``adata.uns["sctransformer_query"]`` of a query).
    """

    adata: AnnData
    measured: np.ndarray
    report: dict[str, Any]


def counts_source(adata: AnnData, layer: str | None, reference_layer: str | None, log_normalized: bool) -> str | None:
    """The layer of ``adata`` to read (``None``: ``X``).

    An explicit ``layer`` (a name or ``None`` for ``X``) is used as given. With ``"auto"``: the layer the
    reference was trained on when the query has it, else ``X``, else a layer called like raw counts
    (:data:`COUNT_LAYERS`); for a counts model the first of these that holds whole numbers is taken.
    """
    if layer != AUTO:
        if layer is not None and layer not in adata.layers:
            raise KeyError(
                f"Layer {layer!r} not found in the query's layers ({list(adata.layers) or 'none'}). Pass the layer "
                "that holds raw counts, or layer=None for adata.X."
            )
        return layer
    candidates: list[str | None] = []
    if reference_layer is not None and reference_layer in adata.layers:
        candidates.append(reference_layer)
    if adata.X is not None:
        candidates.append(None)
    candidates += [name for name in COUNT_LAYERS if name in adata.layers and name not in candidates]
    if not candidates:
        raise ValueError(
            "The query has neither adata.X nor a layer of counts"
            + (f" (layers: {list(adata.layers)})" if len(adata.layers) else "")
            + ". Pass layer= naming the layer that holds raw counts."
        )
    if log_normalized:
        return candidates[0]
    for candidate in candidates:
        matrix = adata.X if candidate is None else adata.layers[candidate]
        if holds_whole_numbers(matrix):
            return candidate
    return candidates[0]  # none looks like counts: the expression check says so


def _where(layer: str | None) -> str:
    return "adata.X" if layer is None else f"adata.layers[{layer!r}]"


def match_report(
    adata: AnnData,
    var_names: pd.Index,
    panel_genes: pd.Index,
    *,
    gene_symbols: str | None,
    min_panel_match: float,
):
    """Match a query's genes to a model's; refuse a query that measures too little of the panel.

    Returns
    -------
    The :class:`~sctransformer_tools._data.GeneMatch` (columns for the model's genes) and the report dict.
    """
    if gene_symbols is None:
        check_var_names(adata)
    match = match_genes(adata, var_names, gene_symbols=gene_symbols, what="the model")
    present = pd.Index(var_names)[match.present]
    panel_present = panel_genes.isin(present)
    ratio = float(panel_present.mean()) if len(panel_genes) else 0.0
    names = match.names
    if ratio < min_panel_match:
        expected = "Ensembl IDs" if grn.looks_like_ensembl(panel_genes) else "gene symbols"
        found = "Ensembl IDs" if grn.looks_like_ensembl(names) else "names"
        hint = ""
        better = [(c, share) for c, share in _better_columns(adata, panel_genes) if c != gene_symbols]
        if better and better[0][1] > ratio:
            column, share = better[0]
            hint = f" adata.var[{column!r}] matches {share:.0%} of the panel: pass gene_symbols={column!r}."
        raise ValueError(
            f"The query measures {int(panel_present.sum()):,} of the model's {len(panel_genes):,} panel genes "
            f"({ratio:.1%}, below min_panel_match={min_panel_match:.0%}). The model expects {expected} such as "
            f"{list(panel_genes[:5])}; the query has {found} such as {list(names[:5])}.{hint}"
            + (
                ""
                if hint
                else " If the query names genes differently (Ensembl IDs, another species), pass the var column "
                "holding the model's naming as gene_symbols=, or map the names first."
            )
            + " A query that truly measures few genes can be allowed with a lower min_panel_match."
        )
    report = {
        "n_model_genes": len(var_names),
        "n_shared_genes": int(match.present.sum()),
        "n_zero_filled_genes": int((~match.present).sum()),
        "n_panel_genes": len(panel_genes),
        "n_zero_filled_panel_genes": int((~panel_present).sum()),
        "panel_match_ratio": ratio,
        "n_unused_query_genes": int((~names.isin(var_names)).sum()),
        "n_matched_by_case_or_version": match.n_case_or_version,
        "n_ambiguous_names": match.n_ambiguous,
        # names written the mouse way (Pax5) read as a model's human genes (PAX5): namesakes, not orthologs
        "mouse_like_symbols": bool(
            match.n_case_or_version
            and grn.looks_like_mouse(_query_names(adata, gene_symbols))
            and not grn.looks_like_mouse(var_names)
        ),
    }
    return match, report


def _query_names(adata: AnnData, gene_symbols: str | None) -> np.ndarray:
    """The query's gene names as given (before matching): ``var[gene_symbols]`` or ``var_names``."""
    names = adata.var_names if gene_symbols is None else adata.var[gene_symbols]
    return np.asarray(names, dtype=str)


def _better_columns(adata: AnnData, panel: pd.Index) -> list[tuple[str, float]]:
    """``var`` columns ranked by the share of the panel they match."""
    panel_keys = set(grn.gene_key(panel))
    found = []
    for column in adata.var.columns:
        values = adata.var[column]
        if values.dtype.kind not in "OSU" and not isinstance(values.dtype, pd.CategoricalDtype | pd.StringDtype):
            continue
        keys = set(grn.gene_key(values.astype(str).to_numpy()))
        share = len(keys & panel_keys) / max(len(panel_keys), 1)
        if share > 0:
            found.append((column, share))
    return sorted(found, key=lambda item: -item[1])


def warn_about_match(report: dict, previous: dict | None, what: str | None = None) -> None:
    """The warnings a user should read about a query's genes, once per query (not again when unchanged).

    ``what`` names cells read for pretraining (e.g. ``"extra_adatas[0]"``); ``None``: a query to annotate.
    """
    if not report.get("n_cells", 1):  # no cells, nothing to warn about
        return
    keys = ("panel_match_ratio", "n_zero_filled_genes", "n_matched_by_case_or_version", "library_size")
    if previous is not None and all(previous.get(k) == report.get(k) for k in keys):
        return
    if report["library_size"].startswith("obs[") and report["params"]["library_size_key"] is None:
        logger.info(
            "Library sizes of %s read from adata.%s (totals over all genes).",
            what or "the query",
            report["library_size"],
        )
    if report["n_matched_by_case_or_version"] and report.get("mouse_like_symbols"):
        warnings.warn(
            f"{what or 'The query'}'s gene names look like mouse symbols (written 'Pax5', not 'PAX5'), and "
            f"{report['n_matched_by_case_or_version']:,} of them match the model's genes only after ignoring case: "
            "mouse genes were matched to their human namesakes, which is not an ortholog mapping (some namesakes "
            "are not orthologs, and genes without a namesake are left out). Map the genes to human orthologs first "
            "(e.g. with HCOP or Ensembl BioMart), or annotate with a model trained on a mouse reference.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    elif report["n_matched_by_case_or_version"]:
        warnings.warn(
            f"{report['n_matched_by_case_or_version']:,} genes of {what or 'the query'} match the model's only after "
            "ignoring case or an Ensembl version suffix; they are read as the model's genes.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    if report["n_zero_filled_genes"]:
        ratio = report["panel_match_ratio"]
        lacks = (
            f"{what or 'The query'} lacks {report['n_zero_filled_genes']:,} of the model's "
            f"{report['n_model_genes']:,} genes, {report['n_zero_filled_panel_genes']:,} of them among its "
            f"{report['n_panel_genes']:,} panel genes ({ratio:.0%} of the panel is measured). They are read as not "
            "expressed, so they "
        )
        if what is not None:  # cells to pretrain on: nothing is predicted for them
            warnings.warn(
                lacks + "are never tokens of these cells: neither masked nor read as context.",
                UserWarning,
                stacklevel=user_stacklevel(),
            )
            return
        warnings.warn(
            lacks
            + "take no part in attention; predictions rest on the genes the query has."
            + (
                " With under half of the panel measured, treat the calls as provisional: check them against marker "
                "genes, and compare with a model trained on the genes both datasets share (`reference[:, shared]`)."
                if ratio < 0.5
                else ""
            ),
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    if report["library_size"] == "row sums" and report.get("gene_subset") and report.get("n_cells", 1):
        warnings.warn(
            f"The query measures {report['panel_match_ratio']:.0%} of the model's panel genes "
            f"({report['n_query_genes']:,} genes in all) and adata.obs has no library-size column (looked for "
            f"{', '.join(LIBRARY_SIZE_COLUMNS[:4])}, ...). Each cell's library size is then the sum over these genes "
            "only, which scales its expression up against the reference: expect shifted predictions and "
            "confidences (the novelty, read from ranks within each cell, is not affected). Pass "
            "library_size_key='<obs column of each cell's total counts over all genes>'.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )


def read_query(
    adata: AnnData,
    var_names: pd.Index,
    panel_genes: pd.Index,
    registry: dict,
    params: dict,
    what: str = "the query",
    size_factors: str = "library",
):
    """Match, check and read a query.

    ``what`` names the data in messages; ``"the reference"`` (its own cells, read again for pretraining) is checked
    as at setup, anything else must hold counts when the model was trained on counts. With ``size_factors="panel"``
    the model divides each cell's counts by its own panel counts, so no library size is looked for.

    Returns
    -------
    The aligned counts (CSR, the model's genes), ``obs`` of the private copy, library sizes, the report and a
    boolean per model gene (the query measures it).
    """
    setup = registry[_SETUP_ARGS_KEY]
    log_normalized = bool(setup.get("log_normalized", False))
    source = counts_source(adata, params["layer"], counts_layer(setup), log_normalized)
    match, report = match_report(
        adata, var_names, panel_genes, gene_symbols=params["gene_symbols"], min_panel_match=params["min_panel_match"]
    )
    check_expression(adata, source, log_normalized, what=what, counts_required=what != "the reference")
    if params["layer"] == AUTO:
        logger.info(
            "%s of %s read from %s (chosen automatically; pass layer= to read another).",
            "Values" if log_normalized else "Counts",
            what,
            _where(source),
        )
    row_sums = library_sizes(adata, source)
    key = params["library_size_key"]
    found = key
    if key is None and not log_normalized and size_factors == "library":
        found = find_library_size_key(adata, source, row_sums)
    library = row_sums if found is None else library_sizes(adata, source, found)
    matrix = aligned_matrix(adata, source, match.columns)
    obs = pd.DataFrame(index=adata.obs_names.copy())
    obs[ADATA_KEYS.LIBRARY_COLUMN] = library
    batch_key = setup.get("batch_key")
    if batch_key is not None:
        if batch_key in adata.obs:
            obs[batch_key] = adata.obs[batch_key].to_numpy()
        elif adata.n_obs:
            warnings.warn(
                f"The model was trained with batches (obs[{batch_key!r}]) and the query has no such column: all "
                f"{adata.n_obs:,} of its cells are read as one unseen batch (the model's shared 'unseen batch' "
                f"embedding). Add the column to place cells in known batches.",
                UserWarning,
                stacklevel=user_stacklevel(),
            )
    report |= {
        "counts": _where(source),
        "library_size": (
            f"obs[{found!r}]" if found is not None else "row sums" if size_factors == "library" else "panel genes"
        ),
        "n_query_genes": int(adata.n_vars),
        "n_cells": int(adata.n_obs),
        "gene_subset": bool(report["panel_match_ratio"] < SUBSET_PANEL_SHARE or adata.n_vars < SUBSET_N_GENES),
        "params": {
            "layer": source,
            "gene_symbols": params["gene_symbols"],
            "library_size_key": key,
            "min_panel_match": params["min_panel_match"],
        },
    }
    return matrix, obs, library, report, match.present


@dataclass
class AlignedCells:
    """A dataset aligned to a model's genes (what :meth:`CellReader.align` returns).

    Attributes
    ----------
    matrix
        CSR counts on the model's genes, in their order (genes the data lack: zeros).
    obs
        ``obs`` of the private copy the model reads (library sizes, the batch column).
    library
        Library size of every cell (as found: an ``obs`` column or the row sums).
    report
        How the data matched (``adata.uns["sctransformer_query"]``).
    present
        Boolean per model gene: the data measure it.
    measured
        Boolean per panel gene: the data measure it.
    """

    matrix: Any
    obs: pd.DataFrame
    library: np.ndarray
    report: dict[str, Any]
    present: np.ndarray
    measured: np.ndarray


class CellReader:
    """Reads cells for a model (see the module docstring); the model holds one as ``model.reader``.

    Parameters
    ----------
    var_names
        The model's genes, in order.
    panel_genes
        The model's panel genes.
    registry
        The model's scvi-tools registry (setup arguments and field states).
    model
        The model whose network reads the cells (:meth:`read`, :meth:`map_batches`); ``None`` for a reader that
        only aligns datasets (:meth:`align`, e.g. of a saved model's folder).
    size_factors
        The model's ``size_factors`` setting: ``"panel"`` (each cell's own panel counts: no library size is read)
        or ``"library"`` (an ``obs`` column of totals, else the row sums).
    """

    def __init__(
        self,
        var_names: pd.Index,
        panel_genes: pd.Index,
        registry: dict,
        model: SCTransformer | None = None,
        size_factors: str = "library",
    ):
        self.var_names, self.panel_genes = pd.Index(var_names).astype(str), pd.Index(panel_genes)
        self.registry, self.model, self.size_factors = registry, model, size_factors

    @classmethod
    def of_folder(cls, folder, model_class: str, **kwargs) -> CellReader:
        """A reader that aligns datasets to the model saved in ``folder`` (``kwargs``: of ``read_model_folder``)."""
        from ._folder import read_model_folder

        return cls.of_saved(read_model_folder(folder, model_class, **kwargs))

    @classmethod
    def of_saved(cls, saved) -> CellReader:
        """A reader that aligns datasets to a saved model (a :class:`~sctransformer_tools.model._folder.SavedModel`)."""
        return cls(saved.var_names, saved.spec.genes, saved.registry, size_factors=saved.spec.settings["size_factors"])

    def align(
        self,
        adata: AnnData,
        *,
        layer: str | None = AUTO,
        gene_symbols: str | None = None,
        library_size_key: str | None = None,
        min_panel_match: float = 0.05,
        what: str = "the query",
        warn: str | None | bool = True,
        previous: dict | None = None,
    ) -> AlignedCells:
        """Match ``adata``'s genes to the model's, check its counts, and read it aligned.

        Parameters
        ----------
        adata
            Cells to read.
        layer, gene_symbols, library_size_key, min_panel_match
            How to read them (see :meth:`~sctransformer_tools.SCTransformer.prepare_query_anndata`).
        what
            How messages name the data (``"the reference"``: checked as at setup).
        warn
            Warn about the gene match (``True``), naming the data as a string when given; ``False``: silent.
        previous
            A report recorded before for the same data: the warnings are not repeated when nothing changed.
        """
        params = {
            "layer": layer,
            "gene_symbols": gene_symbols,
            "library_size_key": library_size_key,
            "min_panel_match": min_panel_match,
        }
        matrix, obs, library, report, present = read_query(
            adata, self.var_names, self.panel_genes, self.registry, params, what, self.size_factors
        )
        if warn:
            warn_about_match(report, previous, what=warn if isinstance(warn, str) else None)
        measured = np.asarray(self.panel_genes.isin(self.var_names[present]))
        return AlignedCells(matrix, obs, library, report, present, measured)

    @contextlib.contextmanager
    def read(
        self,
        adata: AnnData | None = None,
        *,
        layer: str | None = AUTO,
        gene_symbols: str | None = None,
        library_size_key: str | None = None,
        record: bool = True,
    ) -> Iterator[QueryData]:
        """Yield the :class:`QueryData` of ``adata`` (the reference when ``None``).

        For another AnnData, ``layer``, ``gene_symbols`` and ``library_size_key`` say how to read it (default:
        what :meth:`~sctransformer_tools.SCTransformer.prepare_query_anndata` recorded); with ``record`` the
        gene match is written to ``adata.uns["sctransformer_query"]`` and warned about once.
        """
        model = self._model()
        n_panel = len(self.panel_genes)
        if adata is None or adata is model.adata:
            if model.adata is None:
                raise ValueError("This model was loaded without data: pass the AnnData to read (adata=...).")
            reference = model._validate_anndata(model.adata)
            yield QueryData(reference, np.ones(n_panel, dtype=bool), {"reference": True})
            return
        if not isinstance(adata, AnnData):
            raise TypeError(f"Expected an AnnData, got {type(adata).__name__}.")
        previous = adata.uns.get(ADATA_KEYS.QUERY)
        recorded = dict((previous or {}).get("params", {}))
        aligned = self.align(
            adata,
            layer=layer if layer != AUTO else recorded.get("layer", AUTO),
            gene_symbols=gene_symbols if gene_symbols is not None else recorded.get("gene_symbols"),
            library_size_key=library_size_key if library_size_key is not None else recorded.get("library_size_key"),
            min_panel_match=recorded.get("min_panel_match", 0.05),
            warn=record,
            previous=previous,
        )
        if record:
            adata.uns[ADATA_KEYS.QUERY] = aligned.report
        with self.registered(aligned.matrix, aligned.obs) as internal:
            yield QueryData(internal, aligned.measured, aligned.report)

    def _model(self) -> SCTransformer:
        if self.model is None:
            raise ValueError("This reader only aligns datasets: reading cells needs the model (model.reader).")
        return self.model

    @contextlib.contextmanager
    def registered(self, matrix, obs: pd.DataFrame) -> Iterator[AnnData]:
        """A private AnnData of aligned counts (the model's genes) registered like the reference, then forgotten."""
        model = self._model()
        manager = register_cells(model, matrix, obs, pd.Index(model.get_var_names()), model.registry_)
        model._register_manager_for_instance(manager)
        try:
            yield manager.adata
        finally:
            model.deregister_manager(manager.adata)

    def map_batches(
        self,
        data: QueryData | AnnData,
        fn: Callable[[CellBatch], T],
        indices: np.ndarray | None = None,
        batch_size: int | None = None,
    ) -> list[T]:
        """``fn`` applied to each minibatch of what :meth:`read` yielded (or a registered AnnData).

        On the model's device, in evaluation mode and without gradients, in bfloat16 autocast where training chose
        bf16 as the faster precision on this machine (``model.precision_``). Minibatches of a query that lacks
        panel genes say which it measures (``CellBatch.measured``). ``batch_size=None``: as many cells as
        :meth:`cells_per_minibatch` chooses. What ``fn`` computes for a cell does not depend on the minibatch it
        is read in (evaluation mode).
        """
        adata = data.adata if isinstance(data, QueryData) else data
        if adata.n_obs == 0 or (indices is not None and len(indices) == 0):
            return []
        model = self._model()
        measured = None
        if isinstance(data, QueryData) and not data.measured.all():
            measured = torch.as_tensor(data.measured, device=model.device)
        if batch_size is None:
            batch_size = self.cells_per_minibatch(adata, indices, measured)
        loader = model._make_data_loader(adata=adata, indices=indices, batch_size=batch_size)
        model.module.eval()
        device = torch.device(model.device).type
        bf16 = (getattr(model, "precision_", None) or {}).get("precision") == "bf16-mixed"
        with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            batches = (CellBatch.from_tensors(tensors).to(model.device) for tensors in loader)
            return [fn(replace(batch, measured=measured)) for batch in batches]

    def cells_per_minibatch(
        self, adata: AnnData, indices: np.ndarray | None = None, measured: torch.Tensor | None = None
    ) -> int:
        """Cells per minibatch of reading when none is given: about :data:`READ_TOKENS_CPU` gene tokens on CPU.

        A cell costs the model one token per panel gene it expresses, from a dozen (a 140-gene panel) to over a
        thousand (a deep 10x v3 cell), and on CPU a minibatch whose intermediates outgrow the caches is read
        several times slower per cell. The tokens per cell are counted, as the tokenizer counts them, on
        :data:`READ_PROBE_CELLS` cells spread over those to read; the result lies between 1 and
        :data:`READ_MAX_CELLS` (always :data:`READ_MAX_CELLS` on other devices).
        """
        model = self._model()
        if torch.device(model.device).type != "cpu":
            return READ_MAX_CELLS
        cells = np.arange(adata.n_obs) if indices is None else np.asarray(indices)
        if len(cells) == 0:
            return READ_MAX_CELLS
        probe = np.unique(cells[np.linspace(0, len(cells) - 1, min(READ_PROBE_CELLS, len(cells))).astype(int)])
        tensors = next(iter(model._make_data_loader(adata=adata, indices=probe, batch_size=len(probe))))
        batch = CellBatch.from_tensors(tensors)
        tokenizer = model.module.tokenizer
        with torch.inference_mode():
            values = tokenizer.normalize(batch.x, batch.library, measured)
            per_cell = float((values > 0).sum(1).clamp(max=tokenizer.max_tokens).float().mean())
        return int(np.clip(READ_TOKENS_CPU // max(per_cell, 1.0), 1, READ_MAX_CELLS))


def register_cells(
    model, matrix, obs: pd.DataFrame, var_names: pd.Index, registry: dict, setup: dict | None = None, method=None
) -> AnnDataManager:
    """Aligned counts (the model's genes) as an AnnData registered with ``model``'s class like the data of
    ``registry`` (its field states; setup arguments ``setup`` and method ``method``, default: the registry's), through
    scvi-tools' public manager API (:class:`~scvi.data.AnnDataManager`, ``register_manager``).
    """
    setup = registry[_SETUP_ARGS_KEY] if setup is None else setup
    layer = counts_layer(setup)
    adata = AnnData(
        X=None if layer is not None else matrix,
        obs=obs,
        var=pd.DataFrame(index=var_names),
        layers={layer: matrix} if layer is not None else None,
    )
    manager = AnnDataManager(
        fields=model.registry_fields(setup),
        setup_method_args={
            _MODEL_NAME_KEY: registry[_MODEL_NAME_KEY],
            _SETUP_METHOD_NAME: method or registry.get(_SETUP_METHOD_NAME, "setup_anndata"),
            _SETUP_ARGS_KEY: setup,
        },
    )
    with quiet_scvi():
        manager.register_fields(adata, source_registry=registry)
    model.register_manager(manager)
    return manager
