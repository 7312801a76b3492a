"""Names that left the public API in 0.2: a module ``__getattr__`` that still serves them for a release, warning."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable


def deprecated_names(
    module: str, moved: dict[str, str], removed: dict[str, str] | None = None
) -> Callable[[str], object]:
    """A module ``__getattr__``: ``moved`` maps an old name to ``"module:attribute"`` (returned with a
    :class:`FutureWarning`); ``removed`` maps an old name to the message of the :class:`AttributeError` it raises.
    """

    def __getattr__(name: str):
        if name in moved:
            target_module, _, attribute = moved[name].partition(":")
            warnings.warn(
                f"{module}.{name} is no longer public and will be removed in the next release; "
                f"it now lives in {target_module}.{attribute}.",
                FutureWarning,
                stacklevel=2,
            )
            return getattr(importlib.import_module(target_module), attribute)
        if removed and name in removed:
            raise AttributeError(f"{module}.{name} was removed: {removed[name]}")
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
