"""Bring a new dataset onto a trained model's genes."""

from __future__ import annotations

import os
import re
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

_ENSEMBL = re.compile(r"^ENS[A-Z]*[GT]\d{6,}(\.\d+)?$", re.IGNORECASE)
_VERSION = r"^(ENS[A-Z]*[GT]\d{6,})\.\d+$"


def gene_key(names: pd.Index) -> pd.Index:
    """Names as compared across datasets: stripped, upper case, Ensembl version suffix removed.

    Examples
    --------
    >>> import pandas as pd
    >>> from sctransformer_tools.model._query import gene_key
    >>> gene_key(pd.Index(["Actb", "ENSG00000075624.17", " CD3E"])).tolist()
    ['ACTB', 'ENSG00000075624', 'CD3E']
    """
    keys = pd.Index(names).astype(str).str.strip().str.upper()
    return pd.Index(keys.str.replace(_VERSION, r"\1", regex=True, flags=re.IGNORECASE))


def looks_like_ensembl(names: pd.Index, share: float = 0.5) -> bool:
    """Whether most names are Ensembl gene / transcript IDs."""
    names = pd.Index(names).astype(str)
    return len(names) > 0 and float(np.mean([bool(_ENSEMBL.match(n)) for n in names[:2000]])) >= share


def match_gene_names(query: pd.Index, model: pd.Index) -> tuple[pd.Index, dict]:
    """Rename query genes to the model's names where they differ only by case or an Ensembl version.

    Exact matches win; a query gene whose :func:`gene_key` equals exactly one model gene's takes that
    name, unless another query gene already has it.

    Returns
    -------
    The renamed query names and counts: ``n_exact``, ``n_case_or_version`` and ``n_ambiguous`` (query
    genes whose key matches several model genes or a model gene already matched, left unmatched).
    """
    query = pd.Index(query).astype(str)
    model = pd.Index(model).astype(str)
    exact = query.isin(model)
    renamed = query.to_numpy(dtype=object).copy()
    model_key = gene_key(model)
    unique_keys = ~model_key.duplicated(keep=False)
    by_key = pd.Series(model[unique_keys], index=model_key[unique_keys])
    taken = set(query[exact])
    n_fixed = n_ambiguous = 0
    candidates = np.flatnonzero(~exact)
    keys = gene_key(query[candidates])
    ambiguous_keys = set(model_key[~unique_keys])
    for i, key in zip(candidates, keys, strict=True):
        target = by_key.get(key)
        if target is None:
            n_ambiguous += key in ambiguous_keys
            continue
        if target in taken:
            n_ambiguous += 1
            continue
        renamed[i] = target
        taken.add(target)
        n_fixed += 1
    report = {"n_exact": int(exact.sum()), "n_case_or_version": n_fixed, "n_ambiguous": n_ambiguous}
    return pd.Index(renamed), report


