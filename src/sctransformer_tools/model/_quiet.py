"""Targeted silencing of messages the libraries print on every call, and that say nothing to our users.

Each filter names the logger or warning and the message it drops, and is active only inside the call
(nothing global: the user's own Lightning or scvi-tools runs print as usual).
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Iterator, Sequence


class _DropMessages(logging.Filter):
    """Drop log records whose message matches one of ``patterns``."""

    def __init__(self, patterns: Sequence[str]):
        super().__init__()
        self.patterns = [re.compile(p) for p in patterns]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(p.search(message) for p in self.patterns)


@contextlib.contextmanager
def _dropping(loggers: dict[str, Sequence[str]]) -> Iterator[None]:
    filters = [(logging.getLogger(name), _DropMessages(patterns)) for name, patterns in loggers.items()]
    for logger, flt in filters:
        logger.addFilter(flt)
    try:
        yield
    finally:
        for logger, flt in filters:
            logger.removeFilter(flt)


#: scvi-tools' messages on reading a model folder or a new AnnData (the model handles both itself).
SCVI_MESSAGES = {
    "scvi.model.base._base_model": (
        r"^Input AnnData not setup with scvi-tools",
        r"^AnnData object appears to be a copy",
        r"^Model was loaded without AnnData",
    ),
    "scvi.data._download": (r"already downloaded$",),
}

#: Lightning's start-up and end-of-fit lines (hardware report, advertising tip, how steps were counted).
LIGHTNING_MESSAGES = {
    "lightning.pytorch.utilities.rank_zero": (
        r"^GPU available:",
        r"^TPU available:",
        r"^HPU available:",
        r"Tip: For seamless cloud",
        r"^Loading `train_dataloader` to estimate",
        r"^`Trainer.fit` stopped: `max_epochs=\d+` reached",
    ),
}


@contextlib.contextmanager
def quiet_scvi() -> Iterator[None]:
    """Drop scvi-tools' messages about reading folders and transferring a setup (:data:`SCVI_MESSAGES`)."""
    with _dropping(SCVI_MESSAGES):
        yield


@contextlib.contextmanager
def quiet_training() -> Iterator[None]:
    """Drop Lightning's start-up lines and two warnings that do not concern the user during ``train``.

    The warnings: Lightning's own use of a deprecated torch API (``isinstance(treespec, LeafSpec)``), and the
    note that an epoch has fewer steps than the logging interval (metrics are logged per epoch here). The
    messages are listed in ``sctransformer_tools.model._quiet`` (``LIGHTNING_MESSAGES``, ``SCVI_MESSAGES``) and
    dropped only inside the block (``SCTransformer.train`` runs in it; wrap another scvi-tools model's training in it
    to train it as quietly).

    Examples
    --------
    >>> import logging
    >>> import sctransformer_tools as sct
    >>> with sct.model.quiet_training():
    ...     logging.getLogger("lightning.pytorch.utilities.rank_zero").info("GPU available: False")
    """
    with _dropping(LIGHTNING_MESSAGES | SCVI_MESSAGES), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r"The number of training batches .* is smaller than the logging")
        warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
        yield
