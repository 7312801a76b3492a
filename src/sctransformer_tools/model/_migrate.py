"""Model folders written by earlier releases, read into today's :class:`~sctransformer_tools.model._folder.SavedModel`.

- format 1 (0.2.0): ``model.json`` (attributes as JSON, tables and arrays referenced by key), ``arrays.npz``
  (read with ``allow_pickle=False``) and ``weights.pt`` (read with ``torch.load(weights_only=True)``);
- format 0 (0.1.x): one pickled ``model.pt`` (scvi-tools' format), read only with ``allow_pickle=True``.

Both kept the network's definition in the constructor arguments (``init_params_``: the panel genes and the
regulon edges, the mask and the settings); :func:`spec_from_init_params` turns them into a
:class:`~sctransformer_tools.model.ModelSpec`. Their models had no expression profile.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._spec import DEFAULTS, ModelSpec

MODEL_JSON = "model.json"
ARRAYS_FILE = "arrays.npz"
WEIGHTS_FILE = "weights.pt"
LEGACY_FILE = "model.pt"
#: The files of an earlier release's folder: removed when a model is saved over it.
EARLIER_FILES = (MODEL_JSON, ARRAYS_FILE, WEIGHTS_FILE, LEGACY_FILE)
#: The name every model folder's description gives its format (format 1: in model.json; 2: in model.h5).
FORMAT = "sctransformer-tools model"
_TYPE = "__type__"


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


def require_file(path: Path) -> None:
    """A model folder's file exists (a missing file is an incomplete copy, not a file holding something else)."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(path)!r} is missing: the model folder is incomplete. Copy the whole folder that `model.save(dir)` "
            "wrote."
        )


def not_tensors(path: Path, why: str) -> ValueError:
    """The error for a weights file that is not tensors only (it was not opened)."""
    return ValueError(
        f"{str(path)!r} could not be read as tensors only ({why}) and was not opened: it holds something other than "
        "tensors, or is damaged. A model folder holds tensors and plain data only; take the folder from a source you "
        "trust, or save the model again with `model.save(dir)` where it was trained."
    )


def read_earlier(path: Path, allow_pickle: bool, model_class: str) -> tuple | None:
    """Model class, gene names, today's attributes and tensors of an earlier release's folder; ``None`` when
    ``path`` holds none. A pickle (format 0) is opened only with ``allow_pickle``. The attributes are upgraded only
    for a folder of ``model_class`` (a folder of another class is named by the caller, not migrated).
    """
    if (path / MODEL_JSON).exists():
        found, var_names, attributes, state_dict = read_format_1(path)
    elif (path / LEGACY_FILE).exists():
        if not allow_pickle:
            raise ValueError(
                f"{str(path)!r} holds a model saved by sctransformer-tools 0.1 as a pickle ({LEGACY_FILE}). A pickle "
                "can run arbitrary code when opened, so it is not opened by default. If you trust where this folder "
                "came from, load it once with `allow_pickle=True` and save it again with `model.save(new_dir)`: the "
                "new folder holds only tensors and plain data."
            )
        found, var_names, attributes, state_dict = read_format_0(path)
    else:
        return None
    return found, var_names, upgrade_attributes(attributes) if found == model_class else attributes, state_dict


def read_format_1(path: Path) -> tuple:
    """Model class, gene names, attributes and tensors of a format-1 folder (nothing executed)."""
    import torch

    try:
        document = json.loads((path / MODEL_JSON).read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{str(path / MODEL_JSON)!r} is not a readable model description: {err}") from err
    if document.get("format") != FORMAT:
        raise ValueError(f"{str(path / MODEL_JSON)!r} is not an sctransformer-tools model description.")
    try:
        with np.load(path / ARRAYS_FILE, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise ValueError(f"{str(path / ARRAYS_FILE)!r} could not be read as plain arrays: {err}") from err
    require_file(path / WEIGHTS_FILE)
    try:
        state_dict = torch.load(path / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError or OSError depending on the damage
        # torch's own message advises retrying with weights_only=False, which would run whatever the file names:
        # it is neither repeated nor chained; only the object the file refers to, when torch names it
        named = re.search(r"GLOBAL ([\w.]+)", str(err))
        refers = f", it refers to {named.group(1)}" if named else ""
        raise not_tensors(path / WEIGHTS_FILE, f"{type(err).__name__}{refers}") from None
    attributes = {k: from_plain(v, arrays) for k, v in document["attributes"].items()}
    return document.get("model_class"), from_plain(document["var_names"], arrays), attributes, state_dict


def read_format_0(path: Path) -> tuple:
    """Model class, gene names, attributes and tensors of a pickled 0.1.x ``model.pt``; the caller opted in to
    unpickling.
    """
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
    model_class = attributes.get("registry_", {}).get(_MODEL_NAME_KEY)
    return model_class, np.asarray(saved.get(SAVE_KEYS.VAR_NAMES_KEY)), attributes, state_dict


def spec_from_init_params(init_params: dict, panel: pd.DataFrame | None) -> ModelSpec:
    """The :class:`~sctransformer_tools.model.ModelSpec` of a model saved by an earlier release."""
    non_kwargs = dict(init_params["non_kwargs"])
    module_kwargs = dict(init_params.get("kwargs", {}).get("module_kwargs", {}))
    genes = pd.Index(np.asarray(non_kwargs["panel_genes"], dtype=str))
    if panel is None:  # 0.1.x kept no panel table: symbols are the gene names, TFs the edges' sources
        panel = pd.DataFrame({"symbol": genes.to_numpy(dtype=object)}, index=pd.Index(genes, name="gene"))
    panel = panel.loc[genes].copy()
    edges = pd.DataFrame(non_kwargs["regulons"]).reset_index(drop=True)
    if "is_tf" not in panel:
        panel["is_tf"] = panel.index.isin(edges["source"])
    if "is_regulon_gene" not in panel:
        panel["is_regulon_gene"] = panel.index.isin(edges["source"]) | panel.index.isin(edges["target"])
    panel["is_profile_gene"] = False
    settings = {k: non_kwargs[k] for k in DEFAULTS if k in non_kwargs}
    settings["profile_components"] = 0
    settings["size_factors"] = "library"  # what the released versions did
    settings["module_kwargs"] = module_kwargs
    return ModelSpec.from_dict(
        {"mask": non_kwargs.get("mask", "grn"), "panel": panel, "edges": edges, "settings": settings}
    )


def upgrade_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """Today's names and layout for the attributes of an earlier release's model."""
    attributes = dict(attributes)
    init_params = attributes.pop("init_params_")
    attributes["spec_"] = spec_from_init_params(init_params, attributes.pop("panel_", None)).to_dict()
    attributes.pop("mask_", None)
    colors = attributes.get("label_colors_")
    if isinstance(colors, dict):  # keyed by cell type, in the classifier's order
        attributes["label_colors_"] = list(colors.values())
    done = attributes.get("pretraining_")
    if done:
        attributes["objectives_"] = {
            "masked_expression": {
                "masking": done["masking"],
                "mask_ratio": done["mask_ratio"],
                **done.get("objective_kwargs", {}),
            }
        }
        if isinstance(done.get("sources"), list):
            done["sources"] = pd.DataFrame(done["sources"])
    return attributes
