"""Cells -> gene tokens: each cell's expressed panel genes, with their expression values, packed."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from sctransformer_tools.nn import TokenLayout


class GeneTokens(NamedTuple):
    """The gene tokens of a minibatch, packed without padding (cell-major).

    Attributes
    ----------
    cell
        ``(n,)`` cell of each gene token.
    gene_ids
        ``(n,)`` panel position of each gene token.
    values
        ``(n,)`` log-normalised expression.
    n_cells
        Cells in the minibatch.
    layout
        :class:`~sctransformer_tools.nn.TokenLayout` of the full sequence: one CLS token per cell first
        (positions ``0 .. n_cells - 1``), then the gene tokens (positions ``n_cells + i``).
    expression
        ``(cells, panel genes)`` log-normalised expression as the tokens read it (0 for genes dropped or
        beyond ``max_tokens``).
    """

    cell: torch.Tensor
    gene_ids: torch.Tensor
    values: torch.Tensor
    n_cells: int
    layout: TokenLayout
    expression: torch.Tensor | None = None

    def repeat(self, n: int) -> GeneTokens:
        """Every cell's tokens ``n`` times over, as ``n`` consecutive cells (cell ``c`` becomes ``c * n .. c * n + n - 1``).

        Examples
        --------
        >>> import torch
        >>> from sctransformer_tools.module import ExpressedGeneTokenizer
        >>> tokens = ExpressedGeneTokenizer(torch.tensor([0, 1]))(torch.tensor([[1.0, 2.0], [0.0, 3.0]]))
        >>> twice = tokens.repeat(2)
        >>> twice.n_cells, twice.cell.tolist(), twice.gene_ids.tolist()
        (4, [0, 0, 1, 1, 2, 3], [0, 1, 0, 1, 1, 1])
        """
        if n == 1:
            return self
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}.")
        per_cell = torch.bincount(self.cell, minlength=self.n_cells)
        start = torch.cumsum(per_cell, 0) - per_cell
        counts = per_cell.repeat_interleave(n)
        cell = torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)
        offset = torch.arange(len(cell), device=cell.device) - (torch.cumsum(counts, 0) - counts)[cell]
        index = start[cell // n] + offset
        expression = None if self.expression is None else self.expression.repeat_interleave(n, 0)
        return GeneTokens(
            cell,
            self.gene_ids[index],
            self.values[index],
            self.n_cells * n,
            TokenLayout.from_counts(counts),
            expression,
        )


class ExpressedGeneTokenizer(nn.Module):
    """Turn a cell's counts into tokens for the panel genes it expresses.

    Genes with zero counts in a cell are not tokens of that cell (their information, "not detected",
    is implicit), which makes a cell cost ``O(expressed genes)`` instead of ``O(panel genes)``: on
    pbmc3k a cell expresses a median 346 of 3,866 CollecTRI panel genes. Genes a query lacks are
    zero-filled and so never become tokens. Tokens are packed without padding; cells expressing more
    than ``max_tokens`` panel genes keep their ``max_tokens`` most expressed ones.

    Parameters
    ----------
    panel_index
        Position of each panel gene among the model's input genes.
    max_tokens
        Cap on gene tokens per cell.
    log_normalized
        Input is already log-normalised (no library-size scaling).
    target_sum
        Counts per cell after library-size normalisation, before ``log1p``.

    Examples
    --------
    >>> import torch
    >>> from sctransformer_tools.module import ExpressedGeneTokenizer
    >>> tok = ExpressedGeneTokenizer(torch.tensor([0, 2]), target_sum=10)
    >>> out = tok(torch.tensor([[1.0, 5.0, 0.0], [3.0, 0.0, 2.0]]), library=torch.tensor([10.0, 10.0]))
    >>> out.cell.tolist(), out.gene_ids.tolist()
    ([0, 1, 1], [0, 0, 1])
    """

    def __init__(
        self,
        panel_index: torch.Tensor,
        max_tokens: int = 2048,
        log_normalized: bool = False,
        target_sum: float = 1e4,
    ):
        super().__init__()
        self.register_buffer("panel_index", torch.as_tensor(panel_index, dtype=torch.long))
        self.max_tokens = int(max_tokens)
        self.log_normalized = log_normalized
        self.target_sum = float(target_sum)

    @property
    def n_genes(self) -> int:
        """Panel size."""
        return len(self.panel_index)

    def normalize(self, counts: torch.Tensor, library: torch.Tensor | None) -> torch.Tensor:
        """Panel expression, library-size normalised and log1p-transformed (unless already log-normalised)."""
        x = counts[:, self.panel_index]
        if self.log_normalized:
            return x
        if library is None:
            library = counts.sum(1)
        library = library.reshape(-1, 1).clamp_min(1.0)  # a cell without counts has no tokens, never NaN
        return torch.log1p(x / library * self.target_sum)

    def forward(self, counts: torch.Tensor, library: torch.Tensor | None = None, drop_prob: float = 0.0) -> GeneTokens:
        """Tokenise a minibatch.

        Parameters
        ----------
        counts
            ``(batch, n_input)`` counts (or log-normalised values).
        library
            ``(batch,)`` library sizes; the row sums when ``None``.
        drop_prob
            Probability of dropping each expressed gene (training augmentation).

        Returns
        -------
        The packed :class:`GeneTokens`.
        """
        values = self.normalize(counts, library)
        expressed = values > 0
        if drop_prob > 0:
            expressed &= torch.rand_like(values) >= drop_prob
        n_cells = values.shape[0]
        if n_cells and int(expressed.sum(1).max()) > self.max_tokens:
            top = values.masked_fill(~expressed, float("-inf")).topk(self.max_tokens, dim=1).indices
            keep = torch.zeros_like(expressed).scatter_(1, top, True)
            expressed &= keep
        cell, gene = expressed.nonzero(as_tuple=True)
        per_cell = torch.bincount(cell, minlength=n_cells)
        layout = TokenLayout.from_counts(per_cell)
        return GeneTokens(cell, gene, values[cell, gene], n_cells, layout, values * expressed)
