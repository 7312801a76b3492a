"""Compare scTransformer's masks and the peers on a split of the user's own labelled cells."""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from sctransformer_tools.grn import regulon_source

from .metrics import METRICS, score
from .peers import PEERS

logger = logging.getLogger(__name__)

#: scTransformer's masks: the GRN and its three controls of the same density.
MASKS = ("grn", "dense", "random", "shuffled")
#: How scTransformer learns (``modes=``): from the labelled training cells only; with the test cells as unlabelled
#: cells of the reference (semi-supervised, their labels unread); or from the training cells, then mapped onto the
#: test cells (``load_query_data`` + ``train()``, scArches' convention).
MODES = ("labelled", "unlabelled", "mapping")
#: Methods :func:`run` knows.
METHODS = ("sctransformer", *PEERS)
#: Metrics :func:`run` reports by default.
DEFAULT_METRICS = ("accuracy", "macro_f1", "balanced_accuracy", "rare_f1")

Split = float | str | tuple[AnnData, AnnData]


def split(
    adata: AnnData, labels_key: str, test_size: float = 0.2, seed: int = 0, by: str | None = None
) -> tuple[AnnData, AnnData]:
    """Hold out a share of the labelled cells: stratified by cell type, or whole groups (``by``).

    Parameters
    ----------
    adata
        Labelled cells.
    labels_key
        ``obs`` column of cell types; cells without a label go to neither part.
    test_size
        Share of each cell type held out (every type with two or more cells has at least one test cell); with
        ``by``, the share of cells whose groups are held out (at least one group on each side).
    seed
        Seed of the draw.
    by
        ``obs`` column of groups (donors, samples, batches): whole groups are held out, so that no test group
        is seen in training.

    Returns
    -------
    ``(train, test)``, new AnnData objects.

    Examples
    --------
    >>> import sctransformer_tools as sct
    >>> adata = sct.ds.pbmc68k_reduced()
    >>> train, test = sct.bm.split(adata, "bulk_labels", test_size=0.2, seed=0)
    >>> train.n_obs, test.n_obs, set(test.obs["bulk_labels"]) == set(adata.obs["bulk_labels"])
    (558, 142, True)
    >>> adata.obs["donor"] = ["a", "b", "c", "d", "e"] * 140
    >>> train, test = sct.bm.split(adata, "bulk_labels", test_size=0.3, by="donor")
    >>> sorted(set(test.obs["donor"])), set(train.obs["donor"]) & set(test.obs["donor"]), test.n_obs
    (['c', 'e'], set(), 280)
    """
    from sctransformer_tools._data import stratified_split

    if labels_key not in adata.obs:
        raise KeyError(f"adata has no obs column {labels_key!r}.")
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be between 0 and 1, got {test_size}.")
    labels = adata.obs[labels_key]
    labelled = labels.notna().to_numpy()
    if by is None:
        train, test = stratified_split(labels[labelled].astype(str).to_numpy(), 1 - test_size, seed)
        where = np.flatnonzero(labelled)
        train, test = where[train], where[test]
    else:
        if by not in adata.obs:
            raise KeyError(f"adata has no obs column {by!r}.")
        groups = adata.obs[by].astype(str).to_numpy()
        names = np.unique(groups[labelled])
        if len(names) < 2:
            raise ValueError(f"Holding out whole groups needs at least two values of obs[{by!r}], got {len(names)}.")
        order = np.random.default_rng(seed).permutation(names)
        sizes = pd.Series(groups[labelled]).value_counts()
        held, n_held = [], 0
        for name in order[:-1]:  # the last group always trains
            if held and n_held >= test_size * labelled.sum():
                break
            held.append(name)
            n_held += sizes[name]
        is_test = np.isin(groups, held)
        train, test = np.flatnonzero(labelled & ~is_test), np.flatnonzero(labelled & is_test)
    return adata[np.sort(train)].copy(), adata[np.sort(test)].copy()


