"""Annotating a new dataset as a new user does it (issue 13), on data that ships with scanpy: runs anywhere."""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import torch

import sctransformer_tools as sct
from sctransformer_tools._data import stratified_split
from sctransformer_tools.cli import main

EPOCHS = 8
#: Model folders written by released versions (tests/data/released_models/make_released_models.py).
RELEASED = Path(__file__).resolve().parent / "data" / "released_models"


@pytest.fixture(scope="module")
def reference_and_query(pbmc68k_full):
    """The README's situation: the reference keeps its counts in a layer, the query (other cells) in X."""
    train, test = stratified_split(pbmc68k_full.obs["bulk_labels"].astype(str).to_numpy(), 0.8, seed=0)
    reference = pbmc68k_full[train].copy()
    reference.layers["counts"] = reference.X.copy()
    reference.X = reference.X.multiply(1.0 / reference.obs["n_counts"].to_numpy()[:, None] * 1e4).tocsr()  # normalised
    query = pbmc68k_full[test].copy()
    truth = query.obs.pop("bulk_labels").astype(str)
    return reference, query, truth


@pytest.fixture(scope="module")
def trained(reference_and_query):
    reference, _, _ = reference_and_query
    reference = reference.copy()
    sct.SCTransformer.setup_anndata(reference, layer="counts", labels_key="bulk_labels", regulons="collectri")
    model = sct.SCTransformer(reference, n_layers=1, d_model=32, n_heads=2, seed=0)
    model.train(max_epochs=EPOCHS, lr=5e-3, enable_progress_bar=False)
    return model


def test_query_with_counts_in_x_is_read_whatever_layer_the_reference_used(trained, reference_and_query):
    """Issue 13.1: the reference trained on layers['counts']; the query has its counts in X."""
    from sklearn.metrics import accuracy_score

    _, query, truth = reference_and_query
    query = query.copy()
    sct.SCTransformer.prepare_query_anndata(query, trained)
    assert query.uns["sctransformer_query"]["counts"] == "adata.X"
    pred = trained.predict(query)
    assert accuracy_score(truth, pred) > 0.4  # 10 FACS populations, a tiny model trained briefly
    # the query's counts in a layer of its own, named by the user
    named = query.copy()
    named.layers["raw"] = named.X.copy()
    named.X = named.X * 0.5  # not counts
    np.testing.assert_array_equal(trained.predict(named, layer="raw"), pred)
    with pytest.raises(KeyError, match=r"Layer 'spliced' not found in the query's layers \(\['raw'\]\)"):
        trained.predict(named, layer="spliced")


