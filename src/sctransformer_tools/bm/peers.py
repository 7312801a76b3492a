"""The annotation methods scTransformer is compared with, trained on the training cells only.

Each adaptor ``peer(train, labels_key, *, layer=None, seed=0, ...)`` returns a fitted peer whose
``predict(adata)`` labels new cells (aligned to the training genes on the fly: genes a dataset lacks are read as
zeros) and whose ``info`` holds numbers about the fit. Normalisation, highly variable genes and gene alignment are
the package's own (:mod:`sctransformer_tools._data`), as scTransformer reads them.

- ``logistic_regression``: scikit-learn multinomial logistic regression on the training cells' 2,000 most
  variable genes (scanpy ``seurat_v3`` on counts), log-normalised (``log1p(counts / library size * 1e4)``) and
  standardised; a gene the query lacks takes its training mean (no contribution).
- ``celltypist``: :func:`celltypist.train` on every gene, log-normalised the same way, applied with
  :func:`celltypist.annotate` (best match, no majority voting). Trained locally: nothing is downloaded.
- ``celltypist_majority``: the same model, applied with CellTypist's majority voting over its own
  over-clustering of the query (``majority_voting=True``).
- ``scanvi``: scVI pre-trained on the training cells' counts of the same HVGs, then
  :meth:`scvi.model.SCANVI.from_scvi_model` with the labels; query cells are classified and embedded
  (``embed``) by that reference model (no query training).
- ``scanvi_surgery``: scVI and scANVI built as scvi-tools' scArches tutorial builds a reference for surgery
  (:data:`SCARCHES_SCVI`: the batch also enters the encoder, layer norm instead of batch norm; the reference's
  cells one batch), mapped onto each query by scArches surgery (:meth:`scvi.model.SCANVI.load_query_data`: the
  query a new batch, only its batch parameters trained on the query's cells, ``weight_decay=0`` as in the
  tutorial), which then classifies it. With scVI's defaults the encoder does not read the batch, so surgery
  would change no query cell's latent coordinates and no call.
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from anndata import AnnData

from sctransformer_tools._data import (
    align_genes,
    highly_variable_genes,
    keep_torch_threads,
    library_sizes,
    log_normalised,
)


def _optional(name: str):
    """Import an optional dependency, with an install hint."""
    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise ImportError(f"{name} is needed for this peer: `pip install 'sctransformer-tools[bench]'`.") from err


def _log_normalised(adata: AnnData, genes: pd.Index | None, layer: str | None, library_size_key: str | None):
    """``log1p(counts / library * 1e4)`` of ``adata`` on ``genes`` (all genes when ``None``), as a CSR matrix.

    Library sizes are ``obs[library_size_key]`` or the row sums over all of ``adata``'s genes.
    """
    if genes is None:
        return log_normalised(adata, layer, library_size_key=library_size_key).X
    aligned = align_genes(adata, genes, layer=layer)
    aligned.obs = pd.DataFrame({"library": library_sizes(adata, layer, library_size_key)}, index=adata.obs_names)
    return log_normalised(aligned, library_size_key="library").X


@dataclass
class LogisticRegressionPeer:
    """A fitted :func:`logistic_regression`: ``predict(adata)`` -> labels."""

    genes: pd.Index
    scaler: object
    classifier: object
    layer: str | None = None
    library_size_key: str | None = None
    info: dict = field(default_factory=dict)

    def predict(self, adata: AnnData) -> np.ndarray:
        """Predicted cell type of every cell of ``adata`` (genes it lacks take their training mean)."""
        x = self.scaler.transform(_log_normalised(adata, self.genes, self.layer, self.library_size_key).toarray())
        x[:, ~self.genes.isin(adata.var_names)] = 0.0  # the training mean: no contribution to the decision
        return np.asarray(self.classifier.predict(x), dtype=str)


def logistic_regression(
    train: AnnData,
    labels_key: str,
    *,
    layer: str | None = None,
    library_size_key: str | None = None,
    n_top_genes: int = 2000,
    C: float = 1.0,
    max_iter: int = 1000,
    seed: int = 0,
) -> LogisticRegressionPeer:
    """Logistic regression on the training cells' HVGs, log-normalised and standardised.

    Features a query does not measure are set to their training mean (standardised value 0), so they add
    nothing to the decision, as CellTypist does by dropping their coefficients; zero-filling them instead would
    shift every query cell by ``-mean / sd`` on those features.

    Parameters
    ----------
    train
        Training cells, counts in ``X`` or ``layer``, labels in ``obs[labels_key]``.
    labels_key
        Labels column.
    layer
        Layer of counts (``None``: ``X``), in the training and query data.
    library_size_key
        ``obs`` column of library sizes (totals over all genes) in the training and query data; row sums when
        ``None``.
    n_top_genes
        HVGs of ``train`` used as features.
    C, max_iter
        Of :class:`sklearn.linear_model.LogisticRegression`.
    seed
        ``random_state``.

    Returns
    -------
    The fitted peer (``info``: ``n_features``).

    Examples
    --------
    >>> import sctransformer_tools as sct
    >>> adata = sct.ds.pbmc68k_reduced()
    >>> fitted = sct.bm.peers.logistic_regression(adata[:500], "bulk_labels", n_top_genes=300)
    >>> pred = fitted.predict(adata[500:])
    >>> len(pred), fitted.info, bool((pred == adata.obs["bulk_labels"][500:]).mean() > 0.5)
    (200, {'n_features': 300}, True)
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    genes = highly_variable_genes(train, n_top_genes, layer=layer)
    x = _log_normalised(train, genes, layer, library_size_key).toarray()
    scaler = StandardScaler().fit(x)
    clf = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ConvergenceWarning)  # on tiny data
        clf.fit(scaler.transform(x), train.obs[labels_key].astype(str).to_numpy())
    return LogisticRegressionPeer(genes, scaler, clf, layer, library_size_key, {"n_features": len(genes)})


