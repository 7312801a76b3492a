"""The study's train/test splits of real data (files of ``../shared/data/scrna``): one definition per dataset, seeded."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

from sctransformer_tools.ds import PBMC68K_TO_PBMC3K

#: Environment variable naming the folder with the shared ``.h5ad`` files (default ``../shared/data/scrna``).
SCRNA_ENV = "SCTRANSFORMER_TOOLS_SCRNA"

#: ``obs`` columns every split carries in both train and test.
LABELS_KEY = "cell_type"
LIBRARY_KEY = "library_size"

#: Zheng et al. 2017 FACS-sorted populations (``pbmc68k_reduced.obs["bulk_labels"]``) -> pbmc3k (Seurat
#: tutorial) cell types, the package's single mapping (:data:`sctransformer_tools.ds.PBMC68K_TO_PBMC3K`):
#: monocytes, B, NK and dendritic cells map one to one (the 240 ``Dendritic`` cells of this reduced
#: dataset are mostly FCER1A+/CLEC10A+/HLA-DQA1+: cDC-like, so ``DC``); naive and memory CD4 T cells map
#: to their pbmc3k types; regulatory T cells (CD25+, CD45RO+ memory phenotype) have no pbmc3k type of their
#: own and go to ``Memory CD4 T``; both CD8 populations to ``CD8 T``. ``CD34+`` progenitors have no pbmc3k
#: counterpart (``None``): they are left out of the cross-study scores. pbmc3k's ``FCGR3A+ Mono`` and
#: ``Platelet`` have no sorted population, so predicting them for a pbmc68k cell counts as an error.
PBMC68K_LABEL_MAP: dict[str, str | None] = dict(PBMC68K_TO_PBMC3K)


@dataclass
class Split:
    """A train/test split of labelled cells, with raw counts and library sizes.

    Attributes
    ----------
    name
        Dataset name used in records.
    train, test
        Cells x genes, raw counts in ``X``; ``obs["cell_type"]`` labels, ``obs["library_size"]`` the
        per-cell total counts over *all* measured genes (what normalisation divides by).
    description
        How the split was made, in one sentence (goes into the report).
    info
        Numbers about the split (cells dropped, donors held out, ...), copied into every record.
    labels_key, library_size_key
        ``obs`` columns of the labels and library sizes.
    """

    name: str
    train: AnnData
    test: AnnData
    description: str
    info: dict = field(default_factory=dict)
    labels_key: str = LABELS_KEY
    library_size_key: str = LIBRARY_KEY


def scrna_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Folder of the shared ``.h5ad`` files: ``data_dir``, ``$SCTRANSFORMER_TOOLS_SCRNA`` or ``../shared/data/scrna``.

    Parameters
    ----------
    data_dir
        Explicit folder.

    Returns
    -------
    The folder (not checked).

    Examples
    --------
    >>> from harness.datasets import scrna_dir
    >>> scrna_dir("/data/scrna").name
    'scrna'
    """
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(SCRNA_ENV)
    return Path(env).expanduser() if env else Path("..") / "shared" / "data" / "scrna"


def _read(data_dir: str | os.PathLike | None, name: str) -> AnnData:
    import anndata as ad

    path = scrna_dir(data_dir) / name
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found. Point data_dir (or ${SCRNA_ENV}) at the folder holding the shared .h5ad files."
        )
    return ad.read_h5ad(path)


def _row_sums(adata: AnnData) -> np.ndarray:
    return np.asarray(adata.X.sum(axis=1)).ravel().astype(np.float64)


def stratified_subsample(
    labels: pd.Series | np.ndarray, n: int, *, min_per_class: int = 200, seed: int = 0
) -> np.ndarray:
    """Positions of about ``n`` cells, proportional per class but keeping up to ``min_per_class`` of each.

    Each class keeps ``max(round(share * n_class), min(n_class, min_per_class))`` cells, so rare types
    survive the subsampling whole (when smaller than ``min_per_class``).

    Parameters
    ----------
    labels
        Class of every cell.
    n
        Target number of cells (the result can exceed it by the rare-class floor).
    min_per_class
        Floor per class.
    seed
        Seed of the draw.

    Returns
    -------
    Sorted positions.

    Examples
    --------
    >>> import numpy as np
    >>> from harness.datasets import stratified_subsample
    >>> labels = np.array(["big"] * 1000 + ["rare"] * 10)
    >>> idx = stratified_subsample(labels, 100, min_per_class=20)
    >>> int((labels[idx] == "big").sum()), int((labels[idx] == "rare").sum())
    (99, 10)
    """
    labels = np.asarray(labels, dtype=str)
    if n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    share = n / len(labels)
    keep = []
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        k = min(len(idx), max(round(share * len(idx)), min(len(idx), min_per_class)))
        keep.append(rng.choice(idx, k, replace=False))
    return np.sort(np.concatenate(keep))


