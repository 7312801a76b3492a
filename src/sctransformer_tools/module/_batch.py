"""A minibatch as the encoder and the objectives read it, built once from scvi-tools' tensors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from scvi import REGISTRY_KEYS

from sctransformer_tools._constants import SCT_REGISTRY_KEYS


@dataclass
class CellBatch:
    """The cells of a minibatch: counts, library sizes, batch and label codes.

    Attributes
    ----------
    x
        ``(cells, genes)`` raw counts (or log-normalised values) on the model's genes.
    library
        ``(cells,)`` library sizes; ``None``: the row sums.
    batch_index
        ``(cells,)`` batch codes; ``None`` when the model has no batches.
    labels
        ``(cells,)`` label codes; code ``n_labels`` marks an unlabelled cell. ``None`` when not loaded.
    measured
        ``(panel genes,)`` boolean: the panel genes the cells' data measure (``None``: all of them).

    Examples
    --------
    >>> import torch
    >>> from sctransformer_tools.module import CellBatch
    >>> batch = CellBatch.from_tensors({"X": torch.ones(3, 5), "labels": torch.tensor([[0], [1], [2]])})
    >>> batch.n_cells, batch.labels.tolist(), batch.library is None
    (3, [0, 1, 2], True)
    """

    x: torch.Tensor
    library: torch.Tensor | None = None
    batch_index: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    measured: torch.Tensor | None = None

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, torch.Tensor] | Sequence[Mapping[str, torch.Tensor]]) -> CellBatch:
        """From a data loader's minibatch: a dict of registry keys, or a list of dicts (loaders read together,
        e.g. all cells and the labelled cells) that are joined cell-wise.
        """
        if not isinstance(tensors, Mapping):
            parts = [cls.from_tensors(t) for t in tensors]
            return cls(
                *(None if p[0] is None else torch.cat(p) for p in zip(*(p.fields() for p in parts), strict=True))
            )

        def flat(key: str) -> torch.Tensor | None:
            value = tensors.get(key)
            return None if value is None else value.reshape(-1)

        return cls(
            tensors[REGISTRY_KEYS.X_KEY],
            flat(SCT_REGISTRY_KEYS.LIBRARY_KEY),
            flat(REGISTRY_KEYS.BATCH_KEY),
            None if tensors.get(REGISTRY_KEYS.LABELS_KEY) is None else flat(REGISTRY_KEYS.LABELS_KEY).long(),
        )

    def fields(self) -> tuple:
        """``(x, library, batch_index, labels, measured)``."""
        return self.x, self.library, self.batch_index, self.labels, self.measured

    @property
    def n_cells(self) -> int:
        """Cells in the minibatch."""
        return self.x.shape[0]

    def repeat_cells(self, n: int) -> CellBatch:
        """Every cell ``n`` times over, consecutively: cell ``c`` becomes cells ``c * n`` to ``c * n + n - 1``."""
        if n == 1:
            return self
        cells = (None if t is None else t.repeat_interleave(n, 0) for t in self.fields()[:4])
        return CellBatch(*cells, measured=self.measured)

    def to(self, device: torch.device | str) -> CellBatch:
        """The batch on ``device``."""
        return CellBatch(*(None if t is None else t.to(device) for t in self.fields()))
