"""A model folder that holds tensors and plain data only: opening it never runs code from it.

A saved model is three files:

- ``model.json``: the model class, the package version, the gene names and every saved attribute (the
  scvi-tools registry, the constructor arguments, the gene panel, calibration, history ...) as JSON, with
  tables and arrays referenced by key;
- ``arrays.npz``: those arrays (numbers, booleans and strings; read with ``allow_pickle=False``);
- ``weights.pt``: the network's tensors (read with ``torch.load(weights_only=True)``, which refuses
  anything but tensors and plain containers).

Folders written by earlier versions hold one pickled ``model.pt`` (scvi-tools' format). Unpickling can
execute arbitrary code, so such a folder is refused unless the caller opts in with ``allow_pickle=True``.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._mudata import is_mudata, rna_modality

FORMAT = "sctransformer-tools model"
FORMAT_VERSION = 1
MODEL_JSON = "model.json"
ARRAYS_FILE = "arrays.npz"
WEIGHTS_FILE = "weights.pt"
LEGACY_FILE = "model.pt"
_TYPE = "__type__"


@dataclass
class SavedModel:
    """What a model folder holds.

    Attributes
    ----------
    model_class
        Name of the class that saved it.
    var_names
        The model's input genes, in order.
    attributes
        Saved attributes (names ending in ``_``: ``registry_``, ``init_params_``, ``panel_`` ...).
    state_dict
        The network's tensors.
    """

    model_class: str
    var_names: np.ndarray
    attributes: dict[str, Any]
    state_dict: dict[str, Any]

    @property
    def registry(self) -> dict:
        """The scvi-tools registry (setup arguments and field states)."""
        return self.attributes["registry_"]

    @property
    def init_params(self) -> dict:
        """Constructor arguments, as scvi-tools stores them (``kwargs`` / ``non_kwargs``)."""
        return self.attributes["init_params_"]


# ----------------------------------------------------------------------------- encoding
def _array_key(arrays: dict[str, np.ndarray], value: np.ndarray) -> str:
    key = f"a{len(arrays)}"
    arrays[key] = value
    return key


def _encode_array(value: np.ndarray, arrays: dict[str, np.ndarray], where: str) -> dict:
    if value.dtype.kind in "biufcU":
        return {_TYPE: "ndarray", "key": _array_key(arrays, value)}
    if value.dtype.kind == "O":
        flat = value.ravel()
        if all(isinstance(v, str) for v in flat):
            return {_TYPE: "ndarray", "key": _array_key(arrays, value.astype(str)), "object": True}
    raise TypeError(f"{where}: cannot save an array of dtype {value.dtype} as plain data (numbers and strings only).")


def to_plain(value: Any, arrays: dict[str, np.ndarray], where: str = "value") -> Any:
    """JSON-ready form of ``value``; arrays go into ``arrays`` and are referenced by key.

    Supported: ``None``, booleans, numbers, strings, paths (saved as strings), lists, tuples, dicts with
    string keys, numpy arrays and scalars, pandas DataFrames, Series, Indexes and Categoricals.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from sctransformer_tools.model._save import from_plain, to_plain
    >>> arrays = {}
    >>> frame = pd.DataFrame({"gene": ["CD3E", "MS4A1"], "is_tf": [False, True]}, index=["a", "b"])
    >>> plain = to_plain({"panel": frame, "temperature": np.float32(0.75)}, arrays)
    >>> back = from_plain(plain, arrays)
    >>> back["panel"].equals(frame), back["temperature"]
    (True, 0.75)
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, np.ndarray):
        return _encode_array(value, arrays, where)
    if isinstance(value, pd.Categorical):
        return {
            _TYPE: "Categorical",
            "codes": _encode_array(np.asarray(value.codes), arrays, where),
            "categories": to_plain(value.categories, arrays, where),
            "ordered": bool(value.ordered),
        }
    if isinstance(value, pd.Index):
        values = value.to_numpy()
        return {_TYPE: "Index", "values": _encode_array(values, arrays, where), "name": to_plain(value.name, arrays)}
    if isinstance(value, pd.Series):
        return {
            _TYPE: "Series",
            "index": to_plain(value.index, arrays, where),
            "values": _column(value, arrays, where),
            "name": to_plain(value.name, arrays, where),
        }
    if isinstance(value, pd.DataFrame):
        if not all(isinstance(c, str | int | np.integer) for c in value.columns):
            raise TypeError(f"{where}: DataFrame columns must be strings or integers to be saved.")
        return {
            _TYPE: "DataFrame",
            "index": to_plain(value.index, arrays, where),
            "columns": [to_plain(c, arrays, where) for c in value.columns],
            "data": [_column(value.iloc[:, i], arrays, f"{where}[{c!r}]") for i, c in enumerate(value.columns)],
        }
    if isinstance(value, list | tuple):
        return [to_plain(v, arrays, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if _TYPE in value:
            raise TypeError(f"{where}: a dict key may not be {_TYPE!r}.")
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise TypeError(f"{where}: dict keys must be strings to be saved, found {bad[:3]}.")
        return {k: to_plain(v, arrays, f"{where}[{k!r}]") for k, v in value.items()}
    raise TypeError(
        f"{where}: cannot save a {type(value).__name__} as plain data (numbers, strings, arrays and tables only)."
    )


def _column(series: pd.Series, arrays: dict[str, np.ndarray], where: str) -> dict:
    if isinstance(series.dtype, pd.CategoricalDtype):
        return to_plain(pd.Categorical(series), arrays, where)
    values = series.to_numpy()
    if values.dtype.kind == "O" and series.isna().any():
        raise TypeError(f"{where}: a text column with missing values cannot be saved as plain data.")
    return _encode_array(values, arrays, where)


def from_plain(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    """Inverse of :func:`to_plain`."""
    if isinstance(value, list):
        return [from_plain(v, arrays) for v in value]
    if not isinstance(value, dict):
        return value
    kind = value.get(_TYPE)
    if kind is None:
        return {k: from_plain(v, arrays) for k, v in value.items()}
    if kind == "ndarray":
        array = arrays[value["key"]]
        return array.astype(object) if value.get("object") else array
    if kind == "Categorical":
        categories = from_plain(value["categories"], arrays)
        return pd.Categorical.from_codes(from_plain(value["codes"], arrays), categories, ordered=value["ordered"])
    if kind == "Index":
        return pd.Index(from_plain(value["values"], arrays), name=value["name"])
    if kind == "Series":
        return pd.Series(
            from_plain(value["values"], arrays), index=from_plain(value["index"], arrays), name=value["name"]
        )
    if kind == "DataFrame":
        columns = [from_plain(c, arrays) for c in value["columns"]]
        data = {i: from_plain(d, arrays) for i, d in enumerate(value["data"])}
        frame = pd.DataFrame(data, index=from_plain(value["index"], arrays))
        frame.columns = pd.Index(columns) if columns else frame.columns
        return frame
    raise ValueError(f"Unknown saved value type {kind!r}: the model folder is damaged or from a newer version.")


# ------------------------------------------------------------------------------ files
def write_model_folder(
    dir_path: str | os.PathLike,
    *,
    model_class: str,
    package_version: str,
    var_names: np.ndarray,
    attributes: dict[str, Any],
    state_dict: dict[str, Any],
    overwrite: bool = False,
) -> Path:
    """Write a model folder (see the module docstring).

    Raises
    ------
    FileExistsError
        When ``dir_path`` exists and holds files, unless ``overwrite``.
    """
    import torch

    path = Path(dir_path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{str(path)!r} is a file: pass a folder path to save the model into.")
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{str(path)!r} already exists and is not empty. Pass overwrite=True to replace the model saved "
            "there, or choose another folder."
        )
    path.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_class": model_class,
        "package_version": package_version,
        "var_names": to_plain(np.asarray(var_names).astype(str), arrays, "var_names"),
        "attributes": {name: to_plain(value, arrays, name) for name, value in attributes.items()},
    }
    tensors = {k: v.detach().cpu() for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
    skipped = sorted(set(state_dict) - set(tensors))
    if skipped:
        raise TypeError(f"The network's state holds entries that are not tensors: {skipped[:5]}.")
    np.savez_compressed(path / ARRAYS_FILE, **arrays)
    torch.save(tensors, path / WEIGHTS_FILE)
    (path / MODEL_JSON).write_text(json.dumps(document, indent=1))
    legacy = path / LEGACY_FILE
    if legacy.exists():  # an overwritten folder of an earlier version: its pickle no longer applies
        legacy.unlink()
    return path


def _check_folder(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"Model folder {str(path)!r} does not exist. Save a model with `model.save(dir)`.")
    if not path.is_dir():
        raise NotADirectoryError(f"{str(path)!r} is a file; pass the folder that `model.save(dir)` wrote.")


def read_model_folder(dir_path: str | os.PathLike, model_class: str, *, allow_pickle: bool = False) -> SavedModel:
    """Read a model folder without executing anything from it.

    Parameters
    ----------
    dir_path
        Folder written by ``model.save``.
    model_class
        Class expected to have saved it.
    allow_pickle
        Also read a folder of an earlier version (a pickled ``model.pt``). Unpickling runs whatever code
        the file names: only for folders you trust.

    Returns
    -------
    The :class:`SavedModel`.
    """
    path = Path(dir_path)
    _check_folder(path)
    if (path / MODEL_JSON).exists():
        saved = _read_plain(path)
    elif (path / LEGACY_FILE).exists():
        if not allow_pickle:
            raise ValueError(
                f"{str(path)!r} holds a model saved by an earlier version of sctransformer-tools as a pickle "
                f"({LEGACY_FILE}). Opening a pickle can run arbitrary code, so it is not opened by default. If you "
                "trust where this folder came from, load it once with `allow_pickle=True` and save it again with "
                "`model.save(new_dir)`: the new folder holds only tensors and plain data."
            )
        saved = _read_legacy(path)
    else:
        content = sorted(p.name for p in path.iterdir())[:5]
        raise ValueError(
            f"{str(path)!r} holds no saved {model_class} ({MODEL_JSON} missing; it contains {content or 'nothing'}). "
            "Pass the folder written by `model.save(dir)`."
        )
    if saved.model_class != model_class:
        raise ValueError(
            f"{str(path)!r} holds a saved {saved.model_class or 'unknown'} model, not an {model_class}. "
            f"Load it with its own class, or pass a folder written by {model_class}.save()."
        )
    return saved


def _read_plain(path: Path) -> SavedModel:
    import torch

    try:
        document = json.loads((path / MODEL_JSON).read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{str(path / MODEL_JSON)!r} is not a readable model description: {err}") from err
    if document.get("format") != FORMAT:
        raise ValueError(f"{str(path / MODEL_JSON)!r} is not an sctransformer-tools model description.")
    if int(document.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(
            f"{str(path)!r} was saved in model format {document['format_version']} by sctransformer-tools "
            f"{document.get('package_version')}; this version reads format {FORMAT_VERSION}. Upgrade the package."
        )
    try:
        with np.load(path / ARRAYS_FILE, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise ValueError(f"{str(path / ARRAYS_FILE)!r} could not be read as plain arrays: {err}") from err
    try:
        state_dict = torch.load(path / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError or OSError depending on the damage
        raise ValueError(
            f"{str(path / WEIGHTS_FILE)!r} could not be read as tensors only ({type(err).__name__}: {err}). "
            "A model folder holds tensors and plain data; this file holds something else and was not opened."
        ) from err
    return SavedModel(
        model_class=document.get("model_class"),
        var_names=from_plain(document["var_names"], arrays),
        attributes={k: from_plain(v, arrays) for k, v in document["attributes"].items()},
        state_dict=state_dict,
    )


def _read_legacy(path: Path) -> SavedModel:
    """A pickled scvi-tools ``model.pt`` (earlier versions); the caller opted in to unpickling."""
    import torch
    from scvi.data._constants import _MODEL_NAME_KEY
    from scvi.model.base._constants import SAVE_KEYS

    try:
        saved = torch.load(path / LEGACY_FILE, map_location="cpu", weights_only=False)
    except Exception as err:  # any unpickling failure
        raise ValueError(f"{str(path / LEGACY_FILE)!r} could not be read as a saved model: {err}") from err
    attributes = dict(saved.get(SAVE_KEYS.ATTR_DICT_KEY, {}))
    state_dict = dict(saved.get(SAVE_KEYS.MODEL_STATE_DICT_KEY, {}))
    state_dict.pop("pyro_param_store", None)
    if "classifier.weight" in state_dict:  # the classification head moved into its objective
        for name in ("weight", "bias"):
            state_dict[f"objectives.classification.linear.{name}"] = state_dict.pop(f"classifier.{name}")
        n_labels = state_dict["objectives.classification.linear.weight"].shape[0]
        weights = state_dict.pop("class_weights", torch.ones(n_labels))
        state_dict["objectives.classification.class_weights"] = weights
    return SavedModel(
        model_class=attributes.get("registry_", {}).get(_MODEL_NAME_KEY),
        var_names=np.asarray(saved.get(SAVE_KEYS.VAR_NAMES_KEY)),
        attributes=attributes,
        state_dict=state_dict,
    )


# ------------------------------------------------------------------------------ model methods
class SaveLoadMixin:
    """``save`` and ``load`` through the pickle-free model folder."""

    def save(
        self,
        dir_path: str | os.PathLike,
        overwrite: bool = False,
        save_anndata: bool = False,
        **anndata_write_kwargs,
    ) -> None:
        """Save the model to a folder of tensors and plain data (see :mod:`sctransformer_tools.model._save`).

        Parameters
        ----------
        dir_path
            Folder to write (created if needed).
        overwrite
            Replace a model already saved in ``dir_path``; without it an existing, non-empty folder is an error.
        save_anndata
            Also write the registered AnnData (``adata.h5ad``; a MuData: ``mdata.h5mu``), loaded back by
            :meth:`load` without ``adata``.
        **anndata_write_kwargs
            Passed to :meth:`anndata.AnnData.write_h5ad`.

        Examples
        --------
        >>> import tempfile
        >>> import sctransformer_tools as sct
        >>> adata = sct.ds.pbmc68k_reduced()
        >>> sct.SCTransformer.setup_anndata(adata, labels_key="bulk_labels")
        >>> model = sct.SCTransformer(adata, n_layers=1, d_model=16, n_heads=2, n_top_genes=0)
        >>> folder = tempfile.mkdtemp()
        >>> model.save(folder, overwrite=True)
        >>> sorted(p.name for p in Path(folder).iterdir())
        ['arrays.npz', 'model.json', 'weights.pt']
        """
        from sctransformer_tools import __version__

        attributes = {
            name: value for name, value in vars(self).items() if name.endswith("_") and not name.startswith("_")
        }
        path = write_model_folder(
            dir_path,
            model_class=type(self).__name__,
            package_version=__version__,
            var_names=np.asarray(self.get_var_names()),
            attributes=attributes,
            state_dict=self.module.state_dict(),
            overwrite=overwrite,
        )
        if save_anndata:
            if self.adata is None:
                raise ValueError("This model holds no AnnData to save (it was loaded without data).")
            if is_mudata(self.adata):
                self.adata.write_h5mu(path / "mdata.h5mu", **anndata_write_kwargs)
            else:
                self.adata.write_h5ad(path / "adata.h5ad", **anndata_write_kwargs)

    @classmethod
    def load(
        cls,
        dir_path: str | os.PathLike,
        adata=None,
        *,
        accelerator: str = "auto",
        device: int | str = "auto",
        allow_pickle: bool = False,
    ):
        """Load a model saved with :meth:`save`, without running any code from its folder.

        Parameters
        ----------
        dir_path
            Folder written by ``model.save``.
        adata
            The reference (genes identical to the model's; a MuData for a model set up with
            :meth:`~sctransformer_tools.SCTransformer.setup_mudata`): it is registered with the model, which can then
            read it by default and train further. Any other AnnData (a query) is not registered; pass it to
            :meth:`predict` & co. ``None``: the AnnData saved with the model (``save_anndata=True``), if any.
        accelerator, device
            Where to put the network (Lightning's names, e.g. ``"cpu"``, ``"gpu"``).
        allow_pickle
            Also read a folder written by an earlier version of the package (one pickled ``model.pt``).
            Opening a pickle can run arbitrary code: only for folders you trust, and then save the model
            again to get a pickle-free folder.

        Returns
        -------
        The model, in evaluation mode.

        Sets the following fields (when ``adata`` is the reference)
        ----------------------------------------------------------
        ``adata.obs["_scvi_labels"]``, ``adata.obs["_scvi_batch"]``, ``adata.obs["_sct_library_size"]``
            As :meth:`setup_anndata`.
        """
        import anndata as ad
        from scvi.data._constants import _SETUP_ARGS_KEY, _SETUP_METHOD_NAME
        from scvi.model._utils import parse_device_args

        from ._quiet import quiet_scvi

        saved = read_model_folder(dir_path, cls.__name__, allow_pickle=allow_pickle)
        _, _, torch_device = parse_device_args(
            accelerator=accelerator, devices=device, return_device="torch", validate_single_device=True
        )
        attributes = dict(saved.attributes)
        registry = attributes.pop("registry_")
        init_params = attributes.pop("init_params_")
        if adata is None and (Path(dir_path) / "adata.h5ad").exists():
            adata = ad.read_h5ad(Path(dir_path) / "adata.h5ad")
        elif adata is None and (Path(dir_path) / "mdata.h5mu").exists():
            import mudata

            adata = mudata.read_h5mu(Path(dir_path) / "mdata.h5mu")
        var_names = pd.Index(np.asarray(saved.var_names).astype(str))
        setup = registry.get(_SETUP_METHOD_NAME, "setup_anndata")
        register = adata is not None and (setup == "setup_mudata") == is_mudata(adata)
        if register:  # the reference itself: same kind of object, same genes
            genes = adata.mod[rna_modality(adata, registry[_SETUP_ARGS_KEY])] if is_mudata(adata) else adata
            register = pd.Index(genes.var_names.astype(str)).equals(var_names)
        if register:
            with quiet_scvi():
                getattr(cls, setup)(adata, source_registry=registry, **registry[_SETUP_ARGS_KEY])
        kwargs = {k: v for group in init_params.get("kwargs", {}).values() for k, v in group.items()}
        model = cls.__new__(cls)
        if not register:  # no data: the model's genes come from the folder (see SCTransformer.get_var_names)
            model._saved_var_names = np.asarray(var_names)
        model.__init__(adata if register else None, registry=registry, **init_params["non_kwargs"], **kwargs)
        for name, value in attributes.items():
            setattr(model, name, value)
        model.init_params_ = init_params
        model._restore_pretraining_objective()
        model.module.load_state_dict(saved.state_dict)
        model.to_device(torch_device)
        model.module.eval()
        if register:
            with quiet_scvi():
                model._validate_anndata(adata)
        return model
