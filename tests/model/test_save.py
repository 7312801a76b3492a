"""Saving and opening model folders (model/_save.py, model/_folder.py, model/_migrate.py): safe opening, released formats."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import sctransformer_tools as sct
from sctransformer_tools.cli import main

#: Model folders written by released versions (tests/data/released_models/make_released_models.py).
RELEASED = Path(__file__).resolve().parents[1] / "data" / "released_models"


def test_saving_twice_names_overwrite(reference_model, tmp_path):
    """Issue 13.5."""
    reference_model.save(tmp_path / "model")
    with pytest.raises(FileExistsError, match="Pass overwrite=True"):
        reference_model.save(tmp_path / "model")
    reference_model.save(tmp_path / "model", overwrite=True)


class _Payload:
    """A pickle that runs a command when it is opened."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_opening_a_crafted_model_folder_runs_nothing(reference_model, reference_and_query, tmp_path):
    """Issue 13.10: a folder whose pickle runs a command is refused before anything runs."""
    _, query, _ = reference_and_query
    marker = tmp_path / "pwned"
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "model.pt").write_bytes(pickle.dumps({"attr_dict": _Payload(marker)}))
    for open_it in (
        lambda: sct.SCTransformer.load(legacy),
        lambda: sct.SCTransformer.prepare_query_anndata(query.copy(), legacy),
    ):
        with pytest.raises(ValueError, match=r"0\.1 as a pickle.*allow_pickle=True"):
            open_it()
    out = tmp_path / "out.h5ad"
    query.write_h5ad(tmp_path / "query.h5ad")
    with pytest.raises(ValueError, match="allow_pickle"):
        main(["annotate", "--model", str(legacy), "--query", str(tmp_path / "query.h5ad"), "--out", str(out)])
    # a folder in today's layout whose weights file is a pickle with code: safetensors reads tensors only
    crafted = tmp_path / "crafted"
    reference_model.save(crafted)
    (crafted / "weights.safetensors").write_bytes(pickle.dumps({"weights": _Payload(marker)}))
    with pytest.raises(ValueError, match="could not be read as tensors") as refused:
        sct.SCTransformer.load(crafted)
    _says_only_what_is_safe(refused.value, crafted / "weights.safetensors")
    # a 0.2.0 folder (format 1) whose weights.pt is a pickle with code: torch's weights-only reader refuses it
    released = tmp_path / "released"
    shutil.copytree(RELEASED / "format1", released)
    torch.save({"weights": _Payload(marker)}, released / "weights.pt")
    with pytest.raises(ValueError, match="could not be read as tensors only") as refused:
        sct.SCTransformer.load(released)
    _says_only_what_is_safe(refused.value, released / "weights.pt")
    assert "it refers to posix.system" in str(refused.value) or os.name != "posix"
    assert not marker.exists()


def test_a_model_folder_without_its_weights_is_called_incomplete(reference_model, tmp_path):
    """A missing weights file is an incomplete copy, not a file holding something other than tensors."""
    incomplete = tmp_path / "incomplete"
    reference_model.save(incomplete)
    (incomplete / "weights.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"weights.safetensors' is missing: the model folder is incomplete"):
        sct.SCTransformer.load(incomplete)


def _says_only_what_is_safe(error: Exception, path: Path) -> None:
    """Issue 25.7: the refusal names the file and why it was not opened, and never advises weights_only=False
    (torch's own message does: it would run the file's code), not even in the exception chain a traceback shows."""
    import traceback

    message = str(error)
    assert repr(str(path)) in message and "was not opened: it holds something other than tensors" in message
    shown = "".join(traceback.format_exception(error))
    assert "weights_only" not in shown and "arbitrary code" not in shown


@pytest.mark.parametrize("folder", ["format1", "format0"])
def test_folders_of_released_versions_give_their_predictions(folder, tmp_path):
    """Issue 23.4: a folder written by 0.2.0 (format 1) or 0.1 (format 0, a pickle: only with allow_pickle) opens,
    predicts what that release predicted, and saves again in today's pickle-free layout."""
    expected = np.load(RELEASED / "expected.npz")
    query = sct.ds.pbmc68k_reduced()[expected["obs_names"]].copy()
    kwargs = {"allow_pickle": True} if folder == "format0" else {}
    if folder == "format0":
        with pytest.raises(ValueError, match="allow_pickle"):
            sct.SCTransformer.load(RELEASED / folder)
    old = sct.SCTransformer.load(RELEASED / folder, **kwargs)
    for model in (old, _resaved(old, tmp_path / "converted")):
        probs = model.predict(query, soft=True)
        assert list(probs.columns) == list(expected["cell_types"])
        np.testing.assert_allclose(probs.to_numpy(), expected["probabilities"], atol=1e-5)
        latent = model.get_latent_representation(query, inplace=False)
        np.testing.assert_allclose(latent, expected["latent"], atol=1e-4)
    assert sorted(p.name for p in (tmp_path / "converted").iterdir()) == ["model.h5", "weights.safetensors"]


def _resaved(model, path):
    model.save(path)
    return sct.SCTransformer.load(path)


def test_a_pretrained_folder_of_0_2_starts_a_new_model():
    """A 0.2.0 pretrained backbone keeps its masking policy and target and gives its encoder to a new model."""
    adata = sct.ds.pbmc68k_reduced()
    sct.SCTransformer.setup_anndata(adata, labels_key="louvain")
    model = sct.SCTransformer.from_pretrained(RELEASED / "format1_pretrained", adata, n_top_genes=0)
    assert model.pretraining_["masking"] == "mam" and "masked_expression" in model.module.objectives
    assert model.module.objectives["masked_expression"].target == "counts"  # 0.2's default, not today's
    assert model.pretrained_from_["matched_genes"] == model.pretrained_from_["panel_genes"]
