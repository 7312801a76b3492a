"""Reference mapping (scvi-tools' ``ArchesMixin`` convention): adapt a trained reference to a query's cells.

``SCTransformer.load_query_data(query, reference)`` returns a *query model*: the reference's network and
calibration, plus query-specific parameters that change nothing yet
(:class:`~sctransformer_tools.module.QueryAdapter`: a gene-wise scale and shift of log-expression and a CLS
offset). ``query_model.train()`` learns only those, on the query's cells, without labels, through the objectives
that need none (:data:`ADAPT_OBJECTIVES`); every reference weight stays frozen and the reference model (object
and folder) is never changed. ``query_model.predict(query)`` then annotates the query.

scvi-tools' own ``ArchesMixin.load_query_data`` freezes by the layer names of its VAEs and does not fit a
transformer, so this is the package's own implementation of the same names and behaviour.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from anndata import AnnData
from scvi.data._constants import _SETUP_ARGS_KEY

from sctransformer_tools._constants import ADATA_KEYS, AUTO
from sctransformer_tools._data import user_stacklevel
from sctransformer_tools._docs import dsp
from sctransformer_tools.module import Consistency, MaskedExpression, PseudoLabels

from ._folder import SavedModel, read_model_folder
from ._mudata import counts_layer, expression_view, is_mudata, rna_modality
from ._reader import CellReader, register_cells
from ._training import DEFAULT_BATCH_SIZE, add_objective, fit_aside, restore_objectives

if TYPE_CHECKING:
    from ._model import SCTransformer

logger = logging.getLogger(__name__)

#: Objectives ``query_model.train()`` adapts the query-specific parameters with (chosen by
#: ``benchmarks/semi_supervised.py`` on the cross-study split); masked expression only where the reference has
#: a trained masked-expression head.
ADAPT_OBJECTIVES: dict[str, float] = {PseudoLabels.name: 1.0, MaskedExpression.name: 1.0}
#: Objectives that train the classifier on its own calls (built without distribution alignment on a query).
SELF_TRAINING = (PseudoLabels.name, Consistency.name)
#: How ``train()`` builds them on a query: no distribution alignment (the query's composition may differ from the
#: reference's, and the classifier is the reference's). Pseudo-labels balanced by type (``balance=True``) won on
#: the validation splits but moved most of pbmc68k's dendritic cells to other types, so they are not the default
#: (``docs/results/semi_supervised.md``, "How a query model self-trains").
QUERY_OBJECTIVE_SETTINGS: dict[str, dict] = {
    PseudoLabels.name: {"align": False},
    Consistency.name: {"align": False},
}
#: Optimiser steps of ``query_model.train()`` by default (whole epochs of the query, at least one).
ADAPT_STEPS = 300
#: Attributes of the reference a query model keeps (what it predicts with).
KEPT = ("calibration_", "novelty_", "label_colors_", "objectives_", "training_", "pretraining_", "is_trained_")


class MappingMixin:
    """``load_query_data`` and a query model's ``train``: reference mapping."""

    @classmethod
    @dsp.dedent
    def load_query_data(
        cls,
        adata: AnnData,
        reference_model: str | os.PathLike | SCTransformer,
        *,
        layer: str | None = AUTO,
        gene_symbols: str | None = None,
        library_size_key: str | None = None,
        min_panel_match: float = 0.05,
        unfrozen: Sequence[str] = (),
        accelerator: str = "auto",
        device: int | str = "auto",
        allow_pickle: bool = False,
    ) -> SCTransformer:
        """A model of the query, from a trained reference, whose query-specific parameters ``train`` adapts.

        The query may lack labels, order its genes differently, lack some of the reference's genes and hold
        others (the alignment of :meth:`prepare_query_anndata`). The query model reads a private copy of it
        aligned to the reference's genes; the query itself and the reference (model and folder) are not changed.

        Parameters
        ----------
        adata
            The query (raw counts in ``X`` or a layer; a MuData: its RNA modality).
        reference_model
            A trained model, or the folder it was saved to.
        %(param_layer)s
        %(param_gene_symbols)s
        %(param_library_size_key)s
        %(param_min_panel_match)s
        unfrozen
            Reference parameters to adapt too, by name prefix (e.g. ``("blocks.0.norm_attn",)``); default: only
            the query adapter.
        accelerator, device
            Where to put the network.
        allow_pickle
            As in :meth:`load`.

        Returns
        -------
        The query model; call its ``train()`` to adapt it, then ``predict(query)``.

        Examples
        --------
        >>> import sctransformer_tools as sct
        >>> model, _ = sct.ds.toy_model()  # a tiny reference model, trained on pbmc68k_reduced
        >>> query = sct.ds.pbmc68k_reduced()[1::2].copy()
        >>> query_model = sct.SCTransformer.load_query_data(query, model)
        >>> query_model.train(max_epochs=1, enable_progress_bar=False)
        >>> labels = query_model.predict(query)
        >>> query_model.mapping_["trained"], model.module.adapter is None  # the reference is unchanged
        (True, True)
        """
        from scvi.model._utils import parse_device_args

        if isinstance(reference_model, MappingMixin):
            reference, source = SavedModel.of_model(reference_model), "a model"
        else:
            reference = read_model_folder(reference_model, cls.__name__, allow_pickle=allow_pickle)
            source = str(reference_model)
        if not reference.attributes.get("is_trained_"):
            raise ValueError("The reference model has not been trained: train it before mapping a query onto it.")
        registry, spec, var_names = reference.registry, reference.spec, reference.var_names
        query = expression_view(adata, rna_modality(adata, None)) if is_mudata(adata) else adata
        read = CellReader.of_saved(reference).align(
            query,
            layer=layer,
            gene_symbols=gene_symbols,
            library_size_key=library_size_key,
            min_panel_match=min_panel_match,
            previous=query.uns.get(ADATA_KEYS.QUERY),
        )
        report = read.report
        internal = _register(cls, read.matrix, read.obs, var_names, registry)
        model = cls(internal, spec=spec)
        for name in KEPT:
            if name in reference.attributes:
                setattr(model, name, reference.attributes[name])
        restore_objectives(model)
        model.module.load_state_dict(reference.state_dict)
        model.module.add_adapter()
        model.mapping_ = {
            "reference": source,
            "n_cells": int(query.n_obs),
            "panel_match_ratio": float(report["panel_match_ratio"]),
            "unfrozen": list(unfrozen),
            "trained": False,
        }
        _, _, torch_device = parse_device_args(
            accelerator=accelerator, devices=device, return_device="torch", validate_single_device=True
        )
        model.to_device(torch_device)
        model.module.eval()
        return model

    def train(self, max_epochs: int | None = None, **kwargs) -> None:
        """Train the model (see :meth:`~sctransformer_tools.model._training.TrainingMixin.train`); a query model adapts its query parameters instead.

        For a query model (from :meth:`load_query_data`): only the query adapter (and ``unfrozen`` reference
        parameters) learn, on the query's cells, without labels, through :data:`ADAPT_OBJECTIVES` (or
        ``objectives=``), built as :data:`QUERY_OBJECTIVE_SETTINGS` says unless added before with
        :meth:`add_objective`; ``max_epochs`` defaults to about :data:`ADAPT_STEPS` optimiser steps. Accepts ``lr``
        (default 1e-2), ``batch_size``, ``objectives``, ``seed``, ``precision``, ``enable_progress_bar`` and
        Lightning trainer arguments.
        """
        if getattr(self, "mapping_", None) is None:
            return super().train(max_epochs, **kwargs)
        return self._adapt(max_epochs, **kwargs)

    def _adapt(
        self,
        max_epochs: int | None = None,
        *,
        lr: float = 1e-2,
        batch_size: int = DEFAULT_BATCH_SIZE,
        objectives: Mapping[str, float] | None = None,
        seed: int | None = None,
        precision: str | None = "auto",
        enable_progress_bar: bool = True,
        accelerator: str = "auto",
        devices="auto",
        **trainer_kwargs,
    ) -> None:
        weights = dict(ADAPT_OBJECTIVES if objectives is None else objectives)
        if MaskedExpression.name in weights and MaskedExpression.name not in self.module.objectives:
            weights.pop(MaskedExpression.name)  # the reference learned no masked-expression head to adapt with
        for name in weights:
            if name not in self.module.objectives:
                add_objective(self, name, **QUERY_OBJECTIVE_SETTINGS.get(name, {}))
        if not weights:
            raise ValueError("No objective to adapt the query with: pass objectives={'pseudo_labels': 1.0, ...}.")
        n_cells = self.adata.n_obs
        if max_epochs is None:
            max_epochs = max(1, round(ADAPT_STEPS / max(-(-n_cells // batch_size), 1)))
        prefixes = ("adapter.", *self.mapping_["unfrozen"])
        trainable = [p for name, p in self.module.named_parameters() if name.startswith(prefixes)]
        start = time.perf_counter()
        fit_aside(
            self,
            "mapping_history_",
            weights,
            np.arange(n_cells),
            np.array([], dtype=int),
            max_epochs=max_epochs,
            lr=lr,
            batch_size=batch_size,
            accelerator=accelerator,
            devices=devices,
            precision=precision,
            seed=self.spec_.settings["seed"] if seed is None else seed,
            enable_progress_bar=enable_progress_bar,
            plan_kwargs={"weight_decay": 0.0},
            trainable=trainable,
            **trainer_kwargs,
        )
        seconds = time.perf_counter() - start
        self.mapping_ = {
            **self.mapping_,
            "trained": True,
            "objectives": weights,
            "max_epochs": int(max_epochs),
            "seconds": round(seconds, 1),
        }
        logger.info(
            "Adapted the query model to %s query cells (%s, %d epochs) in %.0f s; the reference is unchanged.",
            f"{n_cells:,}",
            " + ".join(weights),
            max_epochs,
            seconds,
        )
        _warn_if_nothing_was_confident(self.mapping_history_, weights, self.module.objectives)


def _warn_if_nothing_was_confident(history, weights: Mapping[str, float], objectives) -> None:
    """Self-training objectives learn only from confident calls: say so when no query cell was confident."""
    self_training = [name for name in weights if name in SELF_TRAINING]
    if not self_training or len(self_training) < len(weights) or history is None:
        return
    shares = [history[key] for key in history if key.endswith("confident_share")]
    if shares and all(float(np.nanmax(np.asarray(share, dtype=float))) == 0.0 for share in shares):
        threshold = min(objectives[name].threshold for name in self_training)
        warnings.warn(
            f"No query cell reached the confidence the adaptation learns from ({threshold:.2f}, objectives "
            f"{' + '.join(self_training)}), so the query parameters did not move and the query model predicts as "
            "the reference does. Train the reference longer, or adapt with another objective "
            "(objectives={'masked_expression': 1.0} after pretraining).",
            UserWarning,
            stacklevel=user_stacklevel(),
        )


def _register(cls, matrix, obs: pd.DataFrame, var_names: pd.Index, registry: dict) -> AnnData:
    """The query aligned to the reference's genes, registered as an AnnData with the reference's field states."""
    setup = dict(registry[_SETUP_ARGS_KEY])
    setup_args = {
        "layer": counts_layer(setup),
        "labels_key": setup.get("labels_key"),
        "batch_key": setup.get("batch_key"),
        "unlabeled_category": setup.get("unlabeled_category"),
    }
    return register_cells(cls, matrix, obs, var_names, registry, {**setup, **setup_args}, "setup_anndata").adata
