"""Prediction: calibrated confidence, novelty against the reference, "Unknown" calls, majority voting."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from anndata import AnnData

from sctransformer_tools._colors import colors_of
from sctransformer_tools._constants import ADATA_KEYS, AUTO, NOVELTY_THRESHOLD, UNKNOWN
from sctransformer_tools._docs import dsp
from sctransformer_tools.module import CellBatch

from ._calibration import fit_temperature
from ._mudata import reads_mudata
from ._novelty import (
    MAX_FIT_CELLS,
    fit_novelty,
    novelty_percentile,
    restrict_novelty,
    upgrade_novelty,
)

logger = logging.getLogger(__name__)


def fit_confidence_and_novelty(model, train_idx: np.ndarray, val_idx: np.ndarray, codes: np.ndarray, seed: int):
    """After training: temperature scaling on the validation cells, the novelty model on the labelled cells."""
    model.calibration_ = None
    reader = model.reader
    with reader.read(None) as data:
        if len(val_idx):  # validation cells were never seen by the optimiser
            logits = torch.cat(reader.map_batches(data, lambda b: _logits(model, b), val_idx)).float()
            model.calibration_ = fit_temperature(logits, torch.as_tensor(codes[val_idx], dtype=torch.long))
        labelled = np.concatenate([train_idx, val_idx])
        if len(labelled) > MAX_FIT_CELLS:
            labelled = np.random.default_rng(seed).choice(labelled, MAX_FIT_CELLS, replace=False)
        labelled = np.sort(labelled)
        expression = torch.cat(reader.map_batches(data, lambda b: _expression(model, b).cpu(), labelled))
    model.novelty_ = fit_novelty(expression.numpy(), codes[labelled], model.summary_stats.n_labels, seed=seed)


def _expression(model, batch: CellBatch) -> torch.Tensor:
    """Log-normalised panel expression of a minibatch, as the model's tokenizer sees it."""
    return model.module.tokenizer.normalize(batch.x, batch.library, batch.measured).float()


def _logits(model, batch: CellBatch) -> torch.Tensor:
    module = model.module
    return module.classify(module.encode(batch).embedding).float().cpu()