def _better_columns(adata: AnnData, panel: pd.Index) -> list[tuple[str, float]]:
    """``var`` columns (and the index) ranked by the share of the panel they match."""
    panel_keys = set(gene_key(panel))
    found = []
    for column in adata.var.columns:
        values = adata.var[column]
        if values.dtype.kind not in "OSU" and not isinstance(values.dtype, pd.CategoricalDtype | pd.StringDtype):
            continue
        keys = set(gene_key(pd.Index(values.astype(str))))
        share = len(keys & panel_keys) / max(len(panel_keys), 1)
        if share > 0:
            found.append((column, share))
    return sorted(found, key=lambda item: -item[1])


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
    gene_symbols: str | None = None,
    min_panel_match: float = 0.05,
    library_size_key: str | None = None,
    inplace: bool = True,
) -> AnnData | None:
    """Align a query to a saved model's genes; see :meth:`SCTransformer.prepare_query_anndata`."""
    attr = saved[SAVE_KEYS.ATTR_DICT_KEY]
    setup_args = attr["registry_"][_SETUP_ARGS_KEY]
    var_names = pd.Index(saved[SAVE_KEYS.VAR_NAMES_KEY])
    panel_genes = pd.Index(attr["init_params_"]["non_kwargs"]["panel_genes"])
    layer = setup_args.get("layer")
    if gene_symbols is not None and gene_symbols not in adata.var:
        raise KeyError(
            f"gene_symbols={gene_symbols!r} is not a column of adata.var (columns: {list(adata.var.columns)[:20]})."
        )
    names = adata.var_names if gene_symbols is None else pd.Index(adata.var[gene_symbols].astype(str))
    if gene_symbols is None:
        check_var_names(adata)
    check_expression(adata, layer, setup_args.get("log_normalized", False))
    names, matching = match_gene_names(names, var_names)
    duplicated = names[names.duplicated(keep=False) & names.isin(var_names)].unique()
    if len(duplicated):
        source = "adata.var_names" if gene_symbols is None else f"adata.var[{gene_symbols!r}]"
        raise ValueError(
            f"{len(duplicated)} of the model's genes appear more than once in {source} (after matching case and "
            f"Ensembl versions), e.g. {duplicated[:5].tolist()}. Aggregate or remove the duplicates first: "
            "which copy to use is not something to guess."
        )
    n_shared = int(var_names.isin(names).sum())
    panel_present = panel_genes.isin(names)
    match_ratio = float(panel_present.mean())
    if match_ratio < min_panel_match:
        expected = "Ensembl IDs" if looks_like_ensembl(panel_genes) else "gene symbols"
        found = "Ensembl IDs" if looks_like_ensembl(names) else "names"
        hint = ""
        better = [(c, share) for c, share in _better_columns(adata, panel_genes) if c != gene_symbols]
        if better and better[0][1] > match_ratio:
            column, share = better[0]
            hint = f" adata.var[{column!r}] matches {share:.0%} of the panel: pass gene_symbols={column!r}."
        raise ValueError(
            f"The query measures {int(panel_present.sum()):,} of the model's {len(panel_genes):,} panel genes "
            f"({match_ratio:.1%}, below min_panel_match={min_panel_match:.0%}). The model expects {expected} such "
            f"as {list(panel_genes[:5])}; the query has {found} such as {list(names[:5])}.{hint or ''}"
            + (
                ""
                if hint
                else " If the query names genes differently (Ensembl IDs, another species), pass the var column "
                "holding the model's naming as gene_symbols=, or map the names first."
            )
            + " A query that truly measures few genes can be allowed with a lower min_panel_match."
        )
    # library sizes of the query as measured, before any gene is dropped or zero-filled
    library = library_sizes(adata, layer, library_size_key)
    renamed = adata
    if gene_symbols is not None or matching["n_case_or_version"]:
        known = names.isin(var_names)  # genes the model does not know are dropped anyway
        renamed = adata[:, known].copy()
        renamed.var_names = names[known]
    aligned, missing = pad_and_sort_genes(renamed, var_names)
    aligned.obs[ADATA_KEYS.LIBRARY_COLUMN] = library
    aligned.var[f"{ADATA_KEYS.QUERY}_zero_filled"] = missing
    n_missing_panel = int((~panel_present).sum())
    info = {
        "n_model_genes": len(var_names),
        "n_shared_genes": n_shared,
        "n_zero_filled_genes": int(missing.sum()),
        "n_panel_genes": len(panel_genes),
        "n_zero_filled_panel_genes": n_missing_panel,
        "panel_match_ratio": match_ratio,
        "n_dropped_query_genes": int((~names.isin(var_names)).sum()),
        "n_matched_by_case_or_version": matching["n_case_or_version"],
        "n_ambiguous_names": matching["n_ambiguous"],
        "gene_symbols": gene_symbols,
    }
    aligned.uns[ADATA_KEYS.QUERY] = info
    if matching["n_case_or_version"]:
        warnings.warn(
            f"{matching['n_case_or_version']:,} query genes matched the model's only after ignoring case or an "
            "Ensembl version suffix; they were renamed to the model's names.",
            UserWarning,
            stacklevel=3,
        )
    if missing.any():
        warnings.warn(
            f"The query lacks {int(missing.sum()):,} of the model's {len(var_names):,} genes, "
            f"{n_missing_panel:,} of them among its {len(panel_genes):,} panel genes "
            f"({match_ratio:.0%} of the panel is measured). They are zero-filled and, being never "
            "expressed, take no part in attention. Predictions rest on the genes the query has."
            + (
                " With under half of the panel measured, treat the calls as provisional: check them against "
                "marker genes, and compare with a model trained on the genes both datasets share "
                "(`reference[:, shared_genes]`)."
                if match_ratio < 0.5
                else ""
            ),
            UserWarning,
            stacklevel=3,
        )
    if not inplace:
        return aligned
    adata._init_as_actual(aligned)
    return None
