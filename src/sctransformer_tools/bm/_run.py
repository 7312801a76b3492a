"""Run the evaluation on one train/test split: scTransformer per mask and regulons, and the peers."""

from __future__ import annotations

import logging
import os
import re
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

from ._attention import attention_vs_regulons, tf_activity_agreement
from ._metrics import classification_metrics, embedding_metrics, rare_classes
from ._peers import PEER_FUNCTIONS, PEERS, highly_variable_genes, pca_embedding
from ._records import make_record, umap_file
from ._resources import ResourceMonitor

logger = logging.getLogger(__name__)

#: Masks of scTransformer: the GRN and its three controls of the same density.
MASKS = ("grn", "dense", "random", "shuffled")
#: Everything :func:`evaluate` can run.
METHODS = ("sctransformer", *PEERS)


def regulon_setup(name: str, source: str | os.PathLike | pd.DataFrame | None = None) -> dict:
    """``setup_anndata`` arguments of a named regulon set.

    ``"collectri"`` -> CollecTRI; ``"dorothea_ABC"`` (any levels A-E after the underscore; plain
    ``"dorothea"`` means A-C) -> DoRothEA at those confidence levels; anything else must come with a
    ``source`` (a DataFrame or a CSV/TSV path).

    Parameters
    ----------
    name
        Name used in records.
    source
        The regulons when ``name`` is not a known resource.

    Returns
    -------
    ``{"regulons": ..., "regulon_levels": ...}`` for :meth:`SCTransformer.setup_anndata`.

    Examples
    --------
    >>> from sctransformer_tools.bm import regulon_setup
    >>> regulon_setup("dorothea_ABC"), regulon_setup("collectri")
    ({'regulons': 'dorothea', 'regulon_levels': 'ABC'}, {'regulons': 'collectri'})
    """
    if source is None or isinstance(source, str) and source.lower() == name.lower():
        low = name.lower()
        if low == "collectri":
            return {"regulons": "collectri"}
        match = re.fullmatch(r"dorothea(?:_([a-e]+))?", low)
        if match:
            return {"regulons": "dorothea", "regulon_levels": (match.group(1) or "abc").upper()}
        if source is None:
            raise ValueError(
                f"Unknown regulon set {name!r}: use 'collectri', 'dorothea_ABC' (levels A-E), or pass "
                "regulons={name: DataFrame or path}."
            )
    return {"regulons": source}


def parse_mask(spec: str, default_regulons: str) -> tuple[str, str]:
    """``"grn"`` -> ``("grn", default_regulons)``; ``"grn@dorothea_ABC"`` -> ``("grn", "dorothea_ABC")``.

    Parameters
    ----------
    spec
        Mask name, optionally ``@`` a regulon set name.
    default_regulons
        Regulon set of a bare mask name.

    Returns
    -------
    ``(mask, regulons)``.

    Examples
    --------
    >>> from sctransformer_tools.bm import parse_mask
    >>> parse_mask("shuffled@dorothea_ABC", "collectri"), parse_mask("dense", "collectri")
    (('shuffled', 'dorothea_ABC'), ('dense', 'collectri'))
    """
    mask, _, regulons = spec.partition("@")
    if mask not in MASKS:
        raise ValueError(f"Unknown mask {mask!r} in {spec!r}: choose from {MASKS} (optionally 'mask@regulons').")
    return mask, regulons or default_regulons


def _counts_in_x(adata: AnnData, layer: str | None) -> AnnData:
    if layer is None:
        return adata
    out = AnnData(X=adata.layers[layer], obs=adata.obs.copy(), var=adata.var.copy())
    return out


