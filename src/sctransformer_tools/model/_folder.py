"""A model folder that holds tensors and plain data only: opening it never runs code from it.

A saved model (format 2) is two files:

- ``model.h5``: the model class, the package version, the gene names, the model's
  :class:`~sctransformer_tools.model.ModelSpec` and every saved attribute (the scvi-tools registry, calibration,
  novelty model, history ...), written and read with anndata's element I/O (:func:`anndata.io.write_elem`,
  :func:`anndata.io.read_elem`: arrays, tables, strings, numbers and dicts of them; no pickle);
- ``weights.safetensors``: the network's tensors (`safetensors <https://huggingface.co/docs/safetensors>`_, a
  format that holds tensors and nothing else).

Folders of earlier releases (format 1: ``model.json`` + ``arrays.npz`` + ``weights.pt``; format 0: a pickled
``model.pt``, opened only with ``allow_pickle=True``) are read by :mod:`sctransformer_tools.model._migrate`. ``model.save`` and ``load``
(:mod:`sctransformer_tools.model._save`) write and open folders through this module.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sctransformer_tools._constants import PACKAGE_VERSION

from ._migrate import EARLIER_FILES, FORMAT, not_tensors, read_earlier, require_file
from ._spec import ModelSpec

FORMAT_VERSION = 2
MODEL_FILE = "model.h5"
WEIGHTS_FILE = "weights.safetensors"
#: Attributes that are not saved: rebuilt by the constructor.
NOT_SAVED = ("init_params_",)


@dataclass
class SavedModel:
    """What a model folder holds.

    Attributes
    ----------
    model_class
        Name of the class that saved it.
    var_names
        The model's input genes, in order (strings).
    attributes
        Saved attributes (names ending in ``_``: ``registry_``, ``spec_``, ``calibration_`` ...).
    state_dict
        The network's tensors.
    """

    model_class: str
    var_names: pd.Index
    attributes: dict[str, Any]
    state_dict: dict[str, Any]

    def __post_init__(self):
        self.var_names = pd.Index(np.asarray(self.var_names).astype(str))

    @classmethod
    def of_model(cls, model) -> SavedModel:
        """What ``model.save`` writes, read from the model in memory (the network's tensors on the CPU)."""
        attributes = {
            name: value
            for name, value in vars(model).items()
            if name.endswith("_") and not name.startswith("_") and name not in NOT_SAVED
        }
        state_dict = {k: v.detach().cpu() for k, v in model.module.state_dict().items()}
        return cls(type(model).__name__, model.get_var_names(), attributes, state_dict)

    @property
    def registry(self) -> dict:
        """The scvi-tools registry (setup arguments and field states)."""
        return self.attributes["registry_"]

    @property
    def spec(self) -> ModelSpec:
        """The model's specification."""
        spec = self.attributes["spec_"]
        return spec if isinstance(spec, ModelSpec) else ModelSpec.from_dict(spec)


def _plain(value: Any) -> Any:
    """What anndata writes: a ModelSpec as its dict, tuples as lists."""
    if isinstance(value, ModelSpec):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return list(value)
    return value


def _native(value: Any) -> Any:
    """Python values for what anndata reads back (numpy scalars as numbers, string arrays as lists)."""
    if isinstance(value, dict):
        return {k: _native(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.dtype.kind in "OUS" and value.ndim == 1:
        return [str(v) for v in value]
    return value


def write_model_folder(dir_path: str | os.PathLike, saved: SavedModel, *, overwrite: bool = False) -> Path:
    """Write a model folder (see the module docstring).

    Raises
    ------
    FileExistsError
        When ``dir_path`` exists and holds files, unless ``overwrite``.
    """
    import h5py
    from anndata.io import write_elem
    from safetensors.torch import save_file

    path = Path(dir_path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{str(path)!r} is a file: pass a folder path to save the model into.")
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{str(path)!r} already exists and is not empty. Pass overwrite=True to replace the model saved "
            "there, or choose another folder."
        )
    path.mkdir(parents=True, exist_ok=True)
    with h5py.File(path / MODEL_FILE, "w") as f:
        f.attrs.update(format=FORMAT, format_version=FORMAT_VERSION, model_class=saved.model_class)
        f.attrs["package_version"] = PACKAGE_VERSION
        write_elem(f, "var_names", saved.var_names.to_numpy())
        write_elem(f, "attributes", _plain(saved.attributes))
    save_file({k: v.detach().cpu().contiguous() for k, v in saved.state_dict.items()}, path / WEIGHTS_FILE)
    for old in EARLIER_FILES:  # a folder of an earlier release, saved over
        (path / old).unlink(missing_ok=True)
    return path


def read_model_folder(dir_path: str | os.PathLike, model_class: str, *, allow_pickle: bool = False) -> SavedModel:
    """Read a model folder without executing anything from it.

    Parameters
    ----------
    dir_path
        Folder written by ``model.save``.
    model_class
        Class expected to have saved it.
    allow_pickle
        Also read a folder of the 0.1 releases (a pickled ``model.pt``). Unpickling runs whatever code the
        file names: only for folders you trust.

    Returns
    -------
    The :class:`SavedModel`.
    """
    path = Path(dir_path)
    if not path.exists():
        raise FileNotFoundError(f"Model folder {str(path)!r} does not exist. Save a model with `model.save(dir)`.")
    if not path.is_dir():
        raise NotADirectoryError(f"{str(path)!r} is a file; pass the folder that `model.save(dir)` wrote.")
    saved = _read_format_2(path) if (path / MODEL_FILE).exists() else read_earlier(path, allow_pickle, model_class)
    if saved is None:
        content = sorted(p.name for p in path.iterdir())[:5]
        raise ValueError(
            f"{str(path)!r} holds no saved {model_class} ({MODEL_FILE} missing; it contains {content or 'nothing'}). "
            "Pass the folder written by `model.save(dir)`."
        )
    found, var_names, attributes, state_dict = saved
    if found != model_class:
        raise ValueError(
            f"{str(path)!r} holds a saved {found or 'unknown'} model, not an {model_class}. "
            f"Load it with its own class, or pass a folder written by {model_class}.save()."
        )
    return SavedModel(found, var_names, attributes, state_dict)


def _read_format_2(path: Path) -> tuple:
    import h5py
    from anndata.io import read_elem
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        with h5py.File(path / MODEL_FILE, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise ValueError(f"{str(path / MODEL_FILE)!r} is not an sctransformer-tools model description.")
            version = int(f.attrs.get("format_version", 0))
            if version > FORMAT_VERSION:
                raise ValueError(
                    f"{str(path)!r} was saved in model format {version} by sctransformer-tools "
                    f"{f.attrs.get('package_version')}; this version reads format {FORMAT_VERSION}. Upgrade the package."
                )
            model_class = str(f.attrs["model_class"])
            var_names = read_elem(f["var_names"])
            attributes = _native(read_elem(f["attributes"]))
    except OSError as err:
        raise ValueError(f"{str(path / MODEL_FILE)!r} is not a readable model description: {err}") from err
    require_file(path / WEIGHTS_FILE)
    try:
        state_dict = load_file(path / WEIGHTS_FILE)
    except (OSError, SafetensorError) as err:
        raise not_tensors(path / WEIGHTS_FILE, f"{type(err).__name__}: {err}") from err
    return model_class, var_names, attributes, state_dict
