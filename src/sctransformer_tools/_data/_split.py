"""Stratified splits of labelled cells: one per cell type, so that rare types appear on both sides."""

from __future__ import annotations

import numpy as np


def stratified_split(
    labels, train_size: float, seed: int = 0, *, n_labels: int | None = None, min_held_class: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Split cells per class into a training and a held-out share.

    Every class with at least ``min_held_class`` cells has at least one held-out cell; smaller classes stay in
    training. Cells whose code is ``>= n_labels`` (unlabelled) are in neither part.

    Parameters
    ----------
    labels
        Integer class code of every cell (``0 .. n_labels - 1``), or any labels (strings): their sorted
        unique values are the classes.
    train_size
        Share of each class in the training part (``1.0``: nothing held out).
    seed
        Seed of the permutation.
    n_labels
        Number of classes when ``labels`` are codes; codes at or above it are unlabelled.
    min_held_class
        Classes with fewer cells keep them all in the training part.

    Returns
    -------
    Sorted training and held-out indices.

    Examples
    --------
    >>> from sctransformer_tools._data import stratified_split
    >>> train, held_out = stratified_split(["B"] * 8 + ["T"] * 2, 0.75)
    >>> len(train), len(held_out)
    (7, 3)
    >>> len(stratified_split(["B"] * 8 + ["T"] * 2, 0.75, min_held_class=5)[1])  # T keeps both cells
    2
    """
    labels = np.asarray(labels)
    if n_labels is None:
        classes, codes = np.unique(labels.astype(str), return_inverse=True)
        n_labels = len(classes)
    else:
        codes = labels.astype(np.int64)
    if not 0 < train_size <= 1:
        raise ValueError(f"train_size must be in (0, 1], got {train_size}.")
    rng = np.random.default_rng(seed)
    train, held_out = [], []
    for code in range(n_labels):
        idx = rng.permutation(np.flatnonzero(codes == code))
        small = len(idx) < max(min_held_class, 2)
        n_held = 0 if small or train_size >= 1 else max(1, round(len(idx) * (1 - train_size)))
        held_out.append(idx[:n_held])
        train.append(idx[n_held:])
    empty = np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(train or [empty])), np.sort(np.concatenate(held_out or [empty]))