@dataclass
class CellTypistPeer:
    """A fitted :func:`celltypist`: ``predict(adata)`` -> labels (CellTypist's best match)."""

    model: object
    genes: pd.Index
    layer: str | None = None
    library_size_key: str | None = None
    info: dict = field(default_factory=dict)
    majority_voting: bool = False

    def predict(self, adata: AnnData) -> np.ndarray:
        """Predicted cell type of every cell of ``adata`` (CellTypist drops the genes it lacks); with
        ``majority_voting``, the majority call of the cell's cluster in CellTypist's over-clustering.
        """
        ct = _optional("celltypist")
        query = AnnData(
            X=_log_normalised(adata, None, self.layer, self.library_size_key),
            obs=pd.DataFrame(index=adata.obs_names),
            var=pd.DataFrame(index=adata.var_names),
        )
        if self.majority_voting:
            _celltypist_neighbour_graph(query)
        result = ct.annotate(query, model=self.model, majority_voting=self.majority_voting)
        column = "majority_voting" if self.majority_voting else "predicted_labels"
        return result.predicted_labels[column].astype(str).to_numpy()


def _celltypist_neighbour_graph(query: AnnData) -> None:
    """The neighbour graph CellTypist's over-clustering builds (``Classifier._construct_neighbor_graph``: highly
    variable genes, scaling, 50 PCs, 10 neighbours), with exact neighbours, into ``query``.

    CellTypist leaves the method to scanpy, which above 4,096 cells picks pynndescent; scanpy 1.11 then fails on
    scipy >= 1.15 (``'csr_array' object has no attribute 'getnnz'``). Below 4,096 cells scanpy's neighbours are
    exact anyway, so the graph is the one CellTypist would build. torch keeps its thread count (numba's OpenMP
    layer, which scanpy's steps use, would change it).
    """
    import scanpy as sc

    data = query.copy()
    with keep_torch_threads():
        sc.pp.filter_genes(data, min_cells=5)
        sc.pp.highly_variable_genes(data, n_top_genes=min(2500, data.n_vars))
        data = data[:, data.var["highly_variable"]].copy()
        sc.pp.scale(data, max_value=10)
        sc.pp.pca(data, n_comps=min(50, data.n_obs - 1, data.n_vars - 1))
        sc.pp.neighbors(data, n_neighbors=10, transformer="sklearn")
    query.obsm["X_pca"] = data.obsm["X_pca"]
    query.obsp["connectivities"], query.obsp["distances"] = data.obsp["connectivities"], data.obsp["distances"]
    query.uns["neighbors"] = data.uns["neighbors"]


