"""The peers scTransformer is compared with, trained and applied on exactly the same split.

- ``logistic_regression``: scikit-learn multinomial logistic regression on the training set's 2,000 most
  variable genes (scanpy ``seurat_v3`` on counts), log-normalised (``log1p(counts / library * 1e4)``)
  and standardised; genes a test set lacks take their training mean.
- ``celltypist``: :func:`celltypist.train` on every gene, log-normalised the same way (CellTypist's own
  scaling and logistic regression), applied with :func:`celltypist.annotate` (best match, no majority
  voting). Trained locally: no model is downloaded. CellTypist 1.7 asks scikit-learn for
  ``LogisticRegression(multi_class="ovr")``, which scikit-learn 1.8 removed; where it is missing the same
  one-vs-rest fit (one binary logistic regression per type) is supplied in its place.
- ``scanvi``: scVI pre-trained on the training cells' counts (same HVGs), then
  :meth:`scvi.model.SCANVI.from_scvi_model` with the labels. The test cells are *not* seen in training:
  they are aligned to the reference genes (:meth:`~scvi.model.SCANVI.prepare_query_anndata`, zero-filling
  missing genes) and classified and embedded by the reference model directly (no scArches surgery; no batch
  covariate is used by any method).
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from ._metrics import _bench_import
from ._resources import ResourceMonitor

logger = logging.getLogger(__name__)

#: Peers :func:`~sctransformer_tools.bm.evaluate` knows.
PEERS = ("logistic_regression", "celltypist", "scanvi")


@dataclass
class PeerResult:
    """Predictions of a peer on the test cells and what it cost.

    Attributes
    ----------
    predictions
        Predicted label of every test cell.
    embedding
        Test-cell embedding the method learns (scANVI latent), or ``None``.
    train_s
        Wall time of training, seconds.
    peak_mb, peak_delta_mb
        Peak RSS of the process while training, and its rise above the RSS at the start (MB).
    predict_s
        Wall time of predicting the test cells.
    info
        Extra numbers (genes used, epochs ...), copied into the record.
    """

    predictions: np.ndarray
    embedding: np.ndarray | None
    train_s: float
    peak_mb: float | None
    peak_delta_mb: float | None
    predict_s: float
    info: dict = field(default_factory=dict)


def _counts(adata: AnnData, layer: str | None):
    matrix = adata.X if layer is None else adata.layers[layer]
    return sparse.csr_matrix(matrix, dtype=np.float32)


def log_normalize(
    adata: AnnData, *, layer: str | None = None, library_size_key: str | None = None
) -> sparse.csr_matrix:
    """``log1p(counts / library_size * 1e4)`` as a CSR matrix (the input the linear peers read).

    Parameters
    ----------
    adata
        Cells x genes with counts in ``X`` or ``layer``.
    layer
        Layer of counts.
    library_size_key
        ``obs`` column of library sizes (totals over all genes); row sums when ``None``.

    Returns
    -------
    Log-normalised CSR matrix (float32).

    Examples
    --------
    >>> import numpy as np
    >>> from anndata import AnnData
    >>> from sctransformer_tools.bm import log_normalize
    >>> x = log_normalize(AnnData(np.array([[1.0, 3.0], [0.0, 2.0]])))
    >>> np.round(np.expm1(x.toarray()).sum(1)).tolist()
    [10000.0, 10000.0]
    """
    counts = _counts(adata, layer)
    if library_size_key is None:
        library = np.asarray(counts.sum(1)).ravel()
    else:
        library = adata.obs[library_size_key].to_numpy(dtype=np.float64)
    scale = np.divide(1e4, library, out=np.zeros_like(library, dtype=np.float64), where=library > 0)
    out = sparse.diags(scale.astype(np.float32)) @ counts
    out = sparse.csr_matrix(out, dtype=np.float32)
    out.data = np.log1p(out.data)
    return out


def highly_variable_genes(adata: AnnData, n_top_genes: int = 2000, *, layer: str | None = None) -> pd.Index:
    """The ``n_top_genes`` most variable genes of ``adata``'s counts (scanpy ``seurat_v3``; all genes if fewer).

    Parameters
    ----------
    adata
        Training cells with counts.
    n_top_genes
        Number of genes.
    layer
        Layer of counts.

    Returns
    -------
    Gene names, in ``var`` order.
    """
    import anndata as ad
    import scanpy as sc

    if adata.n_vars <= n_top_genes:
        return pd.Index(adata.var_names)
    tmp = ad.AnnData(X=_counts(adata, layer), var=pd.DataFrame(index=adata.var_names))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            sc.pp.highly_variable_genes(tmp, n_top_genes=n_top_genes, flavor="seurat_v3")
        except ValueError:  # loess can fail on tiny data: fall back to dispersion on log-normalised values
            tmp.X = log_normalize(tmp)
            sc.pp.highly_variable_genes(tmp, n_top_genes=n_top_genes)
    return pd.Index(tmp.var_names[tmp.var["highly_variable"].to_numpy()])


def align_genes(adata: AnnData, genes: pd.Index) -> AnnData:
    """``adata`` restricted and reordered to ``genes``; genes it lacks are zero-filled (obs kept).

    Parameters
    ----------
    adata
        Cells x genes.
    genes
        Wanted genes.

    Returns
    -------
    A new AnnData with ``var_names == genes``.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from anndata import AnnData
    >>> from sctransformer_tools.bm import align_genes
    >>> a = AnnData(np.ones((2, 2), dtype=np.float32), var=pd.DataFrame(index=["x", "y"]))
    >>> align_genes(a, pd.Index(["y", "z"])).X.toarray().tolist()
    [[1.0, 0.0], [1.0, 0.0]]
    """
    genes = pd.Index(genes, dtype=str)
    pos = adata.var_names.get_indexer(genes)
    found = np.flatnonzero(pos >= 0)
    # a (genes_in_adata x wanted) selection matrix: one product reorders, subsets and zero-fills
    select = sparse.csr_matrix(
        (np.ones(len(found), dtype=np.float32), (pos[found], found)), shape=(adata.n_vars, len(genes))
    )
    out = sparse.csr_matrix(sparse.csr_matrix(adata.X, dtype=np.float32) @ select)
    return AnnData(X=out, obs=adata.obs.copy(), var=pd.DataFrame(index=genes))


def pca_embedding(
    adata: AnnData, genes: pd.Index, *, library_size_key: str | None = None, n_comps: int = 50, seed: int = 0
):
    """PCA of the log-normalised ``genes`` of ``adata`` (scaled): the input space of the linear peers.

    Parameters
    ----------
    adata
        Cells (counts in ``X``).
    genes
        Genes to use (missing ones are zero-filled).
    library_size_key
        ``obs`` column of library sizes.
    n_comps
        Components (capped by the data's size).
    seed
        Seed of the solver.

    Returns
    -------
    ``(cells, n_comps)`` array.
    """
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    x = log_normalize(align_genes(adata, genes), library_size_key=library_size_key).toarray()
    x = StandardScaler().fit_transform(x)
    x = np.clip(np.nan_to_num(x), -10, 10)
    n = max(1, min(n_comps, x.shape[0] - 1, x.shape[1] - 1))
    return PCA(n_components=n, random_state=seed).fit_transform(x)


def logistic_regression(
    train: AnnData,
    test: AnnData,
    labels_key: str,
    *,
    library_size_key: str | None = None,
    n_top_genes: int = 2000,
    C: float = 1.0,
    max_iter: int = 1000,
    seed: int = 0,
) -> PeerResult:
    """Logistic regression on the training set's HVGs, log-normalised and standardised.

    Features the test set does not measure are set to their training mean (standardised value 0), so
    they add nothing to the decision, as CellTypist does by dropping their coefficients; zero-filling
    them instead would shift every test cell by ``-mean / sd`` on those features.

    Parameters
    ----------
    train, test
        Counts in ``X``; labels in ``train.obs[labels_key]``.
    labels_key
        Labels column.
    library_size_key
        ``obs`` column of library sizes in both.
    n_top_genes
        HVGs of ``train`` used as features.
    C, max_iter
        Of :class:`sklearn.linear_model.LogisticRegression`.
    seed
        ``random_state``.

    Returns
    -------
    :class:`PeerResult` (no embedding).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    with ResourceMonitor() as usage:
        genes = highly_variable_genes(train, n_top_genes)
        x = log_normalize(align_genes(train, genes), library_size_key=library_size_key).toarray()
        scaler = StandardScaler().fit(x)
        clf = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence warnings on tiny data
            clf.fit(scaler.transform(x), train.obs[labels_key].astype(str).to_numpy())
    missing = ~genes.isin(test.var_names)
    with ResourceMonitor() as timer:
        xt = scaler.transform(log_normalize(align_genes(test, genes), library_size_key=library_size_key).toarray())
        xt[:, missing] = 0.0  # genes the test set does not measure: the training mean, i.e. no contribution
        pred = clf.predict(xt)
    return PeerResult(
        np.asarray(pred, dtype=str),
        None,
        usage.seconds,
        usage.peak_mb,
        usage.peak_delta_mb,
        timer.seconds,
        {"n_features": len(genes), "test_genes_missing": int(missing.sum())},
    )


class _OneVsRestLogisticRegression:
    """``LogisticRegression(multi_class="ovr")`` as CellTypist builds it, for scikit-learn >= 1.8.

    scikit-learn 1.8 removed ``multi_class``; CellTypist 1.7 still passes it. One binary logistic
    regression per class (one for two classes), exactly what the removed option fitted, exposing the
    attributes CellTypist reads and edits (``coef_``, ``intercept_``, ``classes_``, ``n_features_in_``,
    ``decision_function``).
    """

    def __init__(self, multi_class: str = "ovr", n_jobs: int | None = None, **kwargs):
        self.kwargs = kwargs

    def fit(self, x, y) -> _OneVsRestLogisticRegression:
        from sklearn.linear_model import LogisticRegression

        y = np.asarray(y)
        self.classes_ = np.unique(y)
        positives = self.classes_[1:] if len(self.classes_) == 2 else self.classes_
        fits = [LogisticRegression(**self.kwargs).fit(x, y == c) for c in positives]
        self.coef_ = np.vstack([f.coef_ for f in fits])
        self.intercept_ = np.concatenate([f.intercept_ for f in fits])
        self.n_features_in_ = x.shape[1]
        return self

    def decision_function(self, x) -> np.ndarray:
        scores = np.asarray(x @ self.coef_.T) + self.intercept_
        return scores.ravel() if len(self.classes_) == 2 else scores

    def predict(self, x) -> np.ndarray:
        scores = self.decision_function(x)
        if scores.ndim == 1:
            return self.classes_[(scores > 0).astype(int)]
        return self.classes_[scores.argmax(1)]


@contextmanager
def _celltypist_compat():
    """Let CellTypist 1.7 train with scikit-learn >= 1.8 (see :class:`_OneVsRestLogisticRegression`)."""
    import inspect
    import sys

    from sklearn.linear_model import LogisticRegression

    module = sys.modules.get("celltypist.train")
    if module is None or "multi_class" in inspect.signature(LogisticRegression).parameters:
        yield
        return
    original = module.LogisticRegression
    module.LogisticRegression = _OneVsRestLogisticRegression
    try:
        yield
    finally:
        module.LogisticRegression = original


def celltypist_peer(
    train: AnnData,
    test: AnnData,
    labels_key: str,
    *,
    library_size_key: str | None = None,
    n_jobs: int = 1,
    seed: int = 0,
    **train_kwargs,
) -> PeerResult:
    """CellTypist trained locally on every gene of ``train`` and applied to ``test`` (best match).

    Parameters
    ----------
    train, test
        Counts in ``X``; labels in ``train.obs[labels_key]``.
    labels_key
        Labels column.
    library_size_key
        ``obs`` column of library sizes in both (CellTypist wants log1p of counts per 10,000).
    n_jobs
        Threads of CellTypist's solver.
    seed
        Seed of numpy before training.
    **train_kwargs
        Passed to :func:`celltypist.train`.

    Returns
    -------
    :class:`PeerResult` (no embedding).
    """
    celltypist = _bench_import("celltypist")
    np.random.seed(seed)  # noqa: NPY002 - CellTypist draws from numpy's global generator
    genes = pd.Index(train.var_names)
    with ResourceMonitor() as usage:
        x = log_normalize(train, library_size_key=library_size_key)
        with _celltypist_compat():
            model = celltypist.train(
                x,
                labels=train.obs[labels_key].astype(str).to_numpy(),
                genes=genes.to_numpy(),
                check_expression=False,
                n_jobs=n_jobs,
                **train_kwargs,
            )
    with ResourceMonitor() as timer:
        query = AnnData(
            X=log_normalize(test, library_size_key=library_size_key),
            obs=pd.DataFrame(index=test.obs_names),
            var=pd.DataFrame(index=test.var_names),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = celltypist.annotate(query, model=model, majority_voting=False)
        pred = result.predicted_labels["predicted_labels"].astype(str).to_numpy()
    return PeerResult(
        pred,
        None,
        usage.seconds,
        usage.peak_mb,
        usage.peak_delta_mb,
        timer.seconds,
        {"n_features": int(len(model.features)), "test_genes_shared": int(genes.isin(test.var_names).sum())},
    )


def scanvi_peer(
    train: AnnData,
    test: AnnData,
    labels_key: str,
    *,
    n_top_genes: int = 2000,
    scvi_epochs: int | None = None,
    scanvi_epochs: int | None = None,
    n_latent: int = 10,
    seed: int = 0,
    accelerator: str = "cpu",
) -> PeerResult:
    """Pre-train scVI, then scANVI, on the training cells; the test cells are classified and embedded by it.

    Parameters
    ----------
    train, test
        Counts in ``X``; labels in ``train.obs[labels_key]``.
    labels_key
        Labels column.
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

    Returns
    -------
    :class:`PeerResult` with the scANVI latent representation of the test cells.
    """
    import scvi

    unlabeled = "__unlabeled__"
    scvi.settings.seed = seed
    for name in ("scvi", "lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    quiet = {"enable_progress_bar": False, "accelerator": accelerator}
    with ResourceMonitor() as usage:
        genes = highly_variable_genes(train, n_top_genes)
        ref = align_genes(train, genes)
        ref.obs = pd.DataFrame({labels_key: train.obs[labels_key].astype(str).to_numpy()}, index=train.obs_names)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scvi.model.SCVI.setup_anndata(ref, labels_key=labels_key)
            vae = scvi.model.SCVI(ref, n_latent=n_latent)
            vae.train(max_epochs=scvi_epochs, **quiet)
            model = scvi.model.SCANVI.from_scvi_model(vae, unlabeled_category=unlabeled, labels_key=labels_key)
            model.train(max_epochs=scanvi_epochs, **quiet)
    with ResourceMonitor() as timer:
        query = align_genes(test, genes)
        query.obs = pd.DataFrame({labels_key: unlabeled}, index=test.obs_names)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scvi.model.SCANVI.prepare_query_anndata(query, model)
            pred = model.predict(query)
            if isinstance(pred, tuple):
                pred = pred[0]
            latent = model.get_latent_representation(query)
    return PeerResult(
        np.asarray(pred, dtype=str),
        np.asarray(latent),
        usage.seconds,
        usage.peak_mb,
        usage.peak_delta_mb,
        timer.seconds,
        {
            "n_features": len(genes),
            "scvi_epochs": int(vae.history["elbo_train"].shape[0]) if "elbo_train" in vae.history else None,
            "scanvi_epochs": int(model.history["elbo_train"].shape[0]) if "elbo_train" in model.history else None,
            "test_genes_zero_filled": int((~genes.isin(test.var_names)).sum()),
        },
    )


#: Peer name -> function ``(train, test, labels_key, **kwargs) -> PeerResult``.
PEER_FUNCTIONS = {
    "logistic_regression": logistic_regression,
    "celltypist": celltypist_peer,
    "scanvi": scanvi_peer,
}
