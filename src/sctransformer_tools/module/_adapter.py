"""Query-specific parameters of reference mapping: what a new study may shift, learned on its cells alone.

A query from another study, chemistry or lab differs from the reference in ways that are not biology: genes are
captured more or less efficiently (a per-gene shift of log-expression) and the cell's overall state is read
with a study offset. :class:`QueryAdapter` holds those parameters, initialised to change nothing: a gene-wise
scale and shift of each expressed gene's log-normalised value (the tokens' values and the expression profile
read the adapted values; a gene a cell does not express stays absent) and an offset of the CLS token. Reference
mapping trains only these (and optionally the layer norms) on the query's cells, the reference's weights frozen,
as scArches trains only a query's new batch parameters.
"""

from __future__ import annotations

import torch
from torch import nn


class QueryAdapter(nn.Module):
    """Gene-wise ``v -> v * exp(log_scale[g]) + shift[g]`` on expressed genes, and a CLS offset.

    Parameters
    ----------
    n_genes
        Panel genes.
    d_model
        Width of the CLS token.

    Examples
    --------
    >>> import torch
    >>> from sctransformer_tools.module import QueryAdapter
    >>> adapter = QueryAdapter(3, 4)
    >>> values = torch.tensor([[0.0, 1.0, 2.0]])
    >>> torch.equal(adapter.adapt(values), values)  # changes nothing until trained
    True
    """

    def __init__(self, n_genes: int, d_model: int):
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(n_genes))
        self.shift = nn.Parameter(torch.zeros(n_genes))
        self.cls_offset = nn.Parameter(torch.zeros(d_model))

    def adapt(self, values: torch.Tensor, genes: torch.Tensor | None = None) -> torch.Tensor:
        """Adapted log-normalised values: ``(cells, panel genes)``, or per token with ``genes`` (their panel
        positions). Zeros (genes not expressed) stay zero; adapted values are at least 0.
        """
        scale, shift = (
            (self.log_scale.exp(), self.shift) if genes is None else (self.log_scale[genes].exp(), self.shift[genes])
        )
        adapted = (values * scale.to(values.dtype) + shift.to(values.dtype)).clamp_min(0.0)
        return torch.where(values > 0, adapted, values)