#: What CellTypist raises when scikit-learn lacks ``LogisticRegression(multi_class=...)`` (removed in 1.8).
_MULTI_CLASS = "multi_class"


def celltypist(
    train: AnnData,
    labels_key: str,
    *,
    layer: str | None = None,
    library_size_key: str | None = None,
    n_jobs: int = 1,
    seed: int = 0,
    **train_kwargs,
) -> CellTypistPeer:
    """CellTypist trained locally on every gene of ``train`` (log1p of counts per 10,000, as it expects).

    Parameters
    ----------
    train
        Training cells, counts in ``X`` or ``layer``, labels in ``obs[labels_key]``.
    labels_key
        Labels column.
    layer
        Layer of counts (``None``: ``X``), in the training and query data.
    library_size_key
        ``obs`` column of library sizes in the training and query data; row sums when ``None``.
    n_jobs
        Threads of CellTypist's solver.
    seed
        Seed of numpy's global generator before training (CellTypist draws from it).
    **train_kwargs
        Passed to :func:`celltypist.train` (e.g. ``max_iter``).

    Returns
    -------
    The fitted peer (``info``: ``n_features``).

    Raises
    ------
    RuntimeError
        CellTypist builds ``LogisticRegression(multi_class="ovr")``, which scikit-learn 1.8 removed: the
        message names both versions and the ways out.

    Examples
    --------
    >>> import sctransformer_tools as sct
    >>> adata = sct.ds.pbmc68k_reduced()
    >>> try:
    ...     fitted = sct.bm.peers.celltypist(adata[:500], "bulk_labels", max_iter=50)
    ...     ok = len(fitted.predict(adata[500:])) == 200
    ... except (ImportError, RuntimeError):  # CellTypist absent, or too old for this scikit-learn
    ...     ok = True
    >>> ok
    True
    """
    ct = _optional("celltypist")
    np.random.seed(seed)  # noqa: NPY002 - CellTypist draws from numpy's global generator
    genes = pd.Index(train.var_names)
    x = _log_normalised(train, None, layer, library_size_key)
    try:
        model = ct.train(
            x,
            labels=train.obs[labels_key].astype(str).to_numpy(),
            genes=genes.to_numpy(),
            check_expression=False,
            n_jobs=n_jobs,
            **train_kwargs,
        )
    except TypeError as err:
        if _MULTI_CLASS not in str(err):
            raise
        import sklearn

        raise RuntimeError(
            f"CellTypist {getattr(ct, '__version__', '?')} cannot train with scikit-learn {sklearn.__version__}: it "
            "builds LogisticRegression(multi_class='ovr'), an option scikit-learn 1.8 removed. Install "
            "'scikit-learn<1.8' next to it, a CellTypist release that no longer passes multi_class, or train with "
            "use_SGD=True (peer_kwargs={'celltypist': {'use_SGD': True}})."
        ) from err
    return CellTypistPeer(model, genes, layer, library_size_key, {"n_features": int(len(model.features))})


def celltypist_majority(train: AnnData, labels_key: str, **kwargs) -> CellTypistPeer:
    """:func:`celltypist`, applied with CellTypist's majority voting over its over-clustering of each query.

    Examples
    --------
    >>> import sctransformer_tools as sct
    >>> adata = sct.ds.pbmc68k_reduced()
    >>> try:
    ...     fitted = sct.bm.peers.celltypist_majority(adata[:500], "bulk_labels", max_iter=50)
    ...     ok = len(fitted.predict(adata[500:])) == 200
    ... except (ImportError, RuntimeError):  # CellTypist absent, or too old for this scikit-learn
    ...     ok = True
    >>> ok
    True
    """
    peer = celltypist(train, labels_key, **kwargs)
    peer.majority_voting = True
    return peer


