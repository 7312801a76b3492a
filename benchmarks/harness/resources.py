"""Wall time and peak resident memory (RSS) of a block of code, without extra dependencies."""

from __future__ import annotations

import os
import platform
import re
import resource
import sys
import threading
import time
from pathlib import Path

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_STATM = Path("/proc/self/statm")


def current_rss_mb() -> float | None:
    """Resident set size of this process now, in MB (``None`` where ``/proc`` is unavailable).

    Returns
    -------
    RSS in megabytes (10^6 bytes).

    Examples
    --------
    >>> from harness.resources import current_rss_mb
    >>> rss = current_rss_mb()
    >>> rss is None or rss > 1
    True
    """
    try:
        return int(_STATM.read_text().split()[1]) * _PAGE / 1e6
    except (OSError, IndexError, ValueError):
        return None


def max_rss_mb() -> float:
    """Peak RSS of this process since it started (``getrusage``), in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e6 if sys.platform == "darwin" else peak * 1024 / 1e6  # bytes on macOS, KiB on Linux


class ResourceMonitor:
    """Measure wall time and peak RSS of a ``with`` block.

    The process's RSS is sampled every ``interval`` seconds by a background thread (reading
    ``/proc/self/statm``), so the peak is that of the block, not of the whole process history as
    ``getrusage`` would give. The peak includes everything the process holds (interpreter, libraries,
    data: a few hundred MB before any model); ``peak_delta_mb`` is the rise above the RSS at entry.
    Without ``/proc`` (macOS, Windows) ``peak_mb`` falls back to ``getrusage``'s lifetime peak.

    Parameters
    ----------
    interval
        Seconds between samples.

    Examples
    --------
    >>> import numpy as np
    >>> from harness.resources import ResourceMonitor
    >>> with ResourceMonitor(interval=0.005) as usage:
    ...     block = np.ones((2000, 2000))  # 32 MB
    >>> usage.seconds > 0 and usage.peak_mb >= usage.start_mb
    True
    """

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.seconds = 0.0
        self.start_mb: float | None = None
        self.peak_mb: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def peak_delta_mb(self) -> float | None:
        """Peak RSS minus RSS at entry, in MB."""
        if self.peak_mb is None or self.start_mb is None:
            return None
        return max(self.peak_mb - self.start_mb, 0.0)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            rss = current_rss_mb()
            if rss is not None and (self.peak_mb is None or rss > self.peak_mb):
                self.peak_mb = rss

    def __enter__(self) -> ResourceMonitor:
        self.start_mb = current_rss_mb()
        self.peak_mb = self.start_mb
        if self.start_mb is not None:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self._t0
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            end = current_rss_mb()
            if end is not None and (self.peak_mb is None or end > self.peak_mb):
                self.peak_mb = end
        else:
            self.peak_mb = max_rss_mb()


def machine() -> dict:
    """CPU model, whether it multiplies bfloat16 natively, torch version and threads."""
    import torch

    model = platform.processor()
    flags = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        text = cpuinfo.read_text()
        found = re.search(r"^model name\s*:\s*(.+)$", text, flags=re.M)
        model = found.group(1).strip() if found else model
        found = re.search(r"^flags\s*:\s*(.+)$", text, flags=re.M)
        flags = found.group(1) if found else ""
    return {
        "cpu": model,
        "native_bf16": bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags)),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def use_threads(n: int) -> None:
    """Run this process on ``n`` threads: torch's, the BLAS libraries' and numba's.

    numba's OpenMP threading layer (umap-learn, scanpy's connectivities, some of scanpy's statistics) sets the
    thread count of the OpenMP runtime that torch shares on every parallel launch, so torch alone set to ``n``
    would train on numba's count (every core) after the first such call.
    """
    import numba
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    threadpool_limits(n)
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
