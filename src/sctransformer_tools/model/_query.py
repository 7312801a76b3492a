"""Bring a new dataset onto a trained model's genes."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse
from scvi.data._constants import _MODEL_NAME_KEY, _SETUP_ARGS_KEY
from scvi.model.base._constants import SAVE_KEYS

from sctransformer_tools._constants import ADATA_KEYS

from ._checks import check_expression, check_var_names, library_sizes


def saved_model_file(dir_path: str | os.PathLike, model_name: str = "SCTransformer") -> Path:
    """Path of the saved model inside ``dir_path``, with errors for a missing, empty or foreign folder."""
    path = Path(dir_path)
    if not path.exists():
        raise FileNotFoundError(f"Model directory {str(path)!r} does not exist. Save a model with `model.save(dir)`.")
    if not path.is_dir():
        raise NotADirectoryError(f"{str(path)!r} is a file; pass the directory that `model.save(dir)` wrote.")
    model_file = path / SAVE_KEYS.MODEL_FNAME
    if not model_file.exists():
        content = sorted(p.name for p in path.iterdir())[:5]
        raise ValueError(
            f"{str(path)!r} holds no saved {model_name} ({SAVE_KEYS.MODEL_FNAME} missing; it contains "
            f"{content or 'nothing'}). Pass the directory written by `model.save(dir)`."
        )
    return model_file


def load_saved(dir_path: str | os.PathLike, model_name: str = "SCTransformer") -> dict:
    """The saved dictionary of a model directory, checked to come from ``model_name``."""
    import torch

    model_file = saved_model_file(dir_path, model_name)
    try:
        saved = torch.load(model_file, map_location="cpu", weights_only=False)
    except Exception as err:
        raise ValueError(f"{str(model_file)!r} could not be read as a saved model: {err}") from err
    registry = saved.get(SAVE_KEYS.ATTR_DICT_KEY, {}).get("registry_", {})
    found = registry.get(_MODEL_NAME_KEY)
    if found != model_name:
        raise ValueError(
            f"{str(dir_path)!r} holds a saved {found or 'unknown'} model, not an {model_name}. "
            f"Load it with its own class, or pass a directory written by {model_name}.save()."
        )
    return saved


def pad_and_sort_genes(adata: AnnData, var_names: pd.Index) -> tuple[AnnData, np.ndarray]:
    """Return ``adata`` with exactly ``var_names`` (in order), genes it lacks zero-filled.

    Returns
    -------
    The aligned AnnData (a new object) and a boolean array, True for zero-filled genes.
    """
    missing = ~var_names.isin(adata.var_names)
    if missing.any():
        filler = sparse.csr_matrix((adata.n_obs, int(missing.sum())), dtype=np.float32)
        pad = AnnData(
            X=filler.copy(),
            obs=pd.DataFrame(index=adata.obs_names),
            var=pd.DataFrame(index=var_names[missing]),
            layers={layer: filler.copy() for layer in adata.layers},
        )
        adata = ad.concat([adata, pad], axis=1, join="outer", merge="first", uns_merge="first")
    return adata[:, var_names].copy(), missing


def prepare_query(
    adata: AnnData,
    saved: dict,
    *,
    library_size_key: str | None = None,
    inplace: bool = True,
) -> AnnData | None:
    """Align a query to a saved model's genes; see :meth:`SCTransformer.prepare_query_anndata`."""
    attr = saved[SAVE_KEYS.ATTR_DICT_KEY]
    setup_args = attr["registry_"][_SETUP_ARGS_KEY]
    var_names = pd.Index(saved[SAVE_KEYS.VAR_NAMES_KEY])
    panel_genes = pd.Index(attr["init_params_"]["non_kwargs"]["panel_genes"])
    layer = setup_args.get("layer")
    check_var_names(adata)
    check_expression(adata, layer, setup_args.get("log_normalized", False))
    n_shared = int(var_names.isin(adata.var_names).sum())
    panel_present = panel_genes.isin(adata.var_names)
    if not panel_present.any():
        raise ValueError(
            f"The query shares none of the model's {len(panel_genes):,} panel genes (and {n_shared} of its "
            f"{len(var_names):,} genes). The model expects gene names like {list(panel_genes[:5])}; the query has "
            f"{list(adata.var_names[:5])}. If the query uses Ensembl IDs or another naming, set var_names to the "
            "same gene symbols first (e.g. `query.var_names = query.var['gene_symbols']`)."
        )
    # library sizes of the query as measured, before any gene is dropped or zero-filled
    library = library_sizes(adata, layer, library_size_key)
    aligned, missing = pad_and_sort_genes(adata, var_names)
    aligned.obs[ADATA_KEYS.LIBRARY_COLUMN] = library
    aligned.var[f"{ADATA_KEYS.QUERY}_zero_filled"] = missing
    n_missing_panel = int((~panel_present).sum())
    info = {
        "n_model_genes": len(var_names),
        "n_shared_genes": n_shared,
        "n_zero_filled_genes": int(missing.sum()),
        "n_panel_genes": len(panel_genes),
        "n_zero_filled_panel_genes": n_missing_panel,
        "panel_match_ratio": float(panel_present.mean()),
        "n_dropped_query_genes": int((~adata.var_names.isin(var_names)).sum()),
    }
    aligned.uns[ADATA_KEYS.QUERY] = info
    if missing.any():
        warnings.warn(
            f"The query lacks {int(missing.sum()):,} of the model's {len(var_names):,} genes, "
            f"{n_missing_panel:,} of them among its {len(panel_genes):,} panel genes "
            f"({info['panel_match_ratio']:.0%} of the panel is measured). They are zero-filled and, being never "
            "expressed, take no part in attention. Predictions rest on the genes the query has.",
            UserWarning,
            stacklevel=3,
        )
    if not inplace:
        return aligned
    adata._init_as_actual(aligned)
    return None