#: scvi-tools' lines at the start of every training (the peer's ``info`` keeps the epochs) and on reading a query
#: (the peer aligns queries to its genes itself).
_SCVI_LINES = {
    "scvi.model.base._training_mixin": (r"^Training for \d+ epochs",),
    "scvi.model.base._archesmixin": (r"reference vars in query data\.$",),
}


@dataclass
class ScanviPeer:
    """A fitted :func:`scanvi`: ``predict(adata)`` -> labels, ``embed(adata)`` -> latent coordinates."""

    model: object
    genes: pd.Index
    labels_key: str
    layer: str | None = None
    info: dict = field(default_factory=dict)
    unlabeled: str = "__unlabeled__"
    surgery_epochs: int | None = None

    def _read(self, adata: AnnData, how: str) -> np.ndarray:
        from sctransformer_tools.model._quiet import _dropping, quiet_scvi, quiet_training

        query = align_genes(adata, self.genes, layer=self.layer)
        batch = "reference" if self.surgery_epochs is None else "query"  # surgery: the query is a batch of its own
        query.obs = pd.DataFrame({self.labels_key: self.unlabeled, BATCH: batch}, index=adata.obs_names)
        model = self.model
        with quiet_scvi(), _dropping(_SCVI_LINES):
            type(model).prepare_query_anndata(query, model)
            if self.surgery_epochs is not None:  # scArches: the query a new batch, its parameters trained on it
                with quiet_training():
                    model = type(model).load_query_data(query, model)
                    model.train(
                        max_epochs=self.surgery_epochs,
                        plan_kwargs={"weight_decay": 0.0},
                        enable_progress_bar=False,
                        accelerator="cpu",
                    )
            out = getattr(model, how)(query)
        return np.asarray(out[0] if isinstance(out, tuple) else out)

    def predict(self, adata: AnnData) -> np.ndarray:
        """Predicted cell type of every cell of ``adata`` (genes it lacks are zero-filled)."""
        return self._read(adata, "predict").astype(str)

    def embed(self, adata: AnnData) -> np.ndarray:
        """The scANVI latent representation (mean) of every cell of ``adata``."""
        return self._read(adata, "get_latent_representation")