def parse_mask(spec: str, default_regulons: str) -> tuple[str, str]:
    """A mask and its regulon set, from ``"mask"`` or ``"mask@regulons"``.

    The study's way of naming a model trained on another regulon set than the first (``"grn@dorothea_ABC"``);
    the regulon-set name reads as in :func:`sctransformer_tools.grn.regulon_source`.

    Parameters
    ----------
    spec
        ``"grn"``, ``"dense"``, ``"random"`` or ``"shuffled"``, optionally followed by ``@`` and a regulon-set name.
    default_regulons
        The regulon set of a bare mask name.

    Returns
    -------
    ``(mask, regulons)``.

    Examples
    --------
    >>> import sctransformer_tools as sct
    >>> sct.bm.parse_mask("shuffled@dorothea_ABC", "collectri"), sct.bm.parse_mask("dense", "collectri")
    (('shuffled', 'dorothea_ABC'), ('dense', 'collectri'))
    """
    mask, _, regulons = spec.partition("@")
    if mask not in MASKS:
        raise ValueError(f"Unknown mask {mask!r} in {spec!r}: choose from {MASKS} (optionally 'mask@regulons').")
    return mask, regulons or default_regulons


def _splits(adata: AnnData | None, labels_key: str, how: Split, seed: int) -> tuple[AnnData, AnnData]:
    """The ``(train, test)`` of one seed (see :func:`run`'s ``split``)."""
    if isinstance(how, tuple):
        if len(how) != 2 or not all(isinstance(a, AnnData) for a in how):
            raise TypeError("split as a tuple must be (train AnnData, test AnnData).")
        return how
    if adata is None:
        raise ValueError("adata is needed unless split is a (train, test) pair.")
    if isinstance(how, str):
        if how not in adata.obs:
            raise KeyError(f"split={how!r} is not an obs column of adata.")
        values = adata.obs[how]
        if pd.api.types.is_bool_dtype(values):
            is_test = values.to_numpy(dtype=bool)
        else:
            text = values.astype(str).str.lower()
            if not text.isin(["train", "test"]).all():
                raise ValueError(f"obs[{how!r}] must hold 'train' / 'test' (or booleans, True = test).")
            is_test = (text == "test").to_numpy()
        return adata[~is_test].copy(), adata[is_test].copy()
    if isinstance(how, float | int) and not isinstance(how, bool):
        return split(adata, labels_key, test_size=float(how), seed=seed)
    raise TypeError(f"split must be a test share, an obs column or a (train, test) pair, got {type(how).__name__}.")


def _regulon_sets(regulons) -> dict[str, dict]:
    """Name -> ``setup_anndata`` arguments of every regulon set of :func:`run`'s ``regulons``."""
    if isinstance(regulons, pd.DataFrame):
        return {"custom": {"regulons": regulons}}
    if isinstance(regulons, str | os.PathLike):
        name = str(regulons)
        setup = regulon_source(name)
        return {Path(name).name if setup["regulons"] == name else name: setup}
    sets = {str(name): regulon_source(str(name), source) for name, source in dict(regulons).items()}
    if not sets:
        raise ValueError("regulons must name at least one regulon set.")
    return sets


def _shell(adata: AnnData, layer: str | None, drop: str | None = None) -> AnnData:
    """A new AnnData over ``adata``'s matrix (not copied), ``obs`` (without ``drop``) and genes."""
    obs = adata.obs.drop(columns=[drop]) if drop is not None and drop in adata.obs else adata.obs.copy()
    return AnnData(
        X=adata.X if layer is None else None,
        obs=obs,
        var=pd.DataFrame(index=adata.var_names),
        layers=None if layer is None else {layer: adata.layers[layer]},
    )


def _fit(method: str, train: AnnData, labels_key: str, seed: int, layer, library_size_key, options: dict, query=None):
    """Train one method on the training cells: an :class:`~sctransformer_tools.SCTransformer` or a fitted peer.

    ``options["mode"]="unlabelled"``: ``query``'s cells join the reference without labels.
    """
    if method != "sctransformer":
        adaptor = PEERS[method]
        kwargs = {"seed": seed, "layer": layer}
        if "library_size_key" in inspect.signature(adaptor).parameters:
            kwargs["library_size_key"] = library_size_key
        return adaptor(train, labels_key, **(kwargs | options["peer_kwargs"].get(method, {})))
    from sctransformer_tools.model import SCTransformer

    ref = _shell(train, layer)
    if options["mode"] == "unlabelled":
        ref = with_unlabelled(ref, query, labels_key, layer)
    SCTransformer.setup_anndata(
        ref, layer=layer, labels_key=labels_key, library_size_key=library_size_key, **options["setup"]
    )
    model = SCTransformer(ref, mask=options["mask"], seed=seed, **options["model_kwargs"])
    model.train(**options["train_kwargs"])
    return model


