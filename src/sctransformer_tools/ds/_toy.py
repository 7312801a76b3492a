"""A tiny trained scTransformer on ``pbmc68k_reduced``, trained once per process, for examples and tests."""

from __future__ import annotations

import atexit
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from ._pbmc68k import pbmc68k_reduced

if TYPE_CHECKING:
    from anndata import AnnData

    from sctransformer_tools.model import SCTransformer

#: The toy model's architecture: one layer of two heads, 16 dimensions, the regulon genes only.
TOY_ARCHITECTURE = {"n_layers": 1, "d_model": 16, "n_heads": 2, "n_top_genes": 0}
#: Its training: MAM pretraining, then supervised training (epochs of ``pbmc68k_reduced``'s 700 cells).
TOY_EPOCHS = {"pretrain": 1, "train": 2}
_FOLDER: list[Path] = []  # the folder the process's toy model was saved to, once trained


def _trained_folder() -> Path:
    """Train the toy model once per process and save it to a temporary folder (removed at exit)."""
    if not _FOLDER:
        from sctransformer_tools.model import SCTransformer

        adata = pbmc68k_reduced()
        SCTransformer.setup_anndata(adata, labels_key="bulk_labels")
        model = SCTransformer(adata, seed=0, **TOY_ARCHITECTURE)
        model.pretrain(masking="mam", max_epochs=TOY_EPOCHS["pretrain"], seed=0, enable_progress_bar=False)
        with warnings.catch_warnings():  # two epochs are not meant to tell the cell types apart
            warnings.filterwarnings("ignore", message="Validation macro-F1", category=UserWarning)
            model.train(max_epochs=TOY_EPOCHS["train"], enable_progress_bar=False)
        folder = Path(tempfile.mkdtemp(prefix="sctransformer_toy_"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        model.save(folder / "model", overwrite=True)
        _FOLDER.append(folder / "model")
    return _FOLDER[0]


def toy_model() -> tuple[SCTransformer, AnnData]:
    """A tiny trained scTransformer and the data it was trained on, for examples and tests.

    The model (one layer of two heads, 16 dimensions, the CollecTRI regulon genes only, GRN mask) is
    pretrained with MAM masking for one epoch and trained for two on :func:`pbmc68k_reduced` (``labels_key=
    "bulk_labels"``). It is trained once per process; each call returns a new model loaded from it with a new copy
    of the data, so that what one caller does to either never reaches the next. Too small to annotate anything:
    it shows how the package is called, fast.

    Returns
    -------
    ``(model, adata)``: the trained :class:`~sctransformer_tools.SCTransformer` and its reference, set up.

    Examples
    --------
    >>> import sctransformer_tools as sct
    >>> model, adata = sct.ds.toy_model()
    >>> model.is_trained_, model.adata is adata, adata.n_obs
    (True, True, 700)
    >>> model.pretraining_["masking"]
    'mam'
    """
    from sctransformer_tools.model import SCTransformer

    folder = _trained_folder()
    adata = pbmc68k_reduced()
    return SCTransformer.load(folder, adata), adata