def scanvi(
    train: AnnData,
    labels_key: str,
    *,
    layer: str | None = None,
    n_top_genes: int = 2000,
    scvi_epochs: int | None = None,
    scanvi_epochs: int | None = None,
    n_latent: int = 10,
    seed: int = 0,
    accelerator: str = "cpu",
    scvi_kwargs: dict | None = None,
) -> ScanviPeer:
    """Pre-train scVI, then scANVI, on the training cells' HVG counts.

    Parameters
    ----------
    train
        Training cells, counts in ``X`` or ``layer``, labels in ``obs[labels_key]``.
    labels_key
        Labels column.
    layer
        Layer of counts (``None``: ``X``), in the training and query data.
    n_top_genes
        HVGs of ``train`` modelled.
    scvi_epochs, scanvi_epochs
        Epochs (``None``: scvi-tools' defaults, which scale with the number of cells).
    n_latent
        Latent dimensions.
    seed
        ``scvi.settings.seed``.
    accelerator
        Lightning accelerator.
    scvi_kwargs
        Passed to :class:`scvi.model.SCVI` (architecture; :func:`scanvi_surgery` passes :data:`SCARCHES_SCVI`).

    Returns
    -------
    The fitted peer (``info``: ``n_features``, ``scvi_epochs``, ``scanvi_epochs``, ``scvi_kwargs``).

    Examples
    --------
    >>> import sctransformer_tools as sct
    >>> adata = sct.ds.pbmc68k_reduced()
    >>> fitted = sct.bm.peers.scanvi(adata[:500], "bulk_labels", n_top_genes=300, scvi_epochs=1, scanvi_epochs=1)
    >>> fitted.predict(adata[500:]).shape, fitted.embed(adata[500:]).shape, fitted.info["scanvi_epochs"]
    ((200,), (200, 10), 1)
    """
    import scvi

    from sctransformer_tools.model._quiet import _dropping, quiet_training

    unlabeled = "__unlabeled__"
    scvi.settings.seed = seed
    quiet = {"enable_progress_bar": False, "accelerator": accelerator}
    genes = highly_variable_genes(train, n_top_genes, layer=layer)
    ref = align_genes(train, genes, layer=layer)
    labels = train.obs[labels_key].astype(str).to_numpy()
    ref.obs = pd.DataFrame({labels_key: labels, BATCH: "reference"}, index=train.obs_names)
    with quiet_training(), _dropping(_SCVI_LINES):
        scvi.model.SCVI.setup_anndata(ref, labels_key=labels_key, batch_key=BATCH)
        vae = scvi.model.SCVI(ref, n_latent=n_latent, **(scvi_kwargs or {}))
        vae.train(max_epochs=scvi_epochs, **quiet)
        model = scvi.model.SCANVI.from_scvi_model(vae, unlabeled_category=unlabeled, labels_key=labels_key)
        model.train(max_epochs=scanvi_epochs, **quiet)

    def epochs(m) -> int | None:
        return int(m.history["elbo_train"].shape[0]) if "elbo_train" in m.history else None

    info = {"n_features": len(genes), "scvi_epochs": epochs(vae), "scanvi_epochs": epochs(model)}
    info["scvi_kwargs"] = dict(scvi_kwargs or {})
    return ScanviPeer(model, genes, labels_key, layer, info, unlabeled)


#: The batch column of the scANVI peers: the reference's cells are one batch, a query another.
BATCH = "_peer_batch"


#: The scVI architecture of scvi-tools' scArches tutorial for a reference that queries are mapped onto: the batch
#: enters the encoder too (``encode_covariates``), so a query's new batch parameters move its latent coordinates.
SCARCHES_SCVI = {
    "use_layer_norm": "both",
    "use_batch_norm": "none",
    "encode_covariates": True,
    "dropout_rate": 0.2,
    "n_layers": 2,
}


def scanvi_surgery(train: AnnData, labels_key: str, *, surgery_epochs: int = 100, **kwargs) -> ScanviPeer:
    """:func:`scanvi` with a surgery-ready reference (:data:`SCARCHES_SCVI`), mapped onto each query by scArches
    surgery before it classifies it.

    Parameters
    ----------
    train, labels_key
        As in :func:`scanvi`.
    surgery_epochs
        Epochs of query training (scvi-tools' scArches tutorial: 100).
    **kwargs
        Passed to :func:`scanvi` (``scvi_kwargs`` there overrides :data:`SCARCHES_SCVI`).

    Examples
    --------
    >>> import sctransformer_tools as sct
    >>> adata = sct.ds.pbmc68k_reduced()
    >>> fitted = sct.bm.peers.scanvi_surgery(
    ...     adata[:500], "bulk_labels", n_top_genes=300, scvi_epochs=1, scanvi_epochs=1, surgery_epochs=1
    ... )
    >>> fitted.predict(adata[500:]).shape
    (200,)
    """
    kwargs["scvi_kwargs"] = {**SCARCHES_SCVI, **(kwargs.get("scvi_kwargs") or {})}
    peer = scanvi(train, labels_key, **kwargs)
    peer.surgery_epochs = int(surgery_epochs)
    peer.info["surgery_epochs"] = int(surgery_epochs)
    return peer


#: Peer name -> adaptor ``(train, labels_key, *, layer, seed, ...) -> fitted peer``.
PEERS = {
    "logistic_regression": logistic_regression,
    "celltypist": celltypist,
    "celltypist_majority": celltypist_majority,
    "scanvi": scanvi,
    "scanvi_surgery": scanvi_surgery,
}