def test_library_sizes_from_a_usual_column_and_a_warning_without_one(reference_and_query, caplog):
    """Issue 13.2: a model dividing by library sizes (``size_factors="library"``) needs them for a query measuring
    part of the genes; say where they come from, and warn without them."""
    reference, query, _ = reference_and_query
    reference = reference.copy()
    sct.SCTransformer.setup_anndata(reference, layer="counts", labels_key="bulk_labels", regulons="collectri")
    model = sct.SCTransformer(reference, n_layers=1, d_model=32, n_heads=2, seed=0, size_factors="library")
    model.train(max_epochs=EPOCHS, lr=5e-3, enable_progress_bar=False)
    subset = query[:, query.var_names[:300]].copy()  # 300 of the 765 genes: row sums are not library sizes
    with caplog.at_level(logging.INFO, logger="sctransformer_tools"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the 465 missing genes
        model.predict(subset, novelty_threshold=0.95)
    assert "Library sizes of the query read from adata.obs['n_counts']" in caplog.text
    with_totals = (subset.obs["sctransformer_prediction"] == "Unknown").mean()
    without = subset.copy()
    del without.obs["n_counts"], without.uns["sctransformer_query"]
    with pytest.warns(UserWarning, match=r"no library-size column.*expect inflated novelty.*library_size_key="):
        model.predict(without, novelty_threshold=0.95)
    assert without.uns["sctransformer_query"]["library_size"] == "row sums"
    assert (without.obs["sctransformer_prediction"] == "Unknown").mean() > with_totals + 0.2


def test_panel_size_factors_need_no_library_size_column(trained, reference_and_query, caplog):
    """Issue 25.8: the default model divides by each cell's own panel counts, so a gene subset without a column of
    totals is read exactly as with one, and nothing warns about library sizes."""
    _, query, _ = reference_and_query
    assert trained.spec_.settings["size_factors"] == "panel"
    subset = query[:, query.var_names[:300]].copy()
    without = subset.copy()
    del without.obs["n_counts"]
    calls = []
    for cells in (subset, without):
        with caplog.at_level(logging.INFO, logger="sctransformer_tools"), warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            calls.append(trained.predict(cells, soft=True, inplace=False).to_numpy())
        assert not [w for w in seen if "library" in str(w.message)], [str(w.message) for w in seen]
        assert cells.uns["sctransformer_query"]["library_size"] == "panel genes"
    assert "Library sizes" not in caplog.text
    np.testing.assert_allclose(calls[0], calls[1], atol=1e-6)


def test_the_users_query_keeps_its_genes_and_columns(trained, reference_and_query):
    """Issue 13.3: annotation adds results; it never reshapes the object or leaves internal columns."""
    _, query, _ = reference_and_query
    query = query[:, ::-1].copy()  # another gene order
    query.var["note"] = "kept"
    genes, columns, matrix = query.var_names.copy(), list(query.obs.columns), query.X.copy()
    sct.SCTransformer.prepare_query_anndata(query, trained)
    trained.predict(query, over_clustering="louvain")
    trained.get_latent_representation(query)
    trained.get_attention(query, groupby="sctransformer_prediction")
    assert query.var_names.equals(genes) and (query.var["note"] == "kept").all()
    assert (matrix != query.X).nnz == 0
    added = [c for c in query.obs.columns if c not in columns]
    assert added == [
        "sctransformer_prediction",
        "sctransformer_confidence",
        "sctransformer_novelty",
        "sctransformer_majority_voting",
    ]
    assert not [c for c in query.obs.columns if c.startswith(("_scvi", "_sct"))]
    assert "_scvi_uuid" not in query.uns and "_scvi_manager_uuid" not in query.uns
    assert query.obsm["X_sctransformer"].shape == (query.n_obs, 32)


def test_an_untrained_model_and_an_empty_query(reference_and_query, trained):
    """Issue 13.4: no confident-looking output from random weights; zero cells give an empty result."""
    reference, query, _ = reference_and_query
    reference = reference.copy()
    sct.SCTransformer.setup_anndata(reference, layer="counts", labels_key="bulk_labels", regulons="collectri")
    untrained = sct.SCTransformer(reference, n_layers=1, d_model=16, n_heads=2, n_top_genes=0)
    for call in (untrained.predict, untrained.get_latent_representation, untrained.get_attention):
        with pytest.raises(RuntimeError, match=r"has not been trained.*model.train\(\)"):
            call(query)
    empty = query[:0].copy()
    assert trained.predict(empty).shape == (0,)
    assert trained.get_latent_representation(empty).shape == (0, 32)
    assert list(empty.obs.columns[-3:]) == [
        "sctransformer_prediction",
        "sctransformer_confidence",
        "sctransformer_novelty",
    ]
    with pytest.raises(ValueError, match="has no cells"):
        trained.get_attention(empty)


def test_saving_twice_names_overwrite(trained, tmp_path):
    """Issue 13.5."""
    trained.save(tmp_path / "model")
    with pytest.raises(FileExistsError, match="Pass overwrite=True"):
        trained.save(tmp_path / "model")
    trained.save(tmp_path / "model", overwrite=True)


def test_training_and_reading_are_quiet(reference_and_query, capsys, caplog):
    """Issue 13.7: no library chatter; one line saying what was trained and how it validates."""
    reference, query, _ = reference_and_query
    reference = reference.copy()
    sct.SCTransformer.setup_anndata(reference, layer="counts", labels_key="bulk_labels", regulons="collectri")
    model = sct.SCTransformer(reference, n_layers=1, d_model=16, n_heads=2, n_top_genes=0)
    with caplog.at_level(logging.INFO):
        model.train(max_epochs=2, enable_progress_bar=False)
        model.save(Path(os.environ.get("TMPDIR", "/tmp")) / "sct_quiet_model", overwrite=True)
        again = sct.SCTransformer.load(Path(os.environ.get("TMPDIR", "/tmp")) / "sct_quiet_model")
        again.predict(query.copy())
    printed = capsys.readouterr()
    text = printed.out + printed.err + caplog.text
    for noise in ("GPU available", "TPU available", "Tip:", "already downloaded", "Input AnnData not setup"):
        assert noise not in text, noise
    trained_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Trained SCTransformer")]
    assert len(trained_lines) == 1 and "validation" in trained_lines[0] and "macro-F1" in trained_lines[0]


def test_a_poor_model_is_reported(reference_and_query):
    """Issue 13.8: a model that has learned nothing says so."""
    reference = reference_and_query[0].copy()
    sct.SCTransformer.setup_anndata(reference, layer="counts", labels_key="bulk_labels", regulons="collectri")
    model = sct.SCTransformer(reference, n_layers=1, d_model=16, n_heads=2, n_top_genes=0)
    with pytest.warns(UserWarning, match=r"Validation macro-F1 is 0\.\d\d.*not to be trusted"):
        model.train(max_epochs=1, lr=0.0, enable_progress_bar=False)


class _Payload:
    """A pickle that runs a command when it is opened."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_opening_a_crafted_model_folder_runs_nothing(trained, reference_and_query, tmp_path):
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
    trained.save(crafted)
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


def test_a_model_folder_without_its_weights_is_called_incomplete(trained, tmp_path):
    """A missing weights file is an incomplete copy, not a file holding something other than tensors."""
    incomplete = tmp_path / "incomplete"
    trained.save(incomplete)
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
    """A 0.2.0 pretrained backbone keeps its masking policy and gives its encoder to a new model."""
    adata = sct.ds.pbmc68k_reduced()
    sct.SCTransformer.setup_anndata(adata, labels_key="louvain")
    model = sct.SCTransformer.from_pretrained(RELEASED / "format1_pretrained", adata, n_top_genes=0)
    assert model.pretraining_["masking"] == "mam" and "masked_expression" in model.module.objectives
    assert model.pretrained_from_["matched_genes"] == model.pretrained_from_["panel_genes"]


def test_cli_version_help_and_a_validation_summary(reference_and_query, tmp_path, capsys, caplog):
    """Issue 13.8: --version, readable help with defaults, and the validation figures of a trained model."""
    from sctransformer_tools import __version__

    with pytest.raises(SystemExit):
        main(["--version"])
    assert __version__ in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["annotate", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "``" not in help_text and "(default: None)" not in help_text
    from sctransformer_tools.model._training import MIN_STEPS

    assert f"(default: 8, or more on small references for at least {MIN_STEPS} optimiser steps" in help_text
    reference, query, _ = reference_and_query
    reference.write_h5ad(tmp_path / "ref.h5ad")
    query.write_h5ad(tmp_path / "query.h5ad")
    args = ["annotate", "--reference", str(tmp_path / "ref.h5ad"), "--labels-key", "bulk_labels", "--layer", "counts"]
    args += ["--query", str(tmp_path / "query.h5ad"), "--out", str(tmp_path / "out.h5ad"), "--max-epochs", "1"]
    with caplog.at_level(logging.INFO, logger="sctransformer_tools"), pytest.warns(UserWarning, match="Validation"):
        assert main([*args, "--no-progress-bar"]) == 0
    assert "validation" in caplog.text and "macro-F1" in caplog.text
    written = ad.read_h5ad(tmp_path / "out.h5ad")
    assert written.var_names.equals(query.var_names)
    assert not [c for c in written.obs.columns if c.startswith(("_scvi", "_sct"))]


def test_query_warnings_point_at_the_users_line(pbmc68k):
    """A gene-match warning names the line that called predict, not a line inside the package."""
    import warnings

    import sctransformer_tools as sct

    sct.SCTransformer.setup_anndata(pbmc68k, labels_key="bulk_labels")
    model = sct.SCTransformer(pbmc68k, n_layers=1, d_model=16, n_heads=2, n_top_genes=0)
    model.train(max_epochs=1, enable_progress_bar=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.predict(pbmc68k[:, :300].copy())
    match = [w for w in caught if "lacks" in str(w.message)]
    assert match and match[0].filename == __file__
