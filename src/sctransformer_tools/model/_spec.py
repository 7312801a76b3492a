"""A model's specification: gene panel, regulon edges, mask and architecture, resolved once from the data.

:class:`ModelSpec` is what defines a network apart from its trained weights. It is resolved from the
registered data once (regulons loaded once, highly variable genes ranked once, panel chosen once), saved with
the model as plain data and replayed as it is by ``load``, ``from_pretrained`` and ``load_query_data``: a
saved model never needs its regulon source again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from sctransformer_tools import grn
from sctransformer_tools._constants import ADATA_KEYS
from sctransformer_tools._data import get_matrix, highly_variable_genes

#: Settings of a model and their defaults (the keyword arguments of ``SCTransformer``).
DEFAULTS: dict[str, Any] = {
    "d_model": 64,
    "n_layers": 2,
    "n_heads": 4,
    "dropout": 0.0,
    "n_top_genes": 2000,
    "min_targets": 1,
    "direction": "tf_to_target",
    "self_loops": True,
    "genes_attend_cls": False,
    "dense_heads": 0,
    "masked_layers": None,
    "edge_bias": False,
    "max_tokens": 2048,
    "token_dropout": 0.3,
    "label_smoothing": 0.1,
    "class_weights": None,
    "profile_components": 50,
    "size_factors": "panel",
    "seed": 0,
}
#: Settings of the encoder's shape that the module takes as they are.
_ENCODER_SHAPE = (
    "d_model",
    "n_layers",
    "n_heads",
    "self_loops",
    "genes_attend_cls",
    "dense_heads",
    "masked_layers",
    "edge_bias",
    "max_tokens",
    "profile_components",
)
#: Settings that shape the encoder: a model started from a pretrained one shares them.
ARCHITECTURE = (*_ENCODER_SHAPE, "direction")
#: Settings passed on to the module as they are.
MODULE_SETTINGS = (*_ENCODER_SHAPE, "dropout", "token_dropout", "label_smoothing", "size_factors")
#: Cells the expression profile is fitted on at most (a seeded sample of larger data).
PROFILE_MAX_CELLS = 20_000
#: Highly variable genes read by the expression profile when the panel has none of its own (``n_top_genes=0``).
PROFILE_GENES = 2000


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Everything that defines a model's network, apart from its trained weights.

    Attributes
    ----------
    mask
        ``"grn"``, ``"dense"``, ``"random"`` or ``"shuffled"``.
    panel
        One row per panel gene (index: the model's gene names, in the order of its genes): ``symbol``,
        ``is_tf``, ``is_regulon_gene`` and ``is_profile_gene`` (read by the expression profile).
    edges
        The regulon edges among panel genes: ``source``, ``target`` (the model's gene names), ``weight`` (and
        ``confidence`` for DoRothEA). The mask is built from them (for every kind, with ``seed``).
    settings
        Every other setting (:data:`DEFAULTS`), plus ``module_kwargs`` passed to the module.

    Examples
    --------
    >>> import sctransformer_tools as sct
    >>> adata = sct.ds.pbmc68k_reduced()
    >>> sct.SCTransformer.setup_anndata(adata, labels_key="bulk_labels")
    >>> model = sct.SCTransformer(adata, n_layers=1, d_model=16, n_heads=2, n_top_genes=0)
    >>> spec = model.spec_
    >>> spec.mask, len(spec.panel) == spec.summary()["genes"], spec.settings["d_model"]
    ('grn', True, 16)
    """

    mask: str
    panel: pd.DataFrame
    edges: pd.DataFrame
    settings: dict[str, Any]

    # ------------------------------------------------------------------ build
    @classmethod
    def resolve(
        cls,
        data: AnnData,
        var_names: pd.Index,
        setup_args: dict,
        *,
        mask: str = "grn",
        symbols: pd.Index | None = None,
        layer: str | None = None,
        panel_genes: Sequence[str] | None = None,
        regulons: str | pd.DataFrame | None = None,
        **settings,
    ) -> ModelSpec:
        """Resolve a specification from registered data (regulons loaded once, panel chosen once).

        Parameters
        ----------
        data
            The registered AnnData (a MuData's RNA modality).
        var_names
            The model's genes (``data.var_names``).
        setup_args
            The setup arguments (regulons, organism, levels, batch key, log-normalised input).
        mask
            Mask kind.
        symbols
            Gene symbols the regulons are matched against (``gene_symbols`` of setup); ``var_names`` when ``None``.
        layer
            Layer of counts.
        panel_genes
            An explicit panel (names among ``var_names``) instead of regulon genes + highly variable genes.
        regulons
            Regulons instead of those of ``setup_args``.
        **settings
            Settings of :data:`DEFAULTS` (and ``module_kwargs``).
        """
        unknown = set(settings) - set(DEFAULTS) - {"module_kwargs"}
        if unknown:
            raise TypeError(f"Unknown setting(s) {sorted(unknown)}; the settings are {sorted(DEFAULTS)}.")
        if mask not in grn.MASK_KINDS:
            raise ValueError(f"Unknown mask {mask!r}: choose one of {grn.MASK_KINDS}.")
        settings = {**DEFAULTS, **settings}
        if settings["direction"] not in grn.DIRECTIONS:
            raise ValueError(f"Unknown direction {settings['direction']!r}: choose one of {grn.DIRECTIONS}.")
        if settings["size_factors"] not in ("panel", "library"):
            raise ValueError(f"size_factors must be 'panel' or 'library', got {settings['size_factors']!r}.")
        if settings["class_weights"] not in (None, "balanced"):
            raise ValueError(f"class_weights must be None or 'balanced', got {settings['class_weights']!r}.")
        var_names = pd.Index(var_names).astype(str)
        net = grn.load_regulons(
            setup_args["regulons"] if regulons is None else regulons,
            organism=setup_args.get("organism", "human"),
            levels=setup_args.get("regulon_levels", "ABC"),
        )
        variable = pd.Index([])
        log_normalized = bool(setup_args.get("log_normalized", False))
        hvg_kwargs = {"layer": layer, "batch_key": setup_args.get("batch_key"), "log_normalized": log_normalized}
        if panel_genes is None and settings["n_top_genes"]:
            variable = highly_variable_genes(data, settings["n_top_genes"], **hvg_kwargs)
        if panel_genes is None:
            panel = grn.select_panel(
                var_names, net, symbols=symbols, extra_genes=variable, min_targets=settings["min_targets"]
            )
        else:  # exactly the given genes (e.g. another model's panel), in the data's order
            panel_genes = pd.Index(np.asarray(panel_genes, dtype=str))
            missing = panel_genes[~panel_genes.isin(var_names)]
            if len(missing):
                raise ValueError(f"panel_genes not among the data's genes: {list(missing[:5])}")
            keep = var_names.isin(panel_genes)
            panel = grn.select_panel(
                var_names[keep],
                net,
                symbols=None if symbols is None else pd.Index(symbols)[keep],
                extra_genes=var_names[keep],
                min_targets=settings["min_targets"],
            )
        frame = panel.frame()
        if len(variable):
            profile = frame.index.isin(variable)
        else:
            n = min(PROFILE_GENES, len(frame))
            genes = (
                highly_variable_genes(data[:, list(frame.index)], n, **hvg_kwargs) if n < len(frame) else frame.index
            )
            profile = frame.index.isin(genes)
        frame["is_profile_gene"] = profile
        edges = panel.edges.assign(
            source=frame.index[panel.edges["source_idx"]], target=frame.index[panel.edges["target_idx"]]
        )
        columns = [c for c in ("source", "target", "weight", "confidence") if c in edges.columns]
        return cls(mask=mask, panel=frame, edges=edges[columns].reset_index(drop=True), settings=settings)

    def replace(self, **changes) -> ModelSpec:
        """A copy with ``mask`` or settings changed (the panel and edges kept)."""
        mask = changes.pop("mask", self.mask)
        unknown = set(changes) - set(DEFAULTS) - {"module_kwargs"}
        if unknown:
            raise TypeError(f"Unknown setting(s) {sorted(unknown)}; the settings are {sorted(DEFAULTS)}.")
        return ModelSpec(mask=mask, panel=self.panel, edges=self.edges, settings={**self.settings, **changes})

    # ------------------------------------------------------------------ read
    @property
    def genes(self) -> pd.Index:
        """Panel genes (the model's gene names)."""
        return pd.Index(self.panel.index)

    def edge_positions(self) -> pd.DataFrame:
        """The edges with ``source_idx`` / ``target_idx`` positions among panel genes (``min_targets`` applied)."""
        return grn.regulon_edges_in(self.genes, self.edges, min_targets=self.settings["min_targets"])

    def regulon_edges(self) -> pd.DataFrame:
        """Edges with panel positions, named by gene symbol."""
        edges = self.edge_positions()
        symbol = self.panel["symbol"].to_numpy()
        return edges.assign(source=symbol[edges["source_idx"]], target=symbol[edges["target_idx"]])

    def build_mask(self) -> grn.GRNMask:
        """The attention mask (deterministic: the same for the same spec)."""
        s = self.settings
        return grn.build_mask(
            len(self.panel),
            self.edge_positions(),
            kind=self.mask,
            direction=s["direction"],
            self_loops=s["self_loops"],
            genes_attend_cls=s["genes_attend_cls"],
            seed=s["seed"],
        )

    def profile_positions(self) -> np.ndarray:
        """Positions, among panel genes, of the genes the expression profile reads."""
        if "is_profile_gene" not in self.panel:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(self.panel["is_profile_gene"].to_numpy(dtype=bool))

    def summary(self) -> dict[str, int]:
        """Genes, TFs, regulon genes, other genes and regulon edges of the panel."""
        return {
            "genes": len(self.panel),
            "tfs": int(self.panel["is_tf"].sum()),
            "regulon_genes": int(self.panel["is_regulon_gene"].sum()),
            "extra_genes": int((~self.panel["is_regulon_gene"]).sum()),
            "regulon_edges": len(self.edges),
            "profile_genes": len(self.profile_positions()),
        }

    # ------------------------------------------------------------------ saving
    def to_dict(self) -> dict[str, Any]:
        """Plain data (tables and settings) for a model folder."""
        return {"mask": self.mask, "panel": self.panel, "edges": self.edges, "settings": dict(self.settings)}

    @classmethod
    def from_dict(cls, plain: dict[str, Any]) -> ModelSpec:
        """Inverse of :meth:`to_dict`."""
        settings = {**DEFAULTS, **plain["settings"]}
        if settings.get("masked_layers") is not None:
            settings["masked_layers"] = [int(x) for x in settings["masked_layers"]]
        panel = plain["panel"].copy()
        for column in ("is_tf", "is_regulon_gene", "is_profile_gene"):
            if column in panel:
                panel[column] = panel[column].astype(bool)
        return cls(mask=plain["mask"], panel=panel, edges=plain["edges"].copy(), settings=settings)


