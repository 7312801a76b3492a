"""Warnings that point at the user's line, however deep in the package they are raised."""

from __future__ import annotations

import contextlib
import functools
import sys
from pathlib import Path

_PACKAGE = str(Path(__file__).resolve().parents[1])
#: Frames a warning passes through on its way out: the package's own, and the standard wrappers it uses.
_INTERNAL = (_PACKAGE, str(Path(contextlib.__file__).resolve()), str(Path(functools.__file__).resolve()))


def user_stacklevel() -> int:
    """``stacklevel`` for :func:`warnings.warn` in the calling function that names the first frame outside the package.

    Examples
    --------
    >>> from sctransformer_tools._data import user_stacklevel
    >>> user_stacklevel()  # called from outside the package: the caller's own line
    1
    """
    frame = sys._getframe(1)
    level = 1
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(_INTERNAL):
        frame = frame.f_back
        level += 1
    return level
