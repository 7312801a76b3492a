"""Let CellTypist 1.7 train with scikit-learn >= 1.8, which removed ``LogisticRegression(multi_class=...)``.

The package's CellTypist peer raises a clear error in that case; the study activates this shim explicitly
(``with celltypist_compat(): ...``) so that its CellTypist runs stay those of the records.
"""

from __future__ import annotations

import contextlib
import inspect
import sys

import numpy as np


class OneVsRestLogisticRegression:
    """``LogisticRegression(multi_class="ovr")`` as CellTypist builds it, for scikit-learn >= 1.8.

    One binary logistic regression per class (one for two classes), exactly what the removed option fitted,
    exposing the attributes CellTypist reads and edits (``coef_``, ``intercept_``, ``classes_``,
    ``n_features_in_``, ``decision_function``).

    Examples
    --------
    >>> import numpy as np
    >>> from harness.celltypist_compat import OneVsRestLogisticRegression
    >>> x = np.array([[0.0], [0.1], [1.0], [1.1], [2.0], [2.1]])
    >>> clf = OneVsRestLogisticRegression(multi_class="ovr", C=100.0).fit(x, ["a", "a", "b", "b", "c", "c"])
    >>> clf.coef_.shape, clf.predict(np.array([[0.05], [2.05]])).tolist()
    ((3, 1), ['a', 'c'])
    """

    def __init__(self, multi_class: str = "ovr", n_jobs: int | None = None, **kwargs):
        self.kwargs = kwargs

    def fit(self, x, y) -> OneVsRestLogisticRegression:
        from sklearn.linear_model import LogisticRegression

        y = np.asarray(y)
        self.classes_ = np.unique(y)
        positives = self.classes_[1:] if len(self.classes_) == 2 else self.classes_
        fits = [LogisticRegression(**self.kwargs).fit(x, y == c) for c in positives]
        self.coef_ = np.vstack([f.coef_ for f in fits])
        self.intercept_ = np.concatenate([f.intercept_ for f in fits])
        self.n_features_in_ = x.shape[1]
        return self

    def decision_function(self, x) -> np.ndarray:
        scores = np.asarray(x @ self.coef_.T) + self.intercept_
        return scores.ravel() if len(self.classes_) == 2 else scores

    def predict(self, x) -> np.ndarray:
        scores = self.decision_function(x)
        if scores.ndim == 1:
            return self.classes_[(scores > 0).astype(int)]
        return self.classes_[scores.argmax(1)]


def needed() -> bool:
    """Whether this scikit-learn lacks ``LogisticRegression(multi_class=...)``."""
    from sklearn.linear_model import LogisticRegression

    return "multi_class" not in inspect.signature(LogisticRegression).parameters


@contextlib.contextmanager
def celltypist_compat():
    """Within the block, CellTypist's training builds :class:`OneVsRestLogisticRegression` where needed."""
    if not needed():
        yield
        return
    try:
        import celltypist  # noqa: F401  # the module whose name is patched must be loaded
    except ImportError:
        yield
        return
    module = sys.modules["celltypist.train"]
    original = module.LogisticRegression
    module.LogisticRegression = OneVsRestLogisticRegression
    try:
        yield
    finally:
        module.LogisticRegression = original