def panel_counts(data: AnnData, spec: ModelSpec, setup_args: dict) -> tuple:
    """The panel genes' counts of the registered cells (CSR; a seeded sample of :data:`PROFILE_MAX_CELLS` cells of
    larger data) and the cells' library sizes as registered.
    """
    from scipy import sparse

    from ._mudata import counts_layer

    cells = np.arange(data.n_obs)
    if data.n_obs > PROFILE_MAX_CELLS:
        rng = np.random.default_rng(spec.settings["seed"])
        cells = np.sort(rng.choice(data.n_obs, PROFILE_MAX_CELLS, replace=False))
    matrix = get_matrix(data, counts_layer(setup_args))[cells]
    if hasattr(matrix, "to_memory"):  # backed
        matrix = matrix.to_memory()
    matrix = sparse.csr_matrix(matrix, dtype=np.float32)[:, data.var_names.get_indexer(spec.genes)]
    library = data.obs[ADATA_KEYS.LIBRARY_COLUMN].to_numpy(dtype=np.float64)[cells]
    return matrix, library


def fit_panel_share(counts) -> np.ndarray:
    """Each panel gene's mean share of a cell's panel counts (cells with counts), for ``size_factors="panel"``."""
    from scipy import sparse

    totals = np.asarray(counts.sum(1)).ravel()
    has = totals > 0
    if not has.any():
        return np.full(counts.shape[1], 1.0 / max(counts.shape[1], 1), dtype=np.float32)
    shares = sparse.diags(1.0 / totals[has]) @ sparse.csr_matrix(counts)[has]
    return np.asarray(shares.mean(0)).ravel().astype(np.float32)


def fit_expression_profile(counts, library: np.ndarray, spec: ModelSpec, log_normalized: bool) -> dict[str, np.ndarray]:
    """Fit the expression profile's projection on the registered cells (labelled or not), on log-normalised
    expression with the model's size factors (see :func:`~sctransformer_tools.module.fit_profile`).
    """
    from scipy import sparse

    from sctransformer_tools.module import fit_profile

    matrix = sparse.csr_matrix(counts, dtype=np.float32)
    if not log_normalized:
        if spec.settings["size_factors"] == "panel":
            library = np.asarray(matrix.sum(1)).ravel()
        scale = 1e4 / np.maximum(library, 1.0)
        matrix = sparse.csr_matrix(sparse.diags(scale.astype(np.float32)) @ matrix)
        matrix.data = np.log1p(matrix.data)
    genes = spec.profile_positions()
    return fit_profile(matrix[:, genes], spec.settings["profile_components"], seed=spec.settings["seed"])