class PredictionMixin:
    """``predict`` and what it rests on: the temperature and the novelty model fitted after training."""

    @property
    def temperature(self) -> float:
        """Temperature that divides the logits in :meth:`predict` (1.0 when none was fitted)."""
        calibration = getattr(self, "calibration_", None)
        return 1.0 if not calibration else float(calibration["temperature"])

    def _novelty_for(self, measured: np.ndarray) -> dict | None:
        """The novelty model for data measuring the panel genes ``measured`` (refitted on them if needed).

        A fit of an earlier version is refitted once from the reference cells it kept
        (:func:`~sctransformer_tools.model._novelty.upgrade_novelty`); both refits are cached, not saved.
        """
        fit = getattr(self, "novelty_", None)
        if fit is None:
            return None
        cache = self.__dict__.get("_restricted_novelty")  # not saved: no trailing underscore
        if cache is None or cache["of"] is not fit:  # a new fit (trained again, loaded) starts a new cache
            cache = self.__dict__["_restricted_novelty"] = {"of": fit, "current": upgrade_novelty(fit)}
        fit = cache["current"]
        if fit is None or measured.all():
            return fit
        key = np.flatnonzero(~measured).tobytes()
        if key not in cache:
            cache[key] = restrict_novelty(fit, measured)
            logger.info(
                "Novelty of this query is scored on the %d of %d panel genes it measures (refitted on them from "
                "the %d reference cells kept with the model).",
                int(measured.sum()),
                len(measured),
                len(fit["reference_types"]),
            )
        return cache[key]

    def _colors_of(self, categories) -> list[str]:
        """The model's colour of each cell type (``cell_type_colors``); "Unknown" light grey."""
        return colors_of(list(categories), self.cell_type_colors, UNKNOWN)

    # ---------------------------------------------------------------- predict
    @reads_mudata
    @dsp.dedent
    def predict(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        soft: bool = False,
        batch_size: int | None = None,
        key_added: str = ADATA_KEYS.PREFIX,
        inplace: bool = True,
        calibrated: bool = True,
        unknown_threshold: float | None = None,
        novelty_threshold: float | str | None = None,
        over_clustering: str | None = None,
        *,
        layer: str | None = AUTO,
        gene_symbols: str | None = None,
        library_size_key: str | None = None,
    ) -> np.ndarray | pd.DataFrame:
        """Predict cell types, with calibrated confidence, a novelty score and optional "Unknown" calls.

        ``adata`` may be the reference or any new dataset: its genes are matched to the model's on the fly
        (see :meth:`prepare_query_anndata` for what is matched and when a query is refused) and the object
        keeps all of its genes and columns; results are added to ``obs``. Probabilities are
        ``softmax(logits / T)``, with the temperature ``T`` fitted on the validation cells at the end of
        :meth:`train` (``model.calibration_``); temperature scaling changes confidences, never the predicted
        type.

        Parameters
        ----------
        adata
            Cells to annotate (raw counts in ``X`` or a layer); the reference when ``None``.
        indices
            Cells to predict (all when ``None``); only with ``inplace=False``.
        soft
            Return class probabilities (cells x cell types) instead of labels.
        %(param_read_batch_size)s
        key_added
            Prefix of the ``obs`` columns and ``uns`` key written.
        inplace
            Write the predictions into ``adata``.
        calibrated
            Apply the fitted temperature (``False``: raw softmax).
        unknown_threshold
            Cells whose confidence is below this are called ``"Unknown"``. ``None``: no confidence cut.
            Confidence does not catch a cell type absent from the reference (the classifier maps it onto a
            known type, often confidently): ``novelty_threshold`` does.
        novelty_threshold
            Cells more atypical than this share of the reference cells of the type they resemble most are
            called ``"Unknown"``. ``"auto"``: the measured threshold (``sctransformer_tools._constants.NOVELTY_THRESHOLD``), the one
            ``benchmarks/novelty.py`` chose on held-out cell types and PBMC sets of other chemistries
            (``docs/results/novelty.md``). The novelty percentile compares each cell's within-cell rank profile of
            the genes that tell the reference's types apart with that type's reference cells (fitted at the end of
            :meth:`train`, ``model.novelty_``; :mod:`sctransformer_tools.model._novelty`), which depth and
            chemistry move far less than expression itself; for a query that lacks panel genes it is refitted on
            the genes the query measures. ``None``: no novelty cut.
        over_clustering
            ``obs`` column of clusters (e.g. ``"leiden"``): also write the majority prediction of each
            cluster, as CellTypist's majority voting (needs ``inplace=True``).
        %(param_layer)s
        %(param_gene_symbols)s
        %(param_library_size_key)s

        Returns
        -------
        Predicted labels (array), or probabilities (DataFrame) when ``soft``.

        Sets the following fields (when ``inplace``)
        --------------------------------------------
        ``adata.obs[f"{key_added}_prediction"]``
            Predicted cell type (categorical: the types that have cells, in the reference's order, then
            ``"Unknown"``), with ``adata.uns[f"{key_added}_prediction_colors"]``: each type in the model's colour
            (``model.label_colors_``), ``"Unknown"`` light grey.
        ``adata.obs[f"{key_added}_confidence"]``
            Calibrated probability of the most likely type.
        ``adata.obs[f"{key_added}_novelty"]``
            Novelty percentile of the cell against the reference type it resembles most (0.5: typical,
            0.99: more atypical than 99%% of the reference cells of that type).
        ``adata.obs[f"{key_added}_majority_voting"]``
            With ``over_clustering``: the most frequent prediction of the cell's cluster.
        ``adata.uns[key_added]["params"]``
            The thresholds, temperature and where counts and library sizes were read.
        ``adata.uns["sctransformer_query"]``
            For a dataset other than the reference: how its genes matched the model's.

        Examples
        --------
        >>> import sctransformer_tools as sct
        >>> model, adata = sct.ds.toy_model()  # a tiny trained model and its data (pbmc68k_reduced)
        >>> labels = model.predict(adata, unknown_threshold=0.9)
        >>> adata.obs["sctransformer_prediction"].cat.categories[-1]
        'Unknown'
        """
        self.require_trained()
        if inplace and indices is not None:
            raise ValueError("indices can only be used with inplace=False (obs columns cover every cell).")
        if over_clustering is not None and not inplace:
            raise ValueError("over_clustering writes adata.obs: use it with inplace=True.")
        if over_clustering is not None and adata is not None and over_clustering not in adata.obs:
            raise KeyError(f"over_clustering={over_clustering!r} is not a column of adata.obs.")
        if isinstance(novelty_threshold, str):
            if novelty_threshold != AUTO:
                raise ValueError(f"novelty_threshold is a probability or {AUTO!r}, got {novelty_threshold!r}.")
            novelty_threshold = NOVELTY_THRESHOLD
        for name, value in (("unknown_threshold", unknown_threshold), ("novelty_threshold", novelty_threshold)):
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is a probability between 0 and 1, got {value}.")
        categories = self.cell_types
        if (unknown_threshold is not None or novelty_threshold is not None) and UNKNOWN in categories:
            raise ValueError(
                f"The reference already has a cell type called {UNKNOWN!r}; rename it to call cells Unknown."
            )
        target = self.adata if adata is None else adata
        reading = {"layer": layer, "gene_symbols": gene_symbols, "library_size_key": library_size_key}
        with self.reader.read(adata, **reading) as data:
            fit = self._novelty_for(data.measured)
            if novelty_threshold is not None and fit is None:
                raise ValueError("This model has no novelty model: train it (or retrain it) to use novelty_threshold.")

            def logits_and_novelty(batch: CellBatch):
                encoded = self.module.encode(batch)
                logits = self.module.classify(encoded.embedding).float().cpu()
                if fit is None:
                    return logits, torch.full((len(logits),), float("nan"))
                expression = encoded.tokens.expression.float().cpu().numpy()  # as the tokenizer read the cells
                return logits, torch.as_tensor(novelty_percentile(fit, expression))

            chunks = self.reader.map_batches(data, logits_and_novelty, indices, batch_size)
            report = data.report
        n_labels = len(categories)
        logits = torch.cat([c[0] for c in chunks]) if chunks else torch.zeros(0, n_labels)
        temperature = self.temperature if calibrated else 1.0
        probs = torch.softmax(logits / temperature, -1).numpy()
        novelty = torch.cat([c[1] for c in chunks]).numpy() if chunks else np.zeros(0)
        obs_names = target.obs_names if indices is None else target.obs_names[np.asarray(indices)]
        codes = probs.argmax(1) if len(probs) else np.zeros(0, dtype=int)
        confidence = probs.max(1) if len(probs) else np.zeros(0)
        called = list(categories)
        if unknown_threshold is not None or novelty_threshold is not None:
            unknown = np.zeros(len(codes), dtype=bool)
            if unknown_threshold is not None:
                unknown |= confidence < unknown_threshold
            if novelty_threshold is not None:
                unknown |= novelty > novelty_threshold
            codes = np.where(unknown, n_labels, codes)
            called.append(UNKNOWN)
        predicted = pd.Categorical.from_codes(codes, categories=called)
        if inplace:
            # only the types that have cells (legends list no empty types), each in the model's colour
            shown = predicted.remove_unused_categories()
            colors = self._colors_of(shown.categories)
            columns = {
                f"{key_added}_prediction": shown,
                f"{key_added}_confidence": confidence,
            }
            if fit is not None:
                columns[f"{key_added}_novelty"] = novelty
            for name, values in columns.items():
                target.obs[name] = values
            target.uns[f"{key_added}_prediction_colors"] = colors
            if over_clustering is not None:
                votes = pd.crosstab(target.obs[over_clustering], predicted.astype(str)).idxmax(axis=1)
                majority = pd.Categorical(
                    target.obs[over_clustering].map(votes).astype(str), categories=called
                ).remove_unused_categories()
                target.obs[f"{key_added}_majority_voting"] = majority
                target.uns[f"{key_added}_majority_voting_colors"] = self._colors_of(majority.categories)
                columns[f"{key_added}_majority_voting"] = None
            target.uns[key_added] = {
                "params": {
                    "unknown_threshold": unknown_threshold,
                    "novelty_threshold": novelty_threshold,
                    "temperature": temperature,
                    "over_clustering": over_clustering,
                    "counts": report.get("counts", "the reference's registered matrix"),
                    "library_size": report.get("library_size", "as registered"),
                }
            }
            n_unknown = int((codes == n_labels).sum()) if UNKNOWN in called else 0
            logger.info(
                "Annotated %s cells%s: adata.obs[%s].",
                f"{len(codes):,}",
                f" ({n_unknown:,} Unknown)" if UNKNOWN in called else "",
                ", ".join(repr(c) for c in columns),
            )
        if soft:
            return pd.DataFrame(probs, index=obs_names, columns=categories)
        return np.asarray(predicted)
