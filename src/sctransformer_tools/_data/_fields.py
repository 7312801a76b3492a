"""AnnData fields that tolerate what a new dataset brings: missing labels, unseen categories."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from anndata import AnnData
from scvi.data.fields import CategoricalObsField

#: Label strings read as "no label": what a missing value becomes when a column is cast to text.
MISSING_STRINGS = ("nan", "NaN", "NAN", "None", "none", "NA", "<NA>", "")


class TolerantCategoricalObsField(CategoricalObsField):
    """A categorical ``obs`` field whose missing values and unseen categories map to one extra code.

    The categories are learned at registration (sorted, missing values excluded); the extra code
    ``len(categories)`` stands for "no label" (labels: unlabelled cells, which the classifier does not learn
    from directly) or "unseen" (batches of a query dataset). Missing values are NaN/None, the strings of
    :data:`MISSING_STRINGS` (with a warning: ``"nan"`` is what a missing value becomes when a column is cast
    to text) and ``unlabeled_category`` (scANVI's convention). Transfer to a new AnnData never fails on a
    missing column or new categories; it warns with the count of cells affected instead.

    Parameters
    ----------
    registry_key
        Key of the field in the scvi-tools registry.
    obs_key
        Column of ``adata.obs``; ``None`` for no column (every cell gets code 0).
    what
        How to call the extra code in warnings ("unlabelled", "unseen batch").
    unlabeled_category
        A value of the column that marks cells without a label (e.g. ``"Unknown"``).
    """

    UNLABELED_CATEGORY_KEY = "unlabeled_category"

    def __init__(
        self, registry_key: str, obs_key: str | None, what: str = "unlabelled", unlabeled_category: str | None = None
    ) -> None:
        super().__init__(registry_key, obs_key)
        self._what = what
        self._unlabeled = None if unlabeled_category is None else str(unlabeled_category)

    def _missing(self, column: pd.Series, warn: bool = False) -> np.ndarray:
        """Cells without a value: NaN/None, a missing-value string or the unlabelled category."""
        text = column.astype(str)
        missing = column.isna().to_numpy()
        as_string = ~missing & text.isin(MISSING_STRINGS).to_numpy()
        if warn and as_string.any():
            found = sorted(pd.unique(text[as_string]).tolist())
            warnings.warn(
                f"{int(as_string.sum()):,} cells have obs[{self._original_attr_key!r}] = {found}, read as a missing "
                f"value: they are treated as {self._what}. If this is a real category, rename it.",
                UserWarning,
                stacklevel=4,
            )
        missing |= as_string
        if self._unlabeled is not None:
            missing |= (text == self._unlabeled).to_numpy()
        return missing

    def validate_field(self, adata: AnnData) -> None:
        """Nothing to check: a missing column is tolerated (all cells take the extra code)."""

    def _codes(self, adata: AnnData, categories: np.ndarray) -> np.ndarray:
        column = adata.obs[self._original_attr_key]
        values = column.astype(str).where(~self._missing(column), None)
        codes = pd.Categorical(values, categories=categories).codes
        return np.where(codes < 0, len(categories), codes).astype(np.int64)

    def register_field(self, adata: AnnData) -> dict:
        """Learn the categories and write integer codes to ``obs['_scvi_<key>']``."""
        if self.is_default:
            self._setup_default_attr(adata)
        column = adata.obs[self._original_attr_key]
        missing = self._missing(column, warn=not self.is_default)
        categories = np.asarray(sorted(pd.unique(column[~missing].astype(str))), dtype=object)
        adata.obs[self.attr_key] = self._codes(adata, categories)
        return {
            self.CATEGORICAL_MAPPING_KEY: categories,
            self.ORIGINAL_ATTR_KEY: self._original_attr_key,
            self.UNLABELED_CATEGORY_KEY: self._unlabeled,
        }

    def transfer_field(self, state_registry: dict, adata_target: AnnData, **kwargs) -> dict:
        """Apply the source categories to a new AnnData; absent column or new values get the extra code."""
        categories = np.asarray(state_registry[self.CATEGORICAL_MAPPING_KEY], dtype=object)
        if self.is_default:
            self._setup_default_attr(adata_target)
        self._unlabeled = state_registry.get(self.UNLABELED_CATEGORY_KEY, self._unlabeled)
        if self._original_attr_key in adata_target.obs:
            codes = self._codes(adata_target, categories)
            column = adata_target.obs[self._original_attr_key]
            unseen = ~self._missing(column) & (codes == len(categories))
            if unseen.any():
                new = pd.unique(adata_target.obs[self._original_attr_key][unseen].astype(str))[:5].tolist()
                warnings.warn(
                    f"{int(unseen.sum())} cells have values of obs[{self._original_attr_key!r}] the model has not seen "
                    f"(e.g. {new}); they are treated as {self._what}.",
                    UserWarning,
                    stacklevel=2,
                )
        else:
            codes = np.full(adata_target.n_obs, len(categories), dtype=np.int64)
        adata_target.obs[self.attr_key] = codes
        return {
            self.CATEGORICAL_MAPPING_KEY: categories,
            self.ORIGINAL_ATTR_KEY: self._original_attr_key,
            self.UNLABELED_CATEGORY_KEY: self._unlabeled,
        }

    def get_summary_stats(self, state_registry: dict) -> dict:
        """Number of categories (the extra code not counted)."""
        return {self.count_stat_key: len(state_registry[self.CATEGORICAL_MAPPING_KEY])}
