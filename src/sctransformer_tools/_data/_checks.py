"""Input checks that name the problem and the fix."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from ._matrix import get_matrix
from ._stack import user_stacklevel


def _values(matrix) -> np.ndarray:
    if sparse.issparse(matrix):
        return np.asarray(matrix.data)
    if hasattr(matrix, "to_memory"):  # backed / lazy arrays
        matrix = matrix.to_memory()
    return np.asarray(matrix).ravel()


def holds_whole_numbers(matrix, n_rows: int = 200) -> bool:
    """Whether the first ``n_rows`` rows of ``matrix`` hold non-negative whole numbers (a cheap check for counts).

    Examples
    --------
    >>> import numpy as np
    >>> from sctransformer_tools._data import holds_whole_numbers
    >>> holds_whole_numbers(np.array([[0.0, 3.0], [1.0, 0.0]])), holds_whole_numbers(np.log1p([[0.0, 3.0]]))
    (True, False)
    """
    values = np.asarray(_values(matrix[: min(n_rows, matrix.shape[0])]), dtype=np.float64)
    return bool(values.size == 0 or ((values >= 0).all() and np.allclose(values, np.round(values))))


def whole_number_sources(adata: AnnData, read: str | None) -> list[str | None]:
    """Where else ``adata`` holds whole numbers: its layers, and ``None`` for ``X``, other than ``read``."""
    sources: list[str | None] = [] if read is None or adata.X is None else [None]
    sources += [name for name in adata.layers if name != read]
    return [s for s in sources if holds_whole_numbers(adata.X if s is None else adata.layers[s])]


def _counts_fix(adata: AnnData, layer: str | None, what: str) -> str:
    """What to pass instead, for data read by a model trained on counts: the matrices that hold whole numbers."""
    found = whole_number_sources(adata, layer)
    cli = what == "the query"  # the command line's option for it
    if found:
        where = ", ".join("adata.X" if s is None else f"adata.layers[{s!r}]" for s in found)
        options = " or ".join(f"layer={s!r}" for s in found)
        fix = f"Whole numbers are in {where}: pass {options}"
        if cli and found[0] is not None:
            fix += f" (--query-layer {found[0]} on the command line)"
    else:
        others = ([] if layer is None else ["adata.X"]) + [
            f"adata.layers[{name!r}]" for name in adata.layers if name != layer
        ]
        fix = (
            f"No other matrix of {what} holds whole numbers ({', '.join(others) if others else 'it has no layers'}): put "
            "its raw counts in a layer (`adata.layers['counts'] = counts`) and pass layer='counts'"
            + (" (--query-layer counts on the command line)" if cli else "")
        )
        if adata.raw is not None and holds_whole_numbers(adata.raw.X):
            fix += "; adata.raw holds whole numbers (`adata.raw.to_adata()` is an AnnData of them)"
    return f"{fix}. If these are counts with fractional values (e.g. EM-resolved counts of alevin or kallisto), round them first."


def check_expression(
    adata: AnnData,
    layer: str | None,
    log_normalized: bool = False,
    *,
    what: str = "the reference",
    counts_required: bool = False,
    chunk: int = 10_000,
) -> None:
    """Check the expression matrix: finite, non-negative; integer counts unless ``log_normalized``.

    ``what`` names the data in messages. Non-integer values warn for a reference, which may be log-normalised
    (``log_normalized=True``); with ``counts_required`` (data read by a model trained on counts: a query) they are
    an error naming the layers that hold whole numbers, as negative values are.

    Raises
    ------
    ValueError
        On negative, NaN or infinite values, naming how many and where to look; on non-integer values when
        ``counts_required``.
    """
    where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    matrix = get_matrix(adata, layer)
    n_nonfinite = n_negative = n_fractional = 0
    for start in range(0, adata.n_obs, chunk):
        values = _values(matrix[start : start + chunk])
        if values.size == 0:
            continue
        finite = np.isfinite(values)
        n_nonfinite += int((~finite).sum())
        n_negative += int((values[finite] < 0).sum())
        if not log_normalized:
            n_fractional += int((np.abs(values[finite] - np.round(values[finite])) > 1e-6).sum())
    if n_nonfinite:
        raise ValueError(
            f"{where} holds {n_nonfinite:,} NaN or infinite values. Expression must be finite: fix or remove "
            "those cells/genes first (e.g. `np.nan_to_num`), or point `layer=` at the raw counts."
        )
    if counts_required and (n_negative or n_fractional):
        found = f"{n_negative:,} negative values" if n_negative else f"{n_fractional:,} non-integer values"
        looks = "scaled or centred (e.g. by sc.pp.scale)" if n_negative else "log-normalised or scaled"
        raise ValueError(
            f"{where} of {what} holds {found}: it looks {looks}, not raw counts. The model was trained on raw counts "
            f"and normalises them itself, so it does not read these values. {_counts_fix(adata, layer, what)}"
        )
    if n_negative:
        raise ValueError(
            f"{where} holds {n_negative:,} negative values: it looks scaled or centred (e.g. by sc.pp.scale), not "
            "counts. Point `layer=` at raw counts (or at log-normalised values with `log_normalized=True`)."
        )
    if n_fractional:
        warnings.warn(
            f"{where} of {what} holds {n_fractional:,} non-integer values; scTransformer expects raw counts. If the "
            "data are already log-normalised, pass `log_normalized=True` to setup_anndata.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )


def check_var_names(adata: AnnData) -> None:
    """Unique gene names."""
    if adata.var_names.has_duplicates:
        dup = adata.var_names[adata.var_names.duplicated()].unique()
        raise ValueError(
            f"adata.var_names has {len(dup)} duplicated gene name(s), e.g. {dup[:5].tolist()}. "
            "Run `adata.var_names_make_unique()` (or aggregate the duplicates) before setup_anndata."
        )


def check_labels(adata: AnnData, labels_key: str | None, unlabeled_category: str | None = None) -> int:
    """The labels column exists and holds at least two cell types; returns the number of labelled cells.

    Missing values, the strings of :data:`~sctransformer_tools._data._fields.MISSING_STRINGS` and
    ``unlabeled_category`` mark unlabelled cells.
    """
    from ._fields import MISSING_STRINGS

    if labels_key is None:
        raise ValueError(
            "labels_key is required: scTransformer learns to classify the cell types in adata.obs[labels_key]. "
            "To annotate a dataset without labels with a trained model, use "
            "`SCTransformer.prepare_query_anndata(query, model)` and `model.predict(query)`."
        )
    if labels_key not in adata.obs:
        raise KeyError(
            f"Labels column {labels_key!r} not found in adata.obs (columns: {list(adata.obs.columns)[:20]})."
        )
    labels = adata.obs[labels_key]
    text = labels.astype(str)
    labelled = labels.notna() & ~text.isin(MISSING_STRINGS)
    if unlabeled_category is not None:
        labelled &= text != str(unlabeled_category)
        if not (text == str(unlabeled_category)).any():
            warnings.warn(
                f"unlabeled_category={unlabeled_category!r} does not occur in adata.obs[{labels_key!r}] "
                f"(values: {sorted(pd.unique(text))[:8]}): every cell with a label is read as labelled.",
                UserWarning,
                stacklevel=4,
            )
    n_types = pd.unique(text[labelled]).size
    if n_types < 2:
        raise ValueError(
            f"adata.obs[{labels_key!r}] holds {n_types} cell type(s) among labelled cells; a classifier needs at "
            "least two. Check the column, or add reference cells of other types."
        )
    return int(labelled.sum())
