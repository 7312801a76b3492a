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
        ``(cells, panel genes)`` log-normalised expression of the whole cell (before token dropout and the
        ``max_tokens`` cap: what the expression profile reads).
    library
        ``(cells,)`` the size factor each cell's counts were divided by (``None`` for log-normalised input).
    """

    cell: torch.Tensor
    gene_ids: torch.Tensor
    values: torch.Tensor
    n_cells: int
    layout: TokenLayout
    expression: torch.Tensor | None = None
    library: torch.Tensor | None = None

    def repeat(self, n: int) -> GeneTokens:
        """Each cell's tokens ``n`` times over, as consecutive cells: cell ``c`` becomes ``c * n`` to ``c * n + n - 1``.

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
        library = None if self.library is None else self.library.repeat_interleave(n, 0)
        return GeneTokens(
            cell,
            self.gene_ids[index],
            self.values[index],
            self.n_cells * n,
            TokenLayout.from_counts(counts),
            expression,
            library,
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
    size_factors
        What a cell's counts are divided by: ``"panel"``, the sum of its counts over the panel genes (so that
        the model's input does not depend on which other genes a file holds), scaled up by the reference's share
        of the panel genes a query measures when it lacks some (``panel_share``, fitted on the reference);
        ``"library"``, the library size given (an ``obs`` column of totals over all genes, or the row sums).

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
        size_factors: str = "library",
    ):
        super().__init__()
        if size_factors not in ("panel", "library"):
            raise ValueError(f"size_factors must be 'panel' or 'library', got {size_factors!r}.")
        self.register_buffer("panel_index", torch.as_tensor(panel_index, dtype=torch.long))
        self.size_factors = size_factors
        if size_factors == "panel":  # each panel gene's mean share of a reference cell's panel counts
            n = len(self.panel_index)
            self.register_buffer("panel_share", torch.full((n,), 1.0 / max(n, 1)))
        self.max_tokens = int(max_tokens)
        self.log_normalized = log_normalized
        self.target_sum = float(target_sum)

    @property
    def n_genes(self) -> int:
        """Panel size."""
        return len(self.panel_index)

    def normalize(
        self, counts: torch.Tensor, library: torch.Tensor | None, measured: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Panel expression, size-factor normalised and log1p-transformed (unless already log-normalised).

        ``measured`` (boolean per panel gene, ``size_factors="panel"``): the panel genes the data measure, when
        not all.
        """
        x = counts[:, self.panel_index]
        if self.log_normalized:
            return x
        library = self.size_factor(counts, library, measured).reshape(-1, 1)
        return torch.log1p(x / library * self.target_sum)

    def size_factor(
        self, counts: torch.Tensor, library: torch.Tensor | None, measured: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``(cells,)`` what each cell's counts are divided by (at least 1: a cell without counts has no tokens)."""
        if self.size_factors == "panel":
            library = counts[:, self.panel_index].sum(1)
            if measured is not None:
                library = library / self.panel_share[measured.to(counts.device)].sum().clamp_min(1e-3)
        elif library is None:
            library = counts.sum(1)
        return library.reshape(-1).clamp_min(1.0)

    def forward(
        self,
        counts: torch.Tensor,
        library: torch.Tensor | None = None,
        drop_prob: float = 0.0,
        measured: torch.Tensor | None = None,
    ) -> GeneTokens:
        """Tokenise a minibatch.

        Parameters
        ----------
        counts
            ``(batch, n_input)`` counts (or log-normalised values).
        library
            ``(batch,)`` library sizes; the row sums when ``None``.
        drop_prob
            Probability of dropping each expressed gene (training augmentation).
        measured
            Boolean per panel gene: the genes the data measure (see :meth:`normalize`).

        Returns
        -------
        The packed :class:`GeneTokens`.
        """
        values = self.normalize(counts, library, measured)
        size = None if self.log_normalized else self.size_factor(counts, library, measured)
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
        return GeneTokens(cell, gene, values[cell, gene], n_cells, layout, values, size)
