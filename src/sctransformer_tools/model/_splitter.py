"""Minibatches for learning from every cell: each step reads cells of the whole training set and labelled cells."""

from __future__ import annotations

import numpy as np
from scvi.dataloaders import ConcatDataLoader, DataSplitter


class SemiSupervisedSplitter(DataSplitter):
    """scvi-tools' :class:`~scvi.dataloaders.DataSplitter` whose training loader pairs every minibatch of the
    training cells (labelled or not) with a minibatch of labelled cells (:class:`~scvi.dataloaders.ConcatDataLoader`,
    as scANVI's loader does), so that a reference with few labels still shows labels at every step. An epoch is
    a pass over all training cells; the labelled ones are cycled through.

    Parameters
    ----------
    adata_manager
        The registered data.
    labelled
        The labelled training cells (a subset of ``external_indexing[0]``).
    **kwargs
        Passed to :class:`~scvi.dataloaders.DataSplitter` (``external_indexing``, ``batch_size``, ...).
    """

    def __init__(self, adata_manager, labelled: np.ndarray, **kwargs):
        super().__init__(adata_manager, **kwargs)
        self.labelled = np.asarray(labelled)

    def train_dataloader(self):
        """Pairs of minibatches: training cells, labelled training cells."""
        if len(self.labelled) == 0 or len(self.labelled) == len(self.train_idx):
            return super().train_dataloader()
        return ConcatDataLoader(
            self.adata_manager,
            indices_list=[self.train_idx, self.labelled],
            shuffle=True,
            drop_last=self.drop_last,
            pin_memory=self.pin_memory,
            **self.data_loader_kwargs,
        )
