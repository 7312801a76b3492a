"""Calibrated confidence: temperature scaling fitted on held-out cells, and its expected calibration error."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar
from torchmetrics.functional.classification import multiclass_calibration_error

#: Bins of the expected calibration error (the usual 15 of Guo et al. 2017).
ECE_BINS = 15


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = ECE_BINS) -> float:
    """Expected calibration error (L1, equal-width confidence bins) of ``(cells, classes)`` probabilities.

    Examples
    --------
    >>> import torch
    >>> from sctransformer_tools.model._calibration import expected_calibration_error
    >>> probs = torch.tensor([[0.9, 0.1], [0.9, 0.1]])
    >>> round(expected_calibration_error(probs, torch.tensor([0, 1])), 2)  # 90% sure, 50% right
    0.4
    """
    return float(multiclass_calibration_error(probs, labels, num_classes=probs.shape[1], n_bins=n_bins, norm="l1"))


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> dict:
    """Temperature ``T`` minimising the negative log-likelihood of ``softmax(logits / T)`` on labelled cells.

    Temperature scaling (Guo et al. 2017) divides every logit by one positive number: it changes
    confidences, never which cell type is predicted.

    Returns
    -------
    ``temperature``, ``nll_before``, ``nll_after``, ``ece_before``, ``ece_after`` and ``n_cells``.

    Examples
    --------
    >>> import torch
    >>> from sctransformer_tools.model._calibration import fit_temperature
    >>> g = torch.Generator().manual_seed(0)
    >>> logits = 2 * torch.randn(5000, 3, generator=g)
    >>> labels = torch.multinomial(torch.softmax(logits, -1), 1, generator=g).ravel()  # calibrated at T = 1
    >>> fit = fit_temperature(logits * 4, labels)  # a model 4x overconfident
    >>> 3.5 < fit["temperature"] < 4.5, fit["ece_after"] < fit["ece_before"]
    (True, True)
    """
    logits, labels = logits.double(), labels.long()

    def nll(log_t: float) -> float:
        return float(F.cross_entropy(logits / np.exp(log_t), labels))

    best = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded", options={"xatol": 1e-4})
    temperature = float(np.exp(best.x))
    return {
        "temperature": temperature,
        "nll_before": nll(0.0),
        "nll_after": float(best.fun),
        "ece_before": expected_calibration_error(torch.softmax(logits, -1), labels),
        "ece_after": expected_calibration_error(torch.softmax(logits / temperature, -1), labels),
        "n_cells": len(labels),
    }