def _save_umap(path: Path, embedding: np.ndarray, labels: np.ndarray, predictions: np.ndarray, seed: int) -> None:
    """2-D UMAP of an embedding, saved with labels and predictions for the report's figure."""
    import anndata as ad
    import scanpy as sc

    tmp = ad.AnnData(X=np.zeros((len(labels), 1), dtype=np.float32), obsm={"X_emb": np.asarray(embedding, np.float32)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # exact kNN: above 4,096 cells scanpy's default (pynndescent) returns a scipy sparse array that
        # scanpy 1.11 then calls .getnnz on, which scipy >= 1.15 arrays lack (AttributeError)
        sc.pp.neighbors(tmp, use_rep="X_emb", n_neighbors=15, random_state=seed, transformer="sklearn")
        sc.tl.umap(tmp, random_state=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path, umap=tmp.obsm["X_umap"].astype(np.float32), labels=labels.astype(str), predictions=predictions.astype(str)
    )


def _sctransformer(
    train: AnnData,
    test: AnnData,
    labels_key: str,
    *,
    mask: str,
    setup: dict,
    seed: int,
    library_size_key: str | None,
    model_kwargs: dict,
    train_kwargs: dict,
    min_panel_match: float,
    attention: bool,
    attention_kwargs: dict,
    references: Mapping[str, pd.DataFrame],
    groups: np.ndarray | None = None,
    tf_activity_kwargs: Mapping | None = None,
) -> tuple[np.ndarray, np.ndarray, dict]:
    from sctransformer_tools import grn
    from sctransformer_tools.model import SCTransformer

    ref = train.copy()
    with ResourceMonitor() as usage:
        SCTransformer.setup_anndata(ref, labels_key=labels_key, library_size_key=library_size_key, **setup)
        model = SCTransformer(ref, mask=mask, seed=seed, **model_kwargs)
        model.train(**train_kwargs)
    query = test.copy()
    query.obs = query.obs.drop(columns=[labels_key])  # the truth stays out of the model's reach
    with ResourceMonitor() as timer, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zero-filled genes: counted in the record instead
        SCTransformer.prepare_query_anndata(
            query, model, min_panel_match=min_panel_match, library_size_key=library_size_key
        )
        pred = model.predict(query)
    latent = model.get_latent_representation(query)
    summary = model.mask_summary()
    net = grn.load_regulons(setup["regulons"], levels=setup.get("regulon_levels", "ABC"))
    info = {
        "train_s": usage.seconds,
        "peak_mb": usage.peak_mb,
        "peak_delta_mb": usage.peak_delta_mb,
        "predict_s": timer.seconds,
        "epochs": len(model.history["train_loss"]) if "train_loss" in model.history else None,
        # "auto" resolves per machine (bf16-mixed where the CPU/GPU has native bfloat16 matmuls)
        "precision": str(getattr(getattr(model, "trainer", None), "precision", None)),
        "panel_genes": summary["panel_genes"],
        "grn_edges_kept": summary["regulon_edges"],
        "grn_tfs_kept": summary["tfs"],
        "regulon_edges_total": len(net),
        "regulon_tfs_total": int(net["source"].nunique()),
        "mask_edges": summary["edges"],
        "density": summary["density"],
        "query_panel_match": query.uns.get("sctransformer_query", {}).get("panel_match_ratio"),
        "min_panel_match": min_panel_match,
        "embedding": "sctransformer_cls",
    }
    if attention and mask == "dense":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            info |= attention_vs_regulons(model, query, references=references, seed=seed, **attention_kwargs)
    if attention and groups is not None and mask in ("grn", "dense"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            info |= tf_activity_agreement(
                model,
                test,
                groups,
                net,
                library_size_key=library_size_key,
                seed=seed,
                **(tf_activity_kwargs or {}),
            )
    return np.asarray(pred, dtype=str), latent, info


def evaluate(
    adata_train: AnnData,
    adata_test: AnnData,
    labels_key: str = "cell_type",
    *,
    methods: Sequence[str] = METHODS,
    masks: Sequence[str] = MASKS,
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
    min_panel_match: float = 0.0,
    umap_dir: str | os.PathLike | None = None,
    profile: str = "custom",
    extra: Mapping | None = None,
    skip: Callable[[dict], bool] | None = None,
    on_record: Callable[[dict], None] | None = None,
    raise_errors: bool = True,
) -> list[dict]:
    """Train scTransformer (every mask) and peers on ``adata_train``; score them on ``adata_test``.

    Every method sees the same cells: raw counts of ``adata_train`` with labels, and ``adata_test``
    without its labels (genes the test set lacks are zero-filled). Scores are computed on the test cells
    whose label occurs in the training set (others are counted in ``n_test_excluded``):

    - labels: accuracy, macro-F1 and balanced accuracy over the test set's types, and ``rare_f1`` (mean
      F1 of the third of types with the fewest training cells, :func:`rare_classes`);
    - embedding (:func:`embedding_metrics`): scTransformer's CLS embedding, scANVI's latent space, and for
      the linear peers the PCA of their input (log-normalised training HVGs, ``embedding="pca_hvg"``);
    - attention (``mask="dense"`` models only, :func:`attention_vs_regulons`): AUROC of attention on the
      prior's TF -> target edges against non-edges, with a degree-preserving shuffled-prior null;
    - TF programs (``mask="grn"`` and ``"dense"``, :func:`tf_activity_agreement`): per true cell type,
      the attention ranking of TFs against decoupler ULM activity on the same test cells;
    - cost: wall time and peak RSS while training (:class:`ResourceMonitor`), prediction time.

    Parameters
    ----------
    adata_train, adata_test
        Cells x genes with raw counts (``X`` or ``layer``) and ``obs[labels_key]``.
    labels_key
        Cell-type column.
    methods
        Among ``"sctransformer"``, ``"logistic_regression"``, ``"celltypist"``, ``"scanvi"``.
    masks
        scTransformer masks, each ``"grn" | "dense" | "random" | "shuffled"``, optionally with a regulon
        set: ``"grn@dorothea_ABC"``. A bare name uses the first regulon set.
    regulons
        Regulon set name (``"collectri"``, ``"dorothea_ABC"``) or a mapping name -> source (a name, a
        DataFrame or a path, see :func:`regulon_setup`). Dense models' attention is also scored against
        every other set of the mapping.
    seeds
        Seeds of the models (the split is fixed by the inputs).
    dataset
        Name written into the records.
    layer
        Layer of counts (``None``: ``X``).
    library_size_key
        ``obs`` column of per-cell totals over all genes in both sets (row sums when ``None``).
    model_kwargs
        :class:`~sctransformer_tools.SCTransformer` arguments (``d_model``, ``n_layers``, ...).
    train_kwargs
        :meth:`~sctransformer_tools.SCTransformer.train` arguments (``max_epochs``, ...).
    peer_kwargs
        Per peer, keyword arguments of its function (e.g. ``{"scanvi": {"scvi_epochs": 100}}``).
    attention
        Score dense models' attention against the regulons.
    attention_kwargs
        Passed to :func:`attention_vs_regulons`.
    tf_activity_kwargs
        Passed to :func:`tf_activity_agreement` (``grn`` and ``dense`` models, when ``attention``).
    embedding_kwargs
        Passed to :func:`embedding_metrics`.
    min_panel_match
        Passed to :meth:`~sctransformer_tools.SCTransformer.prepare_query_anndata` (the share of the
        model's panel the test set must measure; the record keeps the realised ``query_panel_match``).
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
    One record per method x mask x regulons x seed, with the keys of :data:`RECORD_KEYS` first.

    Examples
    --------
    >>> import sctransformer_tools as sct
    >>> split = sct.bm.load_split("pbmc3k", seed=0)  # doctest: +SKIP
    >>> records = sct.bm.evaluate(
    ...     split.train, split.test, "cell_type", methods=["sctransformer", "logistic_regression"], seeds=[0, 1]
    ... )  # doctest: +SKIP
    >>> sct.bm.summary_table(records)  # doctest: +SKIP
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
    specs = list(dict.fromkeys(parse_mask(m, default_regulons) for m in masks))
    for _, reg in specs:
        if reg not in sources:
            sources[reg] = reg
    setups = {name: regulon_setup(name, src) for name, src in sources.items()}
    model_kwargs, peer_kwargs = dict(model_kwargs or {}), {k: dict(v) for k, v in (peer_kwargs or {}).items()}
    train_kwargs = {"enable_progress_bar": False, **(train_kwargs or {})}
    attention_kwargs, embedding_kwargs = dict(attention_kwargs or {}), dict(embedding_kwargs or {})

    train = _counts_in_x(adata_train, layer)
    test = _counts_in_x(adata_test, layer)
    train_labels = train.obs[labels_key].astype(str).to_numpy()
    has_label = train.obs[labels_key].notna().to_numpy()
    train_types = set(train_labels[has_label])
    truth_all = test.obs[labels_key].astype(str).to_numpy()
    scored = test.obs[labels_key].notna().to_numpy() & np.isin(truth_all, list(train_types))
    truth = truth_all[scored]
    if len(truth) == 0:
        raise ValueError("No test cell has a label that occurs in the training set: nothing to score.")
    rare = rare_classes(train_labels[has_label], np.unique(truth))
    common = {
        "n_train": int(train.n_obs),
        "n_test": int(test.n_obs),
        "n_test_scored": int(scored.sum()),
        "n_test_excluded": int((~scored).sum()),
        "rare_classes": rare,
        "profile": profile,
        **dict(extra or {}),
    }
    references: dict[str, pd.DataFrame] = {}
    pca_cache: dict[str, np.ndarray] = {}

    def reference_nets(own: str) -> dict[str, pd.DataFrame]:
        from sctransformer_tools import grn

        for name, setup in setups.items():
            if name not in references:
                references[name] = grn.load_regulons(setup["regulons"], levels=setup.get("regulon_levels", "ABC"))
        return {k: v for k, v in references.items() if k != own}

    def score(identity: dict, pred: np.ndarray, embedding: np.ndarray | None, info: dict, seed: int) -> dict:
        fields = dict(identity) | common | classification_metrics(truth, pred[scored], rare=rare)
        if embedding is not None:
            fields |= embedding_metrics(np.asarray(embedding)[scored], truth, seed=seed, **embedding_kwargs)
        fields |= info
        if umap_dir is not None and embedding is not None:
            _save_umap(
                umap_file(umap_dir, {**identity, "profile": profile}),
                np.asarray(embedding)[scored],
                truth,
                pred[scored],
                seed,
            )
        return make_record(**fields)

    runs: list[tuple[str, str | None, str | None]] = []
    if "sctransformer" in methods:
        runs += [("sctransformer", mask, reg) for mask, reg in specs]
    runs += [(m, None, None) for m in methods if m != "sctransformer"]
    records = []
    for seed in seeds:
        for method, mask, reg in runs:
            identity = {"dataset": dataset, "method": method, "mask": mask, "regulons": reg, "seed": int(seed)}
            if skip is not None and skip({"profile": profile, **identity}):
                logger.info("skip %s (already recorded)", identity)
                continue
            logger.info("run %s", identity)
            try:
                if method == "sctransformer":
                    pred, embedding, info = _sctransformer(
                        train,
                        test,
                        labels_key,
                        mask=mask,
                        setup=setups[reg],
                        seed=int(seed),
                        library_size_key=library_size_key,
                        model_kwargs=model_kwargs,
                        train_kwargs=train_kwargs,
                        min_panel_match=min_panel_match,
                        attention=attention,
                        attention_kwargs=attention_kwargs,
                        references=reference_nets(reg) if attention and mask == "dense" else {},
                        groups=np.where(scored, truth_all, None),
                        tf_activity_kwargs=tf_activity_kwargs,
                    )
                else:
                    kwargs = {"seed": int(seed), **peer_kwargs.get(method, {})}
                    if method in ("logistic_regression", "celltypist"):
                        kwargs.setdefault("library_size_key", library_size_key)
                    result = PEER_FUNCTIONS[method](train, test, labels_key, **kwargs)
                    pred, embedding = result.predictions, result.embedding
                    info = {
                        "train_s": result.train_s,
                        "peak_mb": result.peak_mb,
                        "peak_delta_mb": result.peak_delta_mb,
                        "predict_s": result.predict_s,
                        **result.info,
                    }
                    if embedding is None:
                        if "pca_hvg" not in pca_cache:
                            genes = highly_variable_genes(train, 2000)
                            pca_cache["pca_hvg"] = pca_embedding(test, genes, library_size_key=library_size_key)
                        embedding = pca_cache["pca_hvg"]
                        info["embedding"] = "pca_hvg"
                    else:
                        info["embedding"] = f"{method}_latent"
                record = score(identity, pred, embedding, info, int(seed))
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