def pbmc3k(seed: int = 0, data_dir: str | os.PathLike | None = None) -> Split:
    """pbmc3k (Seurat tutorial labels): stratified 80/20 split with ``random_state=seed``.

    Parameters
    ----------
    seed
        ``random_state`` of :func:`sklearn.model_selection.train_test_split` (stratified on cell type).
    data_dir
        Folder of the shared ``.h5ad`` files.

    Returns
    -------
    The :class:`Split`.
    """
    from sklearn.model_selection import train_test_split

    adata = _read(data_dir, "pbmc3k_seurat_labels.h5ad")
    adata.obs[LIBRARY_KEY] = _row_sums(adata)
    train, test = train_test_split(
        np.arange(adata.n_obs), test_size=0.2, stratify=adata.obs[LABELS_KEY], random_state=seed
    )
    return Split(
        "pbmc3k",
        adata[np.sort(train)].copy(),
        adata[np.sort(test)].copy(),
        f"stratified 80/20 split of 2,638 PBMCs (train_test_split, stratify=cell_type, random_state={seed})",
        {"split_seed": seed},
    )


def darmanis2015(seed: int = 0, data_dir: str | os.PathLike | None = None, n_folds: int = 4) -> Split:
    """Darmanis 2015 brain: leave-donor-group-out; seed ``s`` holds out fold ``s mod n_folds``.

    ``obs["batch"]`` holds the 12 GEO samples (8 adult surgical donors ``AB_S*``, 4 fetal samples
    ``FB_S*``). :class:`sklearn.model_selection.StratifiedGroupKFold` (``n_folds``, shuffled with
    ``random_state=0``) groups cells by sample, so every held-out sample is unseen in training; with 4
    folds each test fold holds 3 samples (2 adult, 1 fetal). Test cells of a type absent from the
    training donors (OPCs come from one donor only) cannot be predicted and are left out of the scores
    by :func:`harness.study.evaluate` (counted in ``n_test_excluded``).

    Parameters
    ----------
    seed
        Selects the held-out fold.
    data_dir
        Folder of the shared ``.h5ad`` files.
    n_folds
        Number of donor groups.

    Returns
    -------
    The :class:`Split`.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    adata = _read(data_dir, "darmanis2015_brain.h5ad")
    adata.obs[LIBRARY_KEY] = _row_sums(adata)
    labels = adata.obs[LABELS_KEY].astype(str).to_numpy()
    groups = adata.obs["batch"].astype(str).to_numpy()
    folds = list(StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=0).split(labels, labels, groups))
    fold = seed % n_folds
    train, test = folds[fold]
    held_out = sorted(set(groups[test]))
    return Split(
        "darmanis2015",
        adata[train].copy(),
        adata[test].copy(),
        f"leave-donor-group-out: fold {fold} of StratifiedGroupKFold({n_folds}) over obs['batch'] "
        f"(held-out samples {', '.join(held_out)})",
        {"split_seed": seed, "fold": fold, "held_out_donors": held_out},
    )


def allen_m1(
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    train_donor: str = "H18.30.001",
    max_train_cells: int | None = 10_000,
    max_test_cells: int | None = 10_000,
) -> Split:
    """Allen human M1 snRNA-seq (141 marker genes): train on one donor, test on the other.

    Both donors are subsampled per cell type (:func:`stratified_subsample`, proportional, keeping up to
    200 nuclei of every type so the rare ones survive whole) to bound the run time; library sizes are the
    original totals over all genes (``obs["total_counts_all_genes"]``).

    Parameters
    ----------
    seed
        Seed of the subsampling (the donors are fixed).
    data_dir
        Folder of the shared ``.h5ad`` files.
    train_donor
        Donor (``obs["batch"]``) to train on; the other is the test set.
    max_train_cells, max_test_cells
        Approximate caps (``None``: every nucleus).

    Returns
    -------
    The :class:`Split`.
    """
    adata = _read(data_dir, "allen_m1_snrna_140genes.h5ad")
    adata.obs[LIBRARY_KEY] = adata.obs["total_counts_all_genes"].astype(np.float64).to_numpy()
    donors = adata.obs["batch"].astype(str)
    if train_donor not in set(donors):
        raise ValueError(f"train_donor {train_donor!r} not in obs['batch'] ({sorted(set(donors))}).")
    train = np.flatnonzero(donors == train_donor)
    test = np.flatnonzero(donors != train_donor)
    n_train_all, n_test_all = len(train), len(test)
    labels = adata.obs[LABELS_KEY].astype(str).to_numpy()
    if max_train_cells is not None:
        train = train[stratified_subsample(labels[train], max_train_cells, seed=seed)]
    if max_test_cells is not None:
        test = test[stratified_subsample(labels[test], max_test_cells, seed=seed + 1)]
    test_donor = sorted(set(donors.iloc[test]))
    return Split(
        "allen_m1",
        adata[train].copy(),
        adata[test].copy(),
        f"train donor {train_donor} ({len(train):,} of {n_train_all:,} nuclei), test donor "
        f"{', '.join(test_donor)} ({len(test):,} of {n_test_all:,}); subsampled per cell type, seed {seed}",
        {"split_seed": seed, "train_donor": train_donor, "n_train_all": n_train_all, "n_test_all": n_test_all},
    )


def pbmc3k_to_pbmc68k(seed: int = 0, data_dir: str | os.PathLike | None = None, shared_genes: bool = True) -> Split:
    """Cross-study transfer: train on all of pbmc3k, test on scanpy's ``pbmc68k_reduced`` (mapped labels).

    The query's counts are rebuilt from its log-normalised ``.raw`` by
    :func:`sctransformer_tools.ds.pbmc68k_reduced` (``round(expm1(raw) * n_counts / 1e4)``; 765 genes;
    ``n_counts`` is the total over all genes, used as library size). Labels are mapped with
    :data:`PBMC68K_LABEL_MAP`; cells whose population has no pbmc3k counterpart are dropped.

    By default both sides keep only the genes measured in both studies (763), as a reference is usually
    built for a query from another study: otherwise ~90% of a reference model's panel would be missing
    from every query cell. pbmc3k library sizes stay the totals over all of its genes, so that
    normalisation means the same thing on both sides.

    Parameters
    ----------
    seed
        Unused by the split (the same for every seed); kept for a uniform signature.
    data_dir
        Folder of the shared ``.h5ad`` files.
    shared_genes
        Restrict both sides to the shared genes (``False``: pbmc3k keeps all of its genes and the query's
        missing genes are zero-filled when a method aligns it).

    Returns
    -------
    The :class:`Split`.
    """
    from sctransformer_tools.ds import pbmc68k_reduced

    train = _read(data_dir, "pbmc3k_seurat_labels.h5ad")
    train.obs[LIBRARY_KEY] = _row_sums(train)
    query = pbmc68k_reduced()
    mapped = query.obs["bulk_labels"].astype(str).map(map_pbmc68k_labels)
    keep = mapped.notna().to_numpy()
    test = query[keep].copy()
    test.obs[LABELS_KEY] = pd.Categorical(mapped[keep].to_numpy())
    test.obs[LIBRARY_KEY] = test.obs["n_counts"].astype(np.float64).to_numpy()
    shared = test.var_names.intersection(train.var_names, sort=False)
    n_train_genes = train.n_vars
    if shared_genes:
        train, test = train[:, shared].copy(), test[:, shared].copy()
    dropped = query.obs["bulk_labels"].astype(str)[~keep].value_counts().to_dict()
    return Split(
        "pbmc3k_to_pbmc68k",
        train,
        test,
        f"train on all 2,638 pbmc3k cells, test on the {int(keep.sum())} of 700 pbmc68k_reduced cells whose "
        f"population maps to a pbmc3k type ({len(shared)} of its {query.n_vars} genes are measured in pbmc3k"
        + (f"; both sides restricted to them, of pbmc3k's {n_train_genes:,})" if shared_genes else ")"),
        {
            "split_seed": None,
            "query_genes": int(query.n_vars),
            "query_genes_in_reference": len(shared),
            "shared_genes_only": shared_genes,
            "test_dropped_unmapped": {k: int(v) for k, v in dropped.items()},
        },
    )


def map_pbmc68k_labels(label: str) -> str | None:
    """pbmc3k cell type of a ``pbmc68k_reduced`` ``bulk_labels`` population (``None``: not mapped).

    Parameters
    ----------
    label
        A ``bulk_labels`` value.

    Returns
    -------
    The pbmc3k type, or ``None`` (also for labels not in :data:`PBMC68K_LABEL_MAP`).

    Examples
    --------
    >>> from harness.datasets import map_pbmc68k_labels
    >>> map_pbmc68k_labels("CD14+ Monocyte"), map_pbmc68k_labels("CD34+")
    ('CD14+ Mono', None)
    """
    return PBMC68K_LABEL_MAP.get(str(label))


#: Dataset name -> split loader ``(seed, data_dir) -> Split``.
DATASETS: dict[str, Callable[..., Split]] = {
    "pbmc3k": pbmc3k,
    "darmanis2015": darmanis2015,
    "allen_m1": allen_m1,
    "pbmc3k_to_pbmc68k": pbmc3k_to_pbmc68k,
}


def load_split(name: str, seed: int = 0, data_dir: str | os.PathLike | None = None, **kwargs) -> Split:
    """Load one of :data:`DATASETS` for ``seed``.

    Parameters
    ----------
    name
        ``"pbmc3k"``, ``"darmanis2015"``, ``"allen_m1"`` or ``"pbmc3k_to_pbmc68k"``.
    seed
        Seed of the split (see each loader).
    data_dir
        Folder of the shared ``.h5ad`` files (see :func:`scrna_dir`).
    **kwargs
        Passed to the loader (e.g. ``max_train_cells`` for ``"allen_m1"``).

    Returns
    -------
    The :class:`Split`.

    Examples
    --------
    >>> from harness.datasets import load_split
    >>> split = load_split("pbmc3k", seed=0)
    >>> split.train.n_obs, split.test.n_obs
    (2110, 528)
    """
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}: choose one of {list(DATASETS)}.")
    return DATASETS[name](seed=seed, data_dir=data_dir, **kwargs)
