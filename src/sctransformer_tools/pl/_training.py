"""Training curves from ``model.history``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from sctransformer_tools._docs import dsp

from ._utils import finish

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_LABELS = {
    "loss": "loss",
    "accuracy": "accuracy",
    "f1_macro": "macro-F1",
    "mse": "masked-expression MSE",
    "masking_entropy": "masking entropy (1: uniform)",
}
#: Metrics drawn by default for each stage.
_DEFAULT_METRICS = {"train": ("loss", "accuracy", "f1_macro"), "pretrain": ("mse", "masking_entropy")}
_SPLITS = {"train": ("#1f77b4", "-"), "validation": ("#ff7f0e", "--")}


@dsp.dedent
def training_history(
    model,
    metrics: Sequence[str] | None = None,
    *,
    stage: str = "train",
    ax: Axes | Sequence[Axes] | None = None,
    show: bool | None = None,
    save: bool | str | os.PathLike | None = None,
) -> Figure | None:
    """Figures per epoch, training vs validation: of ``train`` (``model.history``) or ``pretrain``.

    Parameters
    ----------
    model
        A trained (or pretrained) :class:`~sctransformer_tools.SCTransformer`.
    metrics
        Metrics to draw, one panel each (names in the history without the ``train_`` / ``validation_``
        prefix). Default: loss, accuracy and macro-F1 for ``stage="train"``; the masked-expression error and the
        masking entropy for ``stage="pretrain"``.
    stage
        ``"train"`` (``model.history``) or ``"pretrain"`` (``model.pretraining_history_``).
    ax
        Axes to draw into, one per metric (a new figure by default).
    %(param_show)s
    %(param_save)s

    Returns
    -------
    The Figure when ``show`` is ``False``.

    Examples
    --------
    >>> import sctransformer_tools as sct
    >>> model, adata = sct.ds.toy_model()  # a tiny trained model and its data (pbmc68k_reduced)
    >>> fig = sct.pl.training_history(model, show=False)
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    if stage not in _DEFAULT_METRICS:
        raise ValueError(f"stage must be 'train' or 'pretrain', got {stage!r}.")
    if stage == "train":
        history = getattr(model, "history", None)
        if not history:
            raise ValueError("model.history is empty: train the model first (`model.train(...)`).")
    else:
        history = getattr(model, "pretraining_history_", None)
        if not history:
            raise ValueError("The model was not pretrained: call `model.pretrain(...)` first.")
    metrics = list(_DEFAULT_METRICS[stage] if metrics is None else metrics)
    missing = [m for m in metrics if f"train_{m}" not in history and f"validation_{m}" not in history]
    if missing:
        known = sorted({k.split("_", 1)[1] for k in history if "_" in k})
        raise KeyError(f"metrics {missing} not in model.history (available: {known}).")
    if ax is None:
        fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.0), squeeze=False)
        axes = list(axes[0])
    else:
        axes = [ax] if not isinstance(ax, Sequence | np.ndarray) else list(np.ravel(ax))
        if len(axes) != len(metrics):
            raise ValueError(f"ax must hold one Axes per metric ({len(metrics)}), got {len(axes)}.")
        fig = axes[0].figure
    for axis, metric in zip(axes, metrics, strict=True):
        for split, (color, style) in _SPLITS.items():
            name = f"{split}_{metric}"
            if name not in history:
                continue
            values = history[name]
            epochs = np.asarray(values.index, dtype=float)
            y = values.to_numpy(dtype=float).ravel()
            axis.plot(epochs, y, color=color, ls=style, marker="o", ms=3, label=split)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_title(_LABELS.get(metric, metric))
        axis.legend(frameon=False)
    fig.tight_layout()
    return finish(fig, fig, "training_history" if stage == "train" else "pretraining_history", show, save)
