"""The toy model of the examples (ds/_toy.py): trained once per process, a new copy for every caller."""

from __future__ import annotations

import numpy as np
import torch

import sctransformer_tools as sct
from sctransformer_tools.ds import _toy


def test_the_toy_model_is_trained_once_and_every_call_gets_its_own_copy():
    model, adata = sct.ds.toy_model()
    folder = _toy._trained_folder()
    other, other_adata = sct.ds.toy_model()
    assert _toy._trained_folder() == folder  # not trained again
    assert model.is_trained_ and model.adata is adata and other.adata is other_adata
    assert model.pretraining_["masking"] == "mam" and len(model.history["train_loss"]) == _toy.TOY_EPOCHS["train"]
    np.testing.assert_array_equal(model.predict(adata), other.predict(other_adata))
    # what one caller does to its copy never reaches the next
    adata.obs["mine"] = 1
    with torch.no_grad():
        model.module.cls.add_(1.0)
    third, third_adata = sct.ds.toy_model()
    assert "mine" not in third_adata.obs
    torch.testing.assert_close(third.module.cls, other.module.cls)
