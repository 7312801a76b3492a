"""The study's runs on one train/test split: :func:`sctransformer_tools.bm.run` plus the study's measurements.

:func:`evaluate` runs every method x mask x regulon set x seed through ``sct.bm.run`` (one call per run, so that
a run can be skipped when already recorded, and a failing run recorded instead of stopping the study) with a
callback that adds what the study measures beyond the labels: peak memory of the training, the embedding
scores (scTransformer's CLS state, scANVI's latent space, the linear peers' PCA input space), the attention
analyses of :mod:`harness.attention`, and a UMAP file per run for the report. Each run becomes one record
(:func:`harness.records.make_record`).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

import sctransformer_tools as sct
from sctransformer_tools import grn
from sctransformer_tools.bm.metrics import rare_classes

from .attention import attention_vs_regulons, tf_activity_agreement
from .celltypist_compat import celltypist_compat
from .embedding import embedding_metrics, pca_embedding, save_umap
from .records import make_record, umap_file
from .resources import ResourceMonitor

logger = logging.getLogger(__name__)

#: Masks of scTransformer: the GRN and its three controls of the same density.
MASKS = ("grn", "dense", "random", "shuffled")
#: Peers of the study, in run order.
PEERS = ("logistic_regression", "celltypist", "celltypist_majority", "scanvi", "scanvi_surgery")
#: Everything :func:`evaluate` can run.
METHODS = ("sctransformer", *PEERS)
#: Per peer: the record key counting the test set's genes, and how (from the peer's training genes).
_TEST_GENES = {
    "logistic_regression": ("test_genes_missing", False),
    "celltypist": ("test_genes_shared", True),
    "celltypist_majority": ("test_genes_shared", True),
    "scanvi": ("test_genes_zero_filled", False),
    "scanvi_surgery": ("test_genes_zero_filled", False),
}


def _counts_in_x(adata: AnnData, layer: str | None) -> AnnData:
    if layer is None:
        return adata
    return AnnData(X=adata.layers[layer], obs=adata.obs.copy(), var=adata.var.copy())


def _query(test: AnnData, labels_key: str) -> AnnData:
    """The test cells without their labels, over the same matrix (not copied)."""
    return AnnData(X=test.X, obs=test.obs.drop(columns=[labels_key]), var=pd.DataFrame(index=test.var_names))


#: The share of the panel a query must measure before scTransformer reads it (the model's default check).
MIN_PANEL_MATCH = inspect.signature(sct.SCTransformer.prepare_query_anndata).parameters["min_panel_match"].default


def evaluate(
    adata_train: AnnData,
    adata_test: AnnData,
    labels_key: str = "cell_type",
    *,
    methods: Sequence[str] = METHODS,
    masks: Sequence[str] = MASKS,
    mode: str = "labelled",
    regulons: str | Mapping[str, str | os.PathLike | pd.DataFrame] = "collectri",
    seeds: Sequence[int] = (0,),
    dataset: str = "custom",
    layer: str | None = None,
    library_size_key: str | None = None,
    model_kwargs: Mapping | None = None,
    train_kwargs: Mapping | None = None,
    peer_kwargs: Mapping[str, Mapping] | None = None,
    attention: bool = True,
    attention_kwargs: Mapping | None = None,
    tf_activity_kwargs: Mapping | None = None,
    embedding_kwargs: Mapping | None = None,
    umap_dir: str | os.PathLike | None = None,
    profile: str = "custom",
    extra: Mapping | None = None,
    skip: Callable[[dict], bool] | None = None,
    on_record: Callable[[dict], None] | None = None,
    raise_errors: bool = True,
) -> list[dict]:
    """Train scTransformer (every mask) and peers on ``adata_train``; score them on ``adata_test``; one record each.

    Labels are scored by :func:`sctransformer_tools.bm.run` (accuracy, macro-F1, balanced accuracy, ``rare_f1``
    on the test cells whose type occurs in training); the study adds:

    - embedding (:func:`~harness.embedding.embedding_metrics`): scTransformer's CLS embedding, scANVI's latent
      space, and for the linear peers the PCA of their input (log-normalised training HVGs, ``embedding="pca_hvg"``);
    - attention (``mask="dense"`` models only, :func:`~harness.attention.attention_vs_regulons`): AUROC of
      attention on the prior's TF -> target edges against non-edges, with a degree-preserving shuffled-prior null;
    - TF programs (``mask="grn"`` and ``"dense"``, :func:`~harness.attention.tf_activity_agreement`): per true
      cell type, the attention ranking of TFs against decoupler ULM activity on the same test cells;
    - cost: wall time and peak RSS while training (:class:`~harness.resources.ResourceMonitor`), prediction time.

    Parameters
    ----------
    adata_train, adata_test
        Cells x genes with raw counts (``X`` or ``layer``) and ``obs[labels_key]``.
    labels_key
        Cell-type column.
    methods
        Among :data:`METHODS`.
    masks
        scTransformer masks, each ``"grn" | "dense" | "random" | "shuffled"``, optionally with a regulon
        set: ``"grn@dorothea_ABC"``. A bare name uses the first regulon set.
    mode
        How scTransformer learns (``sct.bm.run``'s ``modes``): ``"labelled"``, ``"unlabelled"`` (the test cells
        as unlabelled reference cells) or ``"mapping"`` (reference mapping onto the test cells).
    regulons
        Regulon set name (``"collectri"``, ``"dorothea_ABC"``) or a mapping name -> source (a name, a
        DataFrame or a path, see :func:`sctransformer_tools.grn.regulon_source`). Dense models' attention is also
        scored against every other set of the mapping.
    seeds
        Seeds of the models (the split is fixed by the inputs).
    dataset
        Name written into the records.
    layer
        Layer of counts (``None``: ``X``).
    library_size_key
        ``obs`` column of per-cell totals over all genes in both sets (row sums when ``None``).
    model_kwargs, train_kwargs, peer_kwargs
        Passed to :func:`sctransformer_tools.bm.run`.
    attention
        Score dense models' attention against the regulons (and grn/dense models' TF programs against ULM).
    attention_kwargs
        Passed to :func:`~harness.attention.attention_vs_regulons`.
    tf_activity_kwargs
        Passed to :func:`~harness.attention.tf_activity_agreement`.
    embedding_kwargs
        Passed to :func:`~harness.embedding.embedding_metrics`.
    umap_dir
        If given, a 2-D UMAP of each run's test embedding is saved there (``.npz``) for the report.
    profile
        Name of the settings (e.g. ``"full"``, ``"quick"``), part of each record's identity.
    extra
        Fields added to every record (e.g. the split's description).
    skip
        Called with a run's identity (``profile, dataset, method, mask, regulons, seed``); runs for which
        it returns ``True`` are skipped (resuming).
    on_record
        Called with each record as soon as its run finishes (e.g. to append it to a file).
    raise_errors
        If ``False``, a failing run yields a record with ``error`` set and ``None`` scores.

    Returns
    -------
    One record per method x mask x regulons x seed, with the keys of :data:`~harness.records.RECORD_KEYS` first.
    """
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ValueError(f"Unknown methods {sorted(unknown)}: choose from {METHODS}.")
    for key, adata in (("adata_train", adata_train), ("adata_test", adata_test)):
        if labels_key not in adata.obs:
            raise KeyError(f"{key} has no obs column {labels_key!r}.")
    sources = {regulons: regulons} if isinstance(regulons, str) else dict(regulons)
    if not sources:
        raise ValueError("regulons must name at least one regulon set.")
    default_regulons = next(iter(sources))
    specs = list(dict.fromkeys(sct.bm.parse_mask(m, default_regulons) for m in masks))
    for _, reg in specs:
        if reg not in sources:
            sources[reg] = reg
    setups = {name: grn.regulon_source(name, src) for name, src in sources.items()}
    attention_kwargs, embedding_kwargs = dict(attention_kwargs or {}), dict(embedding_kwargs or {})

    train = _counts_in_x(adata_train, layer)
    test = _counts_in_x(adata_test, layer)
    train_labels = train.obs[labels_key].astype(str).to_numpy()
    has_label = train.obs[labels_key].notna().to_numpy()
    truth_all = test.obs[labels_key].astype(str).to_numpy()
    scored = test.obs[labels_key].notna().to_numpy() & np.isin(truth_all, list(set(train_labels[has_label])))
    truth = truth_all[scored]
    if len(truth) == 0:
        raise ValueError("No test cell has a label that occurs in the training set: nothing to score.")
    common = {
        "n_train": int(train.n_obs),
        "n_test": int(test.n_obs),
        "n_test_scored": int(scored.sum()),
        "n_test_excluded": int((~scored).sum()),
        "rare_classes": rare_classes(train_labels[has_label], np.unique(truth)),
        "profile": profile,
        **dict(extra or {}),
    }
    nets: dict[str, pd.DataFrame] = {}
    pca: dict[str, np.ndarray] = {}

    def net_of(name: str) -> pd.DataFrame:
        if name not in nets:
            setup = setups[name]
            nets[name] = grn.load_regulons(setup["regulons"], levels=setup.get("regulon_levels", "ABC"))
        return nets[name]

    def measure(identity: dict, row: dict, fitted, usage: ResourceMonitor) -> dict:
        """The record of one run: ``run``'s row plus the study's measurements."""
        method, mask, reg, seed = identity["method"], identity["mask"], identity["regulons"], identity["seed"]
        query = _query(test, labels_key)
        info = {
            "recall": row.get("recall"),
            "map_s": row.get("map_s"),
            "train_s": row["train_s"],
            "peak_mb": usage.peak_mb,
            "peak_delta_mb": usage.peak_delta_mb,
            "predict_s": row["predict_s"],
        }
        if method == "sctransformer":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # zero-filled genes: counted in the record instead
                sct.SCTransformer.prepare_query_anndata(
                    query, fitted, min_panel_match=0.0, library_size_key=library_size_key
                )
                embedding = fitted.get_latent_representation(query, inplace=False)
            summary = fitted.mask_summary()
            net = net_of(reg)
            history = fitted.history or {}  # a query model keeps its adaptation apart (``mapping_history_``)
            info |= {
                "epochs": len(history["train_loss"]) if "train_loss" in history else None,
                "map_epochs": (getattr(fitted, "mapping_", None) or {}).get("max_epochs"),
                # "auto" resolves per machine (bf16-mixed where the CPU/GPU has native bfloat16 matmuls)
                "precision": str(getattr(getattr(fitted, "trainer", None), "precision", None)),
                "panel_genes": summary["panel_genes"],
                "grn_edges_kept": summary["regulon_edges"],
                "grn_tfs_kept": summary["tfs"],
                "regulon_edges_total": len(net),
                "regulon_tfs_total": int(net["source"].nunique()),
                "mask_edges": summary["edges"],
                "density": summary["density"],
                "query_panel_match": query.uns.get("sctransformer_query", {}).get("panel_match_ratio"),
                "min_panel_match": MIN_PANEL_MATCH,
                "embedding": "sctransformer_cls",
            }
            if attention and mask == "dense":
                references = {k: net_of(k) for k in setups if k != reg}
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    info |= attention_vs_regulons(fitted, query, references=references, seed=seed, **attention_kwargs)
            if attention and mask in ("grn", "dense"):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    info |= tf_activity_agreement(
                        fitted,
                        test,
                        np.where(scored, truth_all, None),
                        net,
                        library_size_key=library_size_key,
                        seed=seed,
                        **(tf_activity_kwargs or {}),
                    )
        else:
            key, shared = _TEST_GENES[method]
            measured = fitted.genes.isin(test.var_names)
            info |= dict(fitted.info) | {key: int((measured if shared else ~measured).sum())}
            if hasattr(fitted, "embed"):
                embedding = fitted.embed(query)
                info["embedding"] = f"{method}_latent"
            else:
                if "pca_hvg" not in pca:
                    genes = sct.pp.highly_variable_genes(train, 2000)
                    pca["pca_hvg"] = pca_embedding(test, genes, library_size_key=library_size_key)
                embedding = pca["pca_hvg"]
                info["embedding"] = "pca_hvg"
        labels = {k: row[k] for k in ("accuracy", "macro_f1", "balanced_accuracy", "rare_f1")}
        fields = dict(identity) | common | labels
        fields |= embedding_metrics(np.asarray(embedding)[scored], truth, seed=seed, **embedding_kwargs)
        fields |= info
        if umap_dir is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                pred = np.asarray(
                    fitted.predict(query, inplace=False) if method == "sctransformer" else fitted.predict(query), str
                )
            save_umap(
                umap_file(umap_dir, {**identity, "profile": profile}),
                np.asarray(embedding)[scored],
                truth,
                pred[scored],
                seed,
            )
        return make_record(**fields)

    def one(identity: dict) -> dict:
        """Run one identity through ``sct.bm.run`` and return its record."""
        monitors: list[ResourceMonitor] = []
        records: list[dict] = []

        def monitor() -> ResourceMonitor:
            monitors.append(ResourceMonitor())
            return monitors[-1]

        def callback(row: dict, fitted, _train: AnnData, _test: AnnData) -> None:
            records.append(measure(identity, row, fitted, monitors[-1]))

        method, mask, reg = identity["method"], identity["mask"], identity["regulons"]
        compat = celltypist_compat() if method.startswith("celltypist") else contextlib.nullcontext()
        with compat:
            sct.bm.run(
                None,
                labels_key,
                split=(train, test),
                methods=[method],
                masks=[mask] if mask is not None else MASKS,
                modes=[mode],
                seeds=[identity["seed"]],
                regulons={reg: sources[reg]} if reg is not None else "collectri",
                model_kwargs=model_kwargs,
                train_kwargs=train_kwargs,
                peer_kwargs=peer_kwargs,
                library_size_key=library_size_key,
                callback=callback,
                monitor=monitor,
            )
        return records[0]

    runs: list[tuple[str, str | None, str | None]] = []
    if "sctransformer" in methods:
        runs += [("sctransformer", mask, reg) for mask, reg in specs]
    runs += [(m, None, None) for m in methods if m != "sctransformer"]
    records = []
    for seed in seeds:
        for method, mask, reg in runs:
            identity = {"dataset": dataset, "method": method, "mask": mask, "regulons": reg, "seed": int(seed)}
            if method == "sctransformer":
                identity["mode"] = mode
            if skip is not None and skip({"profile": profile, **identity}):
                logger.info("skip %s (already recorded)", identity)
                continue
            logger.info("run %s", identity)
            try:
                record = one(identity)
            except Exception as err:
                if raise_errors:
                    raise
                logger.error("run %s failed: %s", identity, err)
                record = make_record(**identity, **common, error=f"{type(err).__name__}: {err}")
                record["traceback"] = traceback.format_exc(limit=5)
            logger.info(
                "done %s: macro-F1 %s, accuracy %s, %s s",
                identity,
                record.get("macro_f1"),
                record.get("accuracy"),
                record.get("train_s"),
            )
            records.append(record)
            if on_record is not None:
                on_record(record)
    return records
