"""The cell's whole expression profile as the CLS token's starting point: a fixed principal-component projection.

Gene tokens carry one gene each; attention pooling into the CLS token has to learn, from labelled cells, how
many genes together define a cell type. A linear summary of the cell's whole profile is what logistic regression
and scANVI's encoder start from, and what unlabelled cells teach best: the principal components of the
standardised log-expression of the panel's highly variable genes, fitted on every cell the model is set up with
(labelled or not) and then frozen. The cell's coordinates on them, mapped by a trained linear layer, are added
to the CLS token before the first block; attention then refines that state gene by gene.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class ExpressionProfile(nn.Module):
    """``linear(((x[genes] - center) / scale).clamp(-clip, clip) @ components.T)``: a cell's profile -> ``d_model``.

    The projection (``center``, ``scale``, ``components``: buffers, saved with the model) is fitted on data
    outside this module (:func:`fit_profile`); only ``linear`` is trained.

    Parameters
    ----------
    genes
        Positions, among the panel genes, of the genes the profile reads.
    n_components
        Principal components.
    d_model
        Width of the CLS token.
    clip
        Standardised values are clipped to ``[-clip, clip]`` (as :func:`scanpy.pp.scale` with ``max_value``).

    Examples
    --------
    >>> import torch
    >>> from sctransformer_tools.module import ExpressionProfile
    >>> profile = ExpressionProfile(torch.tensor([0, 2, 3]), n_components=2, d_model=8)
    >>> profile(torch.rand(5, 4)).shape
    torch.Size([5, 8])
    """

    def __init__(self, genes: torch.Tensor | np.ndarray, n_components: int, d_model: int, clip: float = 10.0):
        super().__init__()
        genes = torch.as_tensor(np.asarray(genes), dtype=torch.long)
        self.clip = float(clip)
        self.register_buffer("genes", genes)
        self.register_buffer("center", torch.zeros(len(genes)))
        self.register_buffer("scale", torch.ones(len(genes)))
        self.register_buffer("components", torch.zeros(n_components, len(genes)))
        self.linear = nn.Linear(n_components, d_model)

    @property
    def n_components(self) -> int:
        """Principal components read."""
        return self.components.shape[0]

    def set_projection(self, center: np.ndarray, scale: np.ndarray, components: np.ndarray) -> None:
        """Install a fitted projection (see :func:`fit_profile`)."""
        for name, value in (("center", center), ("scale", scale), ("components", components)):
            buffer = getattr(self, name)
            value = torch.as_tensor(np.asarray(value), dtype=buffer.dtype, device=buffer.device)
            if value.shape != buffer.shape:
                raise ValueError(f"{name} has shape {tuple(value.shape)}, expected {tuple(buffer.shape)}.")
            buffer.copy_(value)

    def coordinates(self, expression: torch.Tensor, measured: torch.Tensor | None = None) -> torch.Tensor:
        """``(cells, n_components)`` coordinates of ``(cells, panel genes)`` log-normalised expression.

        ``measured`` (boolean per panel gene): the genes the data measure, when not all; a gene they do not
        measure reads as the mean of the cells the projection was fitted on (standardised value 0), not as 0
        counts, which would move every cell of a dataset with fewer genes along the components.
        """
        z = ((expression[:, self.genes].float() - self.center) / self.scale).clamp(-self.clip, self.clip)
        if measured is not None:
            z = z * measured.to(z.device)[self.genes].to(z.dtype)
        return z @ self.components.T

    def forward(self, expression: torch.Tensor, measured: torch.Tensor | None = None) -> torch.Tensor:
        """``(cells, d_model)`` from ``(cells, panel genes)`` log-normalised expression (``measured``: see
        :meth:`coordinates`).
        """
        return self.linear(self.coordinates(expression, measured).to(self.linear.weight.dtype))


def fit_profile(expression: np.ndarray, n_components: int, seed: int = 0) -> dict[str, np.ndarray]:
    """The standardisation and principal components of ``(cells, genes)`` log-normalised expression.

    Parameters
    ----------
    expression
        Log-normalised expression of the cells to fit on (dense or sparse).
    n_components
        Components (capped by the numbers of cells and genes).
    seed
        Seed of the randomised PCA.

    Returns
    -------
    ``center``, ``scale`` (per gene; the standard deviation, at least 0.01) and ``components``
    (``n_components x genes``, rows of zeros beyond what the data allow).

    Examples
    --------
    >>> import numpy as np
    >>> from sctransformer_tools.module import fit_profile
    >>> x = np.random.default_rng(0).normal(size=(100, 6)) @ np.diag([5, 1, 1, 1, 1, 1])
    >>> fit = fit_profile(x, 2)
    >>> fit["components"].shape, bool(np.allclose(np.linalg.norm(fit["components"], axis=1), 1))
    ((2, 6), True)
    """
    from scipy import sparse
    from sklearn.decomposition import PCA

    x = expression.toarray() if sparse.issparse(expression) else np.asarray(expression)
    x = x.astype(np.float32, copy=False)
    center = x.mean(0)
    scale = np.maximum(x.std(0), 0.01)
    z = np.clip((x - center) / scale, -10, 10)
    components = np.zeros((n_components, x.shape[1]), dtype=np.float32)
    k = int(min(n_components, x.shape[0] - 1, x.shape[1]))
    if k > 0:
        solver = "randomized" if min(x.shape) > 4 * k else "full"
        components[:k] = PCA(k, svd_solver=solver, random_state=seed).fit(z).components_
    return {"center": center.astype(np.float32), "scale": scale.astype(np.float32), "components": components}