def _recall(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Recall of every true cell type (the share of its cells called it)."""
    return {str(t): float(np.mean(pred[truth == t] == t)) for t in sorted(set(truth))}


def with_unlabelled(reference: AnnData, query: AnnData, labels_key: str, layer: str | None = None) -> AnnData:
    """The reference and a query's cells in one new AnnData, the query's cells unlabelled, to train on both.

    The query is read on the reference's genes (a gene it lacks is zero-filled); its labels, if any, are dropped.
    ``setup_anndata(both, labels_key=labels_key)`` then marks its cells unlabelled (a missing label).

    Parameters
    ----------
    reference
        Labelled cells, raw counts in ``X`` or ``layer``.
    query
        Cells to annotate, counts in the same place.
    labels_key
        ``obs`` column of the reference's cell types.
    layer
        Layer of counts (``None``: ``X``).

    Returns
    -------
    ``reference`` and ``query`` concatenated.

    Examples
    --------
    >>> import sctransformer_tools as sct
    >>> adata = sct.ds.pbmc68k_reduced()
    >>> both = sct.bm.with_unlabelled(adata[:500], adata[500:], "bulk_labels")
    >>> both.n_obs, int(both.obs["bulk_labels"].isna().sum())
    (700, 200)
    """
    import anndata as ad

    from sctransformer_tools._data import align_genes

    cells = align_genes(query, reference.var_names, layer=layer)
    obs = query.obs.drop(columns=[labels_key], errors="ignore").copy()
    cells = AnnData(
        X=cells.X if layer is None else None,
        obs=obs,
        var=pd.DataFrame(index=reference.var_names),
        layers=None if layer is None else {layer: cells.X},
    )
    labels = reference.obs[labels_key]
    reference = AnnData(
        reference.X, obs=reference.obs.drop(columns=[labels_key]), var=reference.var, layers=reference.layers
    )
    both = ad.concat([reference, cells], join="outer", merge="same", index_unique=None)
    # set after concatenating: an all-missing column in the concatenation is deprecated by pandas
    values = np.concatenate([labels.astype(object).to_numpy(), np.full(cells.n_obs, np.nan, dtype=object)])
    both.obs[labels_key] = pd.Categorical(values)
    return both


def run(
    adata: AnnData | None,
    labels_key: str,
    *,
    split: Split = 0.2,
    methods: Sequence[str] = ("sctransformer", "logistic_regression"),
    masks: Sequence[str] = MASKS,
    modes: Sequence[str] = ("labelled",),
    seeds: Sequence[int] = (0,),
    regulons: str | os.PathLike | pd.DataFrame | Mapping[str, str | os.PathLike | pd.DataFrame] = "collectri",
    model_kwargs: Mapping | None = None,
    train_kwargs: Mapping | None = None,
    peer_kwargs: Mapping[str, Mapping] | None = None,
    mapping_kwargs: Mapping | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    layer: str | None = None,
    library_size_key: str | None = None,
    callback: Callable[[dict, Any, AnnData, AnnData], None] | None = None,
    monitor: Callable[[], contextlib.AbstractContextManager] | None = None,
) -> pd.DataFrame:
    """Train scTransformer (every mask x regulon set) and peers on training cells; score them on held-out cells.

    Every method sees the same cells: the training cells' counts and labels, then the test cells without their
    labels (genes a test set lacks are read as zeros). Scores are computed on the test cells whose label occurs
    in training; the others are counted in ``n_test_excluded``.

    Parameters
    ----------
    adata
        Labelled cells, raw counts in ``X`` or ``layer`` (``None`` when ``split`` is a ``(train, test)`` pair).
    labels_key
        ``obs`` column of cell types.
    split
        A test share (stratified holdout per cell type, drawn anew for each seed with
        :func:`sctransformer_tools.bm.split`), an ``obs`` column holding ``"train"`` / ``"test"`` (or booleans,
        ``True`` = test), or a ``(train, test)`` pair of AnnData objects.
    methods
        Among ``"sctransformer"`` and the peers of :mod:`sctransformer_tools.bm.peers` (``"logistic_regression"``,
        ``"celltypist"``, ``"scanvi"``; the last two need ``pip install 'sctransformer-tools[bench]'``).
    masks
        scTransformer's masks, among ``"grn"``, ``"dense"``, ``"random"`` and ``"shuffled"``.
    modes
        How scTransformer learns (:data:`MODES`): ``"labelled"`` (the training cells), ``"unlabelled"`` (the test
        cells join the reference as unlabelled cells, labels unread) and ``"mapping"`` (trained on the training
        cells, then mapped onto the test cells with :meth:`~sctransformer_tools.SCTransformer.load_query_data`).
    seeds
        Seeds of the models (and of the split, for a test share).
    regulons
        ``"collectri"``, ``"dorothea_ABC"`` (DoRothEA at the levels after the underscore), a file or DataFrame of
        regulons, or a mapping name -> any of these: every mask is trained on every set.
    model_kwargs
        :class:`~sctransformer_tools.SCTransformer` arguments (``d_model``, ``n_layers``, ...).
    train_kwargs
        :meth:`~sctransformer_tools.SCTransformer.train` arguments (``max_epochs``, ...); the progress bar is off
        unless ``enable_progress_bar=True``.
    peer_kwargs
        Per peer, keyword arguments of its adaptor (e.g. ``{"scanvi": {"scvi_epochs": 100}}``).
    mapping_kwargs
        Arguments of the query model's ``train()`` in ``"mapping"`` mode.
    metrics
        Names in :data:`~sctransformer_tools.bm.METRICS` (see :func:`~sctransformer_tools.bm.register_metric`).
    layer
        Layer of counts (``None``: ``X``).
    library_size_key
        ``obs`` column of per-cell totals over all genes (default: scTransformer looks for a usual column such
        as ``n_counts``; the peers use row sums).
    callback
        Called as ``callback(row, fitted, train, test)`` after each run, with the fitted
        :class:`~sctransformer_tools.SCTransformer` (or the peer's fitted object) and the run's training and test
        cells (test labels included): keys it adds to ``row`` become columns of the result.
    monitor
        Called once per run; the context manager it returns is entered around the training only (e.g. to
        measure memory), for ``callback`` to read.

    Returns
    -------
    One row per method x mask x regulon set x mode x seed: ``method``, ``mask``, ``regulons`` and ``mode``
    (``None`` for peers), ``seed``, the ``metrics``, ``recall`` (per true cell type), ``train_s`` (building and
    training; with ``"mapping"`` the mapping too, also in ``map_s``), ``predict_s``, ``n_train``, ``n_test``,
    ``n_test_scored``, ``n_test_excluded``, then what ``callback`` added.

    Examples
    --------
    >>> import sctransformer_tools as sct
    >>> adata = sct.ds.pbmc68k_reduced()
    >>> results = sct.bm.run(
    ...     adata,
    ...     "bulk_labels",
    ...     split=0.2,
    ...     masks=["grn", "random"],
    ...     seeds=[0, 1],
    ...     model_kwargs={"n_layers": 1, "d_model": 16, "n_heads": 2, "n_top_genes": 0},
    ...     train_kwargs={"max_epochs": 1},
    ...     peer_kwargs={"logistic_regression": {"n_top_genes": 300}},
    ... )
    >>> results[["method", "mask", "regulons", "seed", "n_test_scored"]]
                   method    mask   regulons  seed  n_test_scored
    0       sctransformer     grn  collectri     0            142
    1       sctransformer  random  collectri     0            142
    2  logistic_regression    None       None     0            142
    3       sctransformer     grn  collectri     1            142
    4       sctransformer  random  collectri     1            142
    5  logistic_regression    None       None     1            142
    >>> bool(results["macro_f1"].between(0, 1).all() and (results["train_s"] > 0).all())
    True
    >>> sct.bm.compare(results, "accuracy")[["reference", "comparator", "n_pairs"]]
      reference           comparator  n_pairs
    0       grn               random        2
    1       grn  logistic_regression        2
    """
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ValueError(f"Unknown methods {sorted(unknown)}: choose from {METHODS}.")
    bad = set(masks) - set(MASKS)
    if bad:
        raise ValueError(f"Unknown masks {sorted(bad)}: choose from {MASKS}.")
    bad = set(modes) - set(MODES)
    if bad:
        raise ValueError(f"Unknown modes {sorted(bad)}: choose from {MODES}.")
    missing = [m for m in metrics if m not in METRICS]
    if missing:
        raise ValueError(f"Unknown metrics {missing}: choose from {list(METRICS)} or register_metric() them.")
    regulon_sets = _regulon_sets(regulons) if "sctransformer" in methods else {}
    options = {
        "model_kwargs": dict(model_kwargs or {}),
        "train_kwargs": {"enable_progress_bar": False, **(train_kwargs or {})},
        "peer_kwargs": {k: dict(v) for k, v in (peer_kwargs or {}).items()},
        "mapping_kwargs": dict(mapping_kwargs or {}),
    }
    runs: list[tuple[str, str | None, str | None, str | None]] = []
    if "sctransformer" in methods:
        runs += [
            ("sctransformer", mask, reg, mode)
            for mode in dict.fromkeys(modes)
            for reg in regulon_sets
            for mask in dict.fromkeys(masks)
        ]
    runs += [(m, None, None, None) for m in dict.fromkeys(methods) if m != "sctransformer"]

    rows = []
    per_seed = isinstance(split, float | int) and not isinstance(split, bool)  # a test share: drawn per seed
    fixed = None if per_seed else _splits(adata, labels_key, split, 0)
    for seed in seeds:
        train, test = _splits(adata, labels_key, split, int(seed)) if per_seed else fixed
        for key, part in (("train", train), ("test", test)):
            if labels_key not in part.obs:
                raise KeyError(f"The {key} cells have no obs column {labels_key!r}.")
        train_labels = train.obs[labels_key].dropna().astype(str).to_numpy()
        truth_all = test.obs[labels_key].astype(str).to_numpy()
        scored = test.obs[labels_key].notna().to_numpy() & np.isin(truth_all, np.unique(train_labels))
        if not scored.any():
            raise ValueError("No test cell has a label that occurs in the training set: nothing to score.")
        query = _shell(test, layer, drop=labels_key)  # the truth stays out of the methods' reach
        counts = {
            "n_train": int(train.n_obs),
            "n_test": int(test.n_obs),
            "n_test_scored": int(scored.sum()),
            "n_test_excluded": int((~scored).sum()),
        }
        for method, mask, reg, mode in runs:
            logger.info("run %s %s %s %s seed %d", method, mask or "", reg or "", mode or "", seed)
            context = monitor() if monitor is not None else contextlib.nullcontext()
            options["mask"], options["setup"], options["mode"] = mask, regulon_sets.get(reg), mode
            start = time.perf_counter()
            with context:
                fitted = _fit(method, train, labels_key, int(seed), layer, library_size_key, options, query)
            train_s = time.perf_counter() - start
            map_s = None
            if mode == "mapping":
                start = time.perf_counter()
                fitted = fitted.load_query_data(query, fitted, layer=layer, library_size_key=library_size_key)
                fitted.train(**{"enable_progress_bar": False, **options["mapping_kwargs"]})
                map_s = time.perf_counter() - start
                train_s += map_s
            start = time.perf_counter()
            if method == "sctransformer":
                pred = fitted.predict(query, inplace=False, layer=layer, library_size_key=library_size_key)
            else:
                pred = fitted.predict(query)
            pred = np.asarray(pred, dtype=str)
            predict_s = time.perf_counter() - start
            row = {"method": method, "mask": mask, "regulons": reg, "mode": mode, "seed": int(seed)}
            row |= score(truth_all[scored], pred[scored], train_labels, metrics)
            row["recall"] = _recall(truth_all[scored], pred[scored])
            row |= {"train_s": train_s, "map_s": map_s, "predict_s": predict_s} | counts
            if callback is not None:
                callback(row, fitted, train, test)
            rows.append(row)
    return pd.DataFrame(rows)
