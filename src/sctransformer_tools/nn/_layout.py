"""Packed token sequences of varying length: one CLS token per cell, then each cell's gene tokens."""

from __future__ import annotations

from typing import NamedTuple

import torch


class TokenLayout(NamedTuple):
    """Where each packed token sits in the padded ``(cells, slots)`` layout.

    Packed order: the ``n_cells`` CLS tokens first, then the gene tokens cell by cell. A cell's CLS
    token takes slot 0 of its row, its gene tokens slots ``1 .. n``.

    Attributes
    ----------
    cell
        ``(n_tokens,)`` cell of every packed token.
    slot
        ``(n_tokens,)`` slot of every packed token in its cell's padded row.
    n_cells
        Number of cells.
    n_slots
        Longest row (1 + most gene tokens of a cell).

    Examples
    --------
    >>> import torch
    >>> from sctransformer_tools.nn import TokenLayout
    >>> layout = TokenLayout.from_counts(torch.tensor([2, 0, 1]))
    >>> layout.cell.tolist(), layout.slot.tolist(), layout.n_slots
    ([0, 1, 2, 0, 0, 2], [0, 0, 0, 1, 2, 1], 3)
    >>> layout.valid().tolist()
    [[True, True, True], [True, False, False], [True, True, False]]
    """

    cell: torch.Tensor
    slot: torch.Tensor
    n_cells: int
    n_slots: int

    @classmethod
    def from_counts(cls, genes_per_cell: torch.Tensor) -> TokenLayout:
        """Layout of cells with ``genes_per_cell`` gene tokens each (packed cell-major)."""
        n_cells = len(genes_per_cell)
        device = genes_per_cell.device
        cells = torch.arange(n_cells, device=device)
        gene_cell = torch.repeat_interleave(cells, genes_per_cell)
        start = torch.cumsum(genes_per_cell, 0) - genes_per_cell
        gene_slot = torch.arange(len(gene_cell), device=device) - start[gene_cell] + 1
        n_slots = 1 + (int(genes_per_cell.max()) if n_cells else 0)
        return cls(
            torch.cat([cells, gene_cell]),
            torch.cat([torch.zeros(n_cells, dtype=torch.long, device=device), gene_slot]),
            n_cells,
            n_slots,
        )

    @property
    def n_tokens(self) -> int:
        """Packed tokens (CLS included)."""
        return len(self.cell)

    def pad(self, x: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        """``(n_tokens, ...)`` -> ``(n_cells, n_slots, ...)``."""
        out = x.new_full((self.n_cells, self.n_slots, *x.shape[1:]), fill)
        out[self.cell, self.slot] = x
        return out

    def unpad(self, x: torch.Tensor) -> torch.Tensor:
        """``(n_cells, n_slots, ...)`` -> ``(n_tokens, ...)``."""
        return x[self.cell, self.slot]

    def valid(self) -> torch.Tensor:
        """``(n_cells, n_slots)`` boolean: True where a token sits."""
        out = torch.zeros(self.n_cells, self.n_slots, dtype=torch.bool, device=self.cell.device)
        out[self.cell, self.slot] = True
        return out
