"""MuData input: the model reads the RNA modality; results go to the MuData and to its RNA modality.

A MuData registered with :meth:`SCTransformer.setup_mudata` is trained through scvi-tools' MuData fields
(counts from ``mdata.mod[rna]``, labels and batches from ``mdata.obs`` or a modality's ``obs``). Every method
that *reads* cells (``predict``, ``get_latent_representation``, ``get_attention``, query preparation) sees a
MuData as its RNA modality: a lightweight AnnData that shares the modality's matrices, with the modality's
``obs`` joined to the MuData's own (global) columns. What the method writes there is then written to both the
MuData and its RNA modality, so that ``mu.pl.umap(mdata, ...)`` and ``sc.pl.umap(mdata["rna"], ...)`` find it.
The other modalities are never read.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scvi.data._constants import _SETUP_ARGS_KEY, _SETUP_METHOD_NAME

#: The ``modalities`` key naming the RNA modality (scvi-tools' convention: the argument it applies to).
RNA = "rna_layer"


def is_mudata(data: Any) -> bool:
    """``data`` is a MuData (imported lazily: mudata is only needed when one is passed)."""
    from mudata import MuData

    return isinstance(data, MuData)


def rna_modality(mdata, setup_args: dict | None = None) -> str:
    """Name of the modality the model reads.

    The one the model was set up with (``modalities["rna_layer"]``), else ``"rna"``.
    """
    name = None
    if setup_args is not None:
        name = (setup_args.get("modalities") or {}).get(RNA)
    name = name or "rna"
    if name not in mdata.mod:
        raise KeyError(
            f"The MuData has no modality {name!r} (it has {list(mdata.mod)}): the model reads RNA counts. Name the RNA "
            f"modality with modalities={{'rna_layer': ...}} in setup_mudata, or pass the modality itself "
            f"(mdata.mod[...]) as an AnnData."
        )
    return name


def counts_layer(setup_args: dict) -> str | None:
    """Layer of the reference's counts (``layer`` of setup_anndata, ``rna_layer`` of setup_mudata)."""
    return setup_args.get("rna_layer") if "modalities" in setup_args else setup_args.get("layer")


def expression_view(mdata, modality: str) -> AnnData:
    """The RNA modality as an AnnData sharing its matrices, with the MuData's global ``obs`` columns joined.

    Columns that a MuData pulls from its modalities (``"rna:cell_type"``) are left out: the modality's own
    columns are there under their own names.
    """
    rna = mdata.mod[modality]
    prefixes = tuple(f"{name}:" for name in mdata.mod)
    own = [c for c in mdata.obs.columns if not str(c).startswith(prefixes) and c not in rna.obs.columns]
    obs = rna.obs.copy()
    if own:
        obs = obs.join(mdata.obs.loc[rna.obs_names, own])
    uns = dict(rna.uns)
    uns.update({k: v for k, v in mdata.uns.items() if str(k).endswith("_colors") and k not in uns})
    return AnnData(X=rna.X, obs=obs, var=rna.var, layers=dict(rna.layers), uns=uns)


def _snapshot(view: AnnData) -> dict:
    return {
        "obs": {c: view.obs[c].copy() for c in view.obs.columns},
        "obsm": dict(view.obsm),
        "uns": dict(view.uns),
    }


def write_back(view: AnnData, before: dict, mdata, modality: str) -> None:
    """Write what a method added or changed in ``view`` to the MuData and its RNA modality."""
    rna = mdata.mod[modality]
    same_cells = mdata.obs_names.equals(rna.obs_names)
    for column in view.obs.columns:
        old = before["obs"].get(column)
        if old is not None and old.equals(view.obs[column]):
            continue
        values = view.obs[column]
        rna.obs[column] = values.to_numpy() if not isinstance(values.dtype, pd.CategoricalDtype) else values.values
        mdata.obs[column] = values if same_cells else values.reindex(mdata.obs_names)
    for key, value in view.obsm.items():
        if before["obsm"].get(key) is value:
            continue
        rna.obsm[key] = value
        if same_cells:
            mdata.obsm[key] = value
        else:  # cells without RNA get NaN rows
            padded = np.full((mdata.n_obs, *np.shape(value)[1:]), np.nan, dtype=np.float32)
            padded[mdata.obs_names.get_indexer(rna.obs_names)] = value
            mdata.obsm[key] = padded
    for key, value in view.uns.items():
        if before["uns"].get(key) is value:
            continue
        rna.uns[key] = value
        mdata.uns[key] = value


def rna_of(data, registry: dict) -> AnnData:
    """The AnnData that holds a model's genes: ``data`` itself, or a MuData's RNA modality (per the registry)."""
    return data.mod[rna_modality(data, registry[_SETUP_ARGS_KEY])] if is_mudata(data) else data


def reads_mudata(method: Callable) -> Callable:
    """Let a method that reads cells (first argument ``adata``) take a MuData as well (see the module docstring)."""

    @functools.wraps(method)
    def wrapper(self, adata=None, *args, **kwargs):
        target = self.adata if adata is None else adata
        if target is None or not is_mudata(target):
            return method(self, adata, *args, **kwargs)
        modality = rna_modality(target, self.registry_[_SETUP_ARGS_KEY] if _is_mudata_model(self) else None)
        view = expression_view(target, modality)
        before = _snapshot(view)
        result = method(self, view, *args, **kwargs)
        write_back(view, before, target, modality)
        return result

    return wrapper


def _is_mudata_model(model) -> bool:
    return model.registry_.get(_SETUP_METHOD_NAME) == "setup_mudata"
