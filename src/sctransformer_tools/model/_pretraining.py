"""Self-supervised pretraining: masked expression on any cells (labelled or not), before ``train`` fine-tunes.

The corpus is the reference's cells (labels unused) plus any other AnnData given, each aligned to the model's
genes the way a query is (:mod:`sctransformer_tools.model._query`): genes a dataset does not measure are
zero-filled and so are never tokens, and library sizes come from a usual ``obs`` column when there is one.
The module's :class:`~sctransformer_tools.module.MaskedExpression` objective is trained on that corpus through
the same training plan, data loaders, progress bar and precision choice as ``train``; the encoder's weights
are then where ``train`` starts from.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from scvi.data._constants import _SETUP_ARGS_KEY

from sctransformer_tools._constants import ADATA_KEYS, AUTO
from sctransformer_tools.module import CellBatch, MaskedExpression

from ._mudata import counts_layer, expression_view, is_mudata, reads_mudata, rna_modality
from ._spec import ARCHITECTURE
from ._training import DEFAULT_BATCH_SIZE, add_objective, default_max_epochs, fit_aside

logger = logging.getLogger(__name__)

#: ``adata.uns`` key of :meth:`PretrainingMixin.get_masking_preference`.
MASKING_KEY = "sctransformer_masking"

#: Tensors with one row per panel gene: copied gene by gene (matched by symbol), new genes initialised fresh (MAM's
#: running loss per gene: new genes start unseen).
GENE_ROWS = (
    "gene_embedding.weight",
    "gene_value.weight",
    f"objectives.{MaskedExpression.name}.gene_loss",
    f"objectives.{MaskedExpression.name}.gene_seen",
)
#: Tensors tied to the pretrained data (its panel, mask, batches and cell types): never copied.
DATA_BOUND = (
    "tokenizer.panel_index",
    "mask_pairs",
    "mask_pair_weight",
    "has_mask",
    "batch_embedding.weight",
    "profile.genes",
    "profile.center",
    "profile.scale",
    "profile.components",
    "profile.linear.weight",
    "profile.linear.bias",
)


def _transferable(key: str) -> bool:
    """Whether a pretrained tensor is copied as it is: not gene rows (matched by symbol), not data-bound, and of
    the objectives only the masked-expression head and policy (the classifier is the new data's).
    """
    if key in GENE_ROWS or key in DATA_BOUND:
        return False
    return not key.startswith("objectives.") or key.startswith(f"objectives.{MaskedExpression.name}.")


class PretrainingMixin:
    """``pretrain``: masked-expression self-supervision of the encoder on labelled and unlabelled cells."""

    def pretrain(
        self,
        extra_adatas: Sequence[AnnData] | None = None,
        *,
        masking: str = "uniform",
        mask_ratio: float = 0.15,
        include_reference: bool = True,
        max_epochs: int | None = None,
        lr: float = 1e-3,
        batch_size: int = DEFAULT_BATCH_SIZE,
        validation_size: float = 0.05,
        layer: str | None = AUTO,
        precision: str | None = "auto",
        seed: int | None = None,
        enable_progress_bar: bool = True,
        objective_kwargs: dict | None = None,
        plan_kwargs: dict | None = None,
        **trainer_kwargs,
    ) -> None:
        """Pretrain the encoder by predicting the expression of masked gene tokens; then :meth:`train` fine-tunes.

        Each cell of the corpus hides the expression values of ``mask_ratio`` of its gene tokens (at least
        one); the encoder reads the rest and predicts the hidden values from the masked tokens' final states. Which
        tokens are hidden is chosen uniformly at random (``masking="uniform"``) or by Multinomial Attention Masking
        (``"mam"``), a learned policy trained to mask what the encoder finds hardest to predict relative to each
        gene's usual difficulty; ``"mam_shuffled"`` is its control arm, the same policy trained on rewards permuted
        among each cell's masked tokens (see :class:`~sctransformer_tools.module.MaskedExpression` for the
        estimator, the reward and how the policy is kept from collapsing). Labels are never read.
        ``model.pretraining_history_`` holds the per-epoch losses (``train_mse``, ``validation_mse``,
        ``*_masking_entropy``), ``model.pretraining_`` what was done.

        The reconstruction target (``objective_kwargs={"target": ...}``) is by default the log-normalised
        expression, predicted by squared error (``"log_expression"``). ``"counts"`` predicts the raw count, scored by
        a zero-truncated Poisson likelihood with the cell's library size as offset (it needs raw counts), and
        ``"bins"`` per-cell quantile bins (scGPT). 0.2 defaulted to ``"counts"``, chosen by
        ``benchmarks/pretraining.py`` on the test split it reports, with MAM's 0.2 estimator (biased; superseded):
        against log-normalised expression, macro-F1 after fine-tuning on pbmc3k +0.021; higher in 7, lower in 5,
        tied in 0 of 12 pairs (label share x seed), of which with 1% of the labels -0.044; higher in 0, lower in 3,
        tied in 0 of 3 pairs; across studies +0.009; higher in 3, lower in 0, tied in 0 of 3 pairs. Since 0.3 the
        default is the target the benchmark's ``target_selection`` experiment picks on a validation split of
        pbmc3k's training cells, with today's estimator (``docs/results/pretraining.md``).

        Backed AnnData (reference or extra data) are read chunk by chunk into a sparse corpus of the model's genes;
        ``strategy="ddp"`` trains data-parallel as :meth:`train` does (with unused-parameter detection: the CLS vector
        gets no gradient from reconstructing gene tokens).

        Parameters
        ----------
        extra_adatas
            More cells (e.g. unlabelled data of the same tissue, or the query itself: no label is read),
            raw counts in ``X`` or in the reference's layer; aligned to the model's genes by symbol.
        masking
            ``"uniform"``, ``"mam"`` or ``"mam_shuffled"`` (MAM's control arm).
        mask_ratio
            Share of each cell's expressed panel genes masked.
        include_reference
            Pretrain on the reference's cells too.
        max_epochs
            Passes over the corpus; ``None``: as :meth:`train` chooses for that many cells.
        lr
            Peak learning rate.
        batch_size
            Cells per minibatch.
        validation_size
            Share of the corpus held out to report the reconstruction error.
        layer
            Layer of ``extra_adatas`` with counts (``"auto"``: the reference's layer if present, else ``X``).
        precision, seed, enable_progress_bar, plan_kwargs, **trainer_kwargs
            As in :meth:`train`.
        objective_kwargs
            Passed to :class:`~sctransformer_tools.module.MaskedExpression` (``target``, ``n_bins``, ``n_latents``,
            ``max_logit``, ``entropy_weight``, ``n_draws``, ``reward``, ``loss_momentum``); ``target`` defaults to
            ``"log_expression"``, the target a validation split picked over the count likelihood (0.2's default)
            and ``"bins"`` (``docs/results/pretraining.md``); ``"counts"`` needs raw counts. MAM reads each cell
            ``n_draws=2`` times per step; ``{"n_draws": 2}`` gives uniform masking the same encoder cost.

        Examples
        --------
        >>> import sctransformer_tools as sct
        >>> adata = sct.ds.pbmc68k_reduced()
        >>> sct.SCTransformer.setup_anndata(adata, labels_key="bulk_labels")
        >>> model = sct.SCTransformer(adata, n_layers=1, d_model=16, n_heads=2, n_top_genes=0)
        >>> model.pretrain(masking="mam", max_epochs=1, enable_progress_bar=False)
        >>> model.pretraining_["masking"], sorted(model.pretraining_history_)[:2]
        ('mam', ['train_loss', 'train_masking_entropy'])
        >>> model.train(max_epochs=1, enable_progress_bar=False)  # fine-tune the pretrained encoder
        """
        if masking not in MaskedExpression.MASKINGS:
            raise ValueError(f"masking must be one of {MaskedExpression.MASKINGS}, got {masking!r}.")
        if not include_reference and not extra_adatas:
            raise ValueError("Nothing to pretrain on: pass extra_adatas or include_reference=True.")
        if self.adata is None and include_reference:
            raise ValueError("This model holds no reference data: pass the cells to pretrain on as extra_adatas.")
        seed = self.spec_.settings["seed"] if seed is None else seed
        start = time.perf_counter()
        matrix, obs, sources = self._pretraining_corpus(extra_adatas or [], include_reference, layer)
        n_cells = matrix.shape[0]
        rng = np.random.default_rng(seed)
        order = rng.permutation(n_cells)
        n_val = int(round(validation_size * n_cells)) if n_cells > 1 else 0
        val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
        if max_epochs is None:
            max_epochs = default_max_epochs(len(train_idx), batch_size)
        if trainer_kwargs.get("strategy") == "ddp":
            # the CLS vector gets no gradient from reconstructing gene tokens (genes do not attend to it)
            trainer_kwargs["strategy"] = "ddp_find_unused_parameters_true"
        objective_kwargs = dict(objective_kwargs or {})
        log_normalized = self.module.tokenizer.log_normalized
        objective_kwargs.setdefault("target", "log_expression")
        if objective_kwargs["target"] == "counts" and log_normalized:
            raise ValueError(
                "target='counts' needs raw counts; this model reads log-normalised data (set up with "
                "log_normalized=True). Use target='log_expression' or 'bins', or set the model up on counts."
            )
        if MaskedExpression.name in self.module.objectives:  # a new policy and head for a new run
            del self.module.objectives[MaskedExpression.name]
        add_objective(self, MaskedExpression.name, masking=masking, mask_ratio=mask_ratio, **objective_kwargs)
        with self.reader.registered(matrix, obs) as corpus:  # the classifier stays untrained until train()
            fit_aside(
                self,
                "pretraining_history_",
                {MaskedExpression.name: 1.0},
                train_idx,
                val_idx,
                adata=corpus,
                max_epochs=max_epochs,
                lr=lr,
                batch_size=batch_size,
                accelerator=trainer_kwargs.pop("accelerator", "auto"),
                devices=trainer_kwargs.pop("devices", "auto"),
                precision=precision,
                seed=seed,
                enable_progress_bar=enable_progress_bar,
                plan_kwargs=plan_kwargs,
                **trainer_kwargs,
            )
        seconds = time.perf_counter() - start
        last = {k: float(np.asarray(v).ravel()[-1]) for k, v in self.pretraining_history_.items() if len(v)}
        self.pretraining_ = {
            "masking": masking,
            "mask_ratio": float(mask_ratio),
            "objective_kwargs": objective_kwargs,
            "n_cells": int(n_cells),
            "n_validation_cells": int(n_val),
            "sources": pd.DataFrame(sources),
            "max_epochs": int(max_epochs),
            "seconds": round(seconds, 1),
            "precision": self.precision_.get("precision"),
            "validation_mse": last.get("validation_mse"),
        }
        logger.info(
            "Pretrained the encoder (%s masking, %.0f%% of each cell's tokens) for %d epochs on %s cells in %.0f s; "
            "validation reconstruction MSE %s.",
            masking,
            100 * mask_ratio,
            max_epochs,
            f"{n_cells:,}",
            seconds,
            "n/a" if last.get("validation_mse") is None else f"{last['validation_mse']:.3f}",
        )

    @classmethod
    def from_pretrained(
        cls,
        pretrained,
        adata: AnnData,
        mask: str | None = None,
        *,
        allow_pickle: bool = False,
        **kwargs,
    ):
        """Start a model for another dataset from a pretrained encoder (scvi-tools' ``from_scvi_model`` spirit).

        The new model gets its own gene panel and mask from ``adata`` and its regulons (set up with
        :meth:`setup_anndata` first), and takes from the pretrained one: the encoder (blocks, value encoder,
        CLS vector, final norm), the gene embeddings of the panel genes both share, matched by gene symbol
        (case-insensitive), and the masked-expression head and masking policy (so that :meth:`pretrain` can go on,
        e.g. on the new dataset's own cells). Genes the pretrained panel lacks start from a fresh
        initialisation; the classifier, batch embedding and mask are the new data's. What matched is in
        ``model.pretrained_from_`` (and logged).

        Parameters
        ----------
        pretrained
            A pretrained model, or the folder it was saved to.
        adata
            The new reference, registered with :meth:`setup_anndata`.
        mask
            The new model's mask (default: the pretrained model's).
        allow_pickle
            As in :meth:`load`.
        **kwargs
            Other settings of the new model (:class:`~sctransformer_tools.SCTransformer`); the encoder's shape
            (``d_model``, ``n_layers``, ``n_heads``, ...) is the pretrained one's and cannot be changed.

        Examples
        --------
        >>> import sctransformer_tools as sct
        >>> backbone, adata = sct.ds.toy_model()  # a tiny model, MAM-pretrained then trained, and its data
        >>> other = sct.ds.pbmc68k_reduced()[:, 100:].copy()  # another dataset: fewer genes
        >>> sct.SCTransformer.setup_anndata(other, labels_key="louvain")
        >>> model = sct.SCTransformer.from_pretrained(backbone, other, n_top_genes=0)
        >>> model.pretrained_from_["matched_genes"] <= model.pretrained_from_["panel_genes"]
        True
        """
        import torch

        from ._folder import SavedModel, read_model_folder

        if isinstance(pretrained, PretrainingMixin):
            saved, source = SavedModel.of_model(pretrained), "a model"
        else:
            saved, source = read_model_folder(pretrained, cls.__name__, allow_pickle=allow_pickle), str(pretrained)
        spec, state, attributes = saved.spec, saved.state_dict, saved.attributes
        done = attributes.get("pretraining_")
        panel = spec.panel
        fixed = {k: spec.settings[k] for k in ARCHITECTURE}
        clash = {k: (kwargs[k], v) for k, v in fixed.items() if k in kwargs and kwargs[k] != v}
        if clash:
            raise ValueError(
                "The encoder's shape is the pretrained model's: "
                + ", ".join(f"{k}={new!r} differs from its {k}={old!r}" for k, (new, old) in clash.items())
                + ". Drop these arguments."
            )
        module_kwargs = spec.settings.get("module_kwargs", {})
        model = cls(adata, mask=spec.mask if mask is None else mask, **{**fixed, **kwargs}, **module_kwargs)
        recorded = attributes.get("objectives_") or {}
        if done and MaskedExpression.name in recorded:
            model.pretraining_ = dict(done)
            add_objective(model, MaskedExpression.name, **recorded[MaskedExpression.name])
        new_state = model.module.state_dict()
        for key, value in state.items():
            if not _transferable(key):
                continue
            if key in new_state and tuple(new_state[key].shape) == tuple(value.shape):
                new_state[key] = torch.as_tensor(value)
        old = pd.Index(pd.Series(panel["symbol"]).astype(str).str.upper())
        new = pd.Index(model.spec_.panel["symbol"].astype(str).str.upper())
        old_pos = old.get_indexer(new)
        matched = old_pos >= 0
        for key in GENE_ROWS:
            if key in state and key in new_state:
                rows = new_state[key].clone()
                rows[torch.as_tensor(np.flatnonzero(matched))] = torch.as_tensor(state[key])[
                    torch.as_tensor(old_pos[matched])
                ].to(rows.dtype)
                new_state[key] = rows
        model.module.load_state_dict(new_state)
        model.pretrained_from_ = {
            "source": source,
            "pretrained_panel_genes": len(old),
            "panel_genes": len(new),
            "matched_genes": int(matched.sum()),
            "new_genes": int((~matched).sum()),
            "pretraining": dict(done) if done else None,
        }
        logger.info(
            "Started from the pretrained encoder of %s: %d of the new panel's %d genes matched by symbol (their gene "
            "embeddings copied), %d new genes initialised fresh.",
            source,
            int(matched.sum()),
            len(new),
            int((~matched).sum()),
        )
        return model

    @reads_mudata
    def get_masking_preference(
        self,
        adata: AnnData | None = None,
        *,
        n_draws: int = 32,
        batch_size: int = 256,
        key_added: str = MASKING_KEY,
        inplace: bool = True,
        layer: str | None = AUTO,
        gene_symbols: str | None = None,
        library_size_key: str | None = None,
        n_top_genes: int = 2000,
        seed: int | None = 0,
    ) -> pd.DataFrame:
        """How often the pretrained masking hides each gene, to be read against expression and the regulons.

        Every cell read is masked ``n_draws`` times by the model's own sampler (MAM's policy, or uniform masking),
        exactly as in pretraining but without token dropout, and each token's **inclusion rate** is the share of
        those draws that mask it: a rate, at most 1. A uniform choice masks each of a cell's ``n`` tokens at the
        rate ``k / n`` (``k`` = the masked tokens per cell); a token's **ratio to uniform** is its rate over its
        cell's ``k / n`` (at most ``n / k``; 1: as often as at random). Per gene, both are averaged over the cells
        expressing it, beside ``uniform_rate``, the mean ``k / n`` of these cells.

        Parameters
        ----------
        adata
            Cells to read (default: the reference).
        n_draws
            Draws of the mask per cell (Monte-Carlo error of a token's rate: at most ``0.5 / sqrt(n_draws)``,
            further averaged over the cells expressing the gene).
        batch_size
            Cells per minibatch.
        key_added
            ``adata.uns`` key of the result.
        inplace
            Write the result into ``adata.uns[key_added]``.
        layer, gene_symbols, library_size_key
            As in :meth:`predict`.
        n_top_genes
            Panel genes flagged ``is_highly_variable``: the most dispersed among the cells read (Seurat's
            normalised dispersion of log-normalised expression within 20 bins of mean expression, as
            :func:`scanpy.pp.highly_variable_genes` with ``flavor="seurat"``).
        seed
            Seed of the draws (``None``: torch's current random state).

        Returns
        -------
        One row per panel gene: ``symbol``, ``inclusion_rate``, ``uniform_rate``, ``ratio_to_uniform`` (NaN for genes
        no cell read expresses), ``n_cells`` (expressing it), ``detection`` (share of cells expressing it),
        ``mean_expression`` (log-normalised, over the cells expressing it), ``dispersion`` (normalised),
        ``is_highly_variable``, ``is_tf``, ``is_target`` (a target of a regulon edge of the panel),
        ``is_regulon_gene``. :func:`sctransformer_tools.tl.masking_preference_summary` compares the ratio across
        these classes.

        Sets the following fields (when ``inplace``)
        --------------------------------------------
        ``adata.uns[key_added]``
            ``{"genes": <the table>, "params": {...}}``.

        Examples
        --------
        >>> import sctransformer_tools as sct
        >>> model, adata = sct.ds.toy_model()  # a tiny model, MAM-pretrained then trained, and its data
        >>> genes = model.get_masking_preference(adata, n_draws=8)
        >>> bool(genes["inclusion_rate"].dropna().between(0, 1).all()), "sctransformer_masking" in adata.uns
        (True, True)
        """
        import torch

        done = getattr(self, "pretraining_", None)
        if not done or MaskedExpression.name not in self.module.objectives:
            raise ValueError("The model was not pretrained: call model.pretrain(masking='mam') first.")
        if n_draws < 1:
            raise ValueError(f"n_draws must be at least 1, got {n_draws}.")
        objective = self.module.objectives[MaskedExpression.name]
        n_genes = len(self.spec_.panel)
        names = ("inclusion_rate", "uniform_rate", "ratio_to_uniform", "n_cells", "expression", "squares")
        totals = {name: np.zeros(n_genes) for name in names}

        def read(batch: CellBatch):
            _, identity, value, tokens = self.module.embed_tokens(batch)
            rate, uniform = objective.inclusion_rates(identity, value, tokens, n_draws)
            genes = tokens.gene_ids.cpu().numpy()
            return genes, *(t.float().cpu().numpy() for t in (rate, uniform, rate / uniform, tokens.values))

        reading = {"layer": layer, "gene_symbols": gene_symbols, "library_size_key": library_size_key}
        with torch.random.fork_rng(enabled=seed is not None), self.reader.read(adata, **reading) as data:
            if seed is not None:
                torch.manual_seed(seed)
            n_cells = data.adata.n_obs
            for genes, rate, uniform, ratio, values in self.reader.map_batches(data, read, None, batch_size):
                np.add.at(totals["inclusion_rate"], genes, rate)
                np.add.at(totals["uniform_rate"], genes, uniform)
                np.add.at(totals["ratio_to_uniform"], genes, ratio)
                np.add.at(totals["n_cells"], genes, 1)
                np.add.at(totals["expression"], genes, values)
                np.add.at(totals["squares"], genes, values**2)
        expressing = totals["n_cells"]
        dispersion = _normalised_dispersion(totals["expression"], totals["squares"], n_cells)
        ranked = np.argsort(-np.nan_to_num(dispersion, nan=-np.inf), kind="stable")[: min(n_top_genes, n_genes)]
        highly_variable = np.zeros(n_genes, dtype=bool)
        highly_variable[ranked[np.isfinite(dispersion[ranked])]] = True
        with np.errstate(invalid="ignore", divide="ignore"):
            frame = pd.DataFrame(
                {
                    "symbol": self.spec_.panel["symbol"].to_numpy(),
                    "inclusion_rate": totals["inclusion_rate"] / expressing,
                    "uniform_rate": totals["uniform_rate"] / expressing,
                    "ratio_to_uniform": totals["ratio_to_uniform"] / expressing,
                    "n_cells": expressing.astype(int),
                    "detection": expressing / max(n_cells, 1),
                    "mean_expression": totals["expression"] / expressing,
                    "dispersion": dispersion,
                    "is_highly_variable": highly_variable,
                    "is_tf": self.spec_.panel["is_tf"].to_numpy(),
                    "is_target": np.isin(np.arange(n_genes), self.regulon_edges()["target_idx"].to_numpy()),
                    "is_regulon_gene": self.spec_.panel["is_regulon_gene"].to_numpy(),
                },
                index=self.spec_.panel.index,
            )
        target = self.adata if adata is None else adata
        if inplace and target is not None:
            params = {
                "masking": done["masking"],
                "n_draws": int(n_draws),
                "batch_size": batch_size,
                "n_cells": int(n_cells),
                "n_top_genes": int(n_top_genes),
                "seed": seed,
            }
            target.uns[key_added] = {"genes": frame, "params": params}
        return frame

    def _pretraining_corpus(self, extra_adatas: Sequence, include_reference: bool, layer: str | None):
        """Counts of every corpus cell on the model's genes (CSR), their ``obs`` and a description per source."""
        setup = self.registry_[_SETUP_ARGS_KEY]
        inputs = []
        if include_reference:
            reference = self.adata
            if is_mudata(reference):
                reference = expression_view(reference, rna_modality(reference, setup))
            params = {"layer": counts_layer(setup), "library_size_key": ADATA_KEYS.LIBRARY_COLUMN}
            inputs.append(("reference", reference, params))
        for i, adata in enumerate(extra_adatas):
            if is_mudata(adata):
                adata = expression_view(adata, rna_modality(adata, setup if "modalities" in setup else None))
            if not isinstance(adata, AnnData):
                raise TypeError(f"extra_adatas[{i}] is a {type(adata).__name__}, not an AnnData.")
            inputs.append((f"extra_adatas[{i}]", adata, {"layer": layer, "library_size_key": None}))
        matrices, frames, sources = [], [], []
        batch_key = setup.get("batch_key")
        for name, adata, params in inputs:
            what = "the reference" if name == "reference" else name
            read = self.reader.align(adata, **params, what=what, warn=name if name != "reference" else False)
            matrix, obs, report = read.matrix, read.obs, read.report
            obs.index = f"{len(frames)}:" + obs.index.astype(str)
            if batch_key is not None and batch_key not in obs:
                obs[batch_key] = np.nan  # read as the "unseen batch"
            matrices.append(sp.csr_matrix(matrix))
            frames.append(obs)
            sources.append(
                {
                    "name": name,
                    "n_cells": int(adata.n_obs),
                    "panel_match_ratio": float(report["panel_match_ratio"]),
                    "library_size": report["library_size"],
                }
            )
        return sp.vstack(matrices, format="csr"), pd.concat(frames), sources


def _normalised_dispersion(total: np.ndarray, squares: np.ndarray, n_cells: int, n_bins: int = 20) -> np.ndarray:
    """Seurat's normalised dispersion of each gene from its sum and sum of squares of log-normalised expression.

    Dispersion is variance over mean (zeros included); it is z-scored among the genes of the same bin of mean
    expression (``n_bins`` equal-width bins), as in :func:`scanpy.pp.highly_variable_genes` (``flavor="seurat"``,
    which takes the log of ``expm1``-ed means; here the log-normalised moments are used directly). NaN for genes
    never expressed.
    """
    n = max(n_cells, 1)
    mean = total / n
    variance = np.maximum(squares / n - mean**2, 0.0) * n / max(n - 1, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        dispersion = np.where(mean > 0, variance / mean, np.nan)
    seen = np.isfinite(dispersion)
    out = np.full_like(dispersion, np.nan)
    if not seen.any():
        return out
    bins = pd.cut(mean[seen], n_bins, labels=False)
    frame = pd.DataFrame({"bin": bins, "dispersion": dispersion[seen]})
    stats = frame.groupby("bin")["dispersion"].agg(["mean", "std"])
    centre = stats["mean"].reindex(bins).to_numpy()
    spread = stats["std"].reindex(bins).fillna(0).to_numpy()
    z = np.where(spread > 0, (dispersion[seen] - centre) / np.where(spread > 0, spread, 1), 0.0)
    out[seen] = z
    return out
