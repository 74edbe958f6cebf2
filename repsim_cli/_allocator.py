"""Process memory for the streaming extraction: freed heap memory kept for reuse (glibc on
Linux), and page-aligned arrays.

glibc hands large freed blocks back to the operating system: blocks above ``M_MMAP_THRESHOLD``
are unmapped when freed, and the top of the heap is trimmed beyond ``M_TRIM_THRESHOLD`` (both
start at 128 KiB and adapt only partly). A forward pass allocates and frees the same tens of MB
of activations every batch, so each batch faults fresh zeroed pages in again. On the benchmark
machine that was about 10^4 minor page faults per batch of the small CNN in ``bench/`` and a
quarter of its forward time. Raising both thresholds lets freed blocks be reused instead; the
cost is that the process keeps its peak heap size until it exits.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Any

import numpy as np

# Alignment of buffers written with O_DIRECT (covers 512 B and 4 KiB device blocks).
ALIGN = 4096
RETAINED_BYTES = 1 << 30
_M_TRIM_THRESHOLD = -1  # from glibc's <malloc.h>
_M_MMAP_THRESHOLD = -3
_ENVIRONMENT = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def retain_freed_memory() -> bool:
    """Have glibc keep up to 1 GiB of freed memory for reuse instead of returning it to the OS.

    Returns whether the setting was made: False off glibc/Linux, and when the user set either
    threshold in the environment (their choice stands). Process-wide, and idempotent.
    """
    import platform  # deferred: a few ms at start-up, needed by one call

    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return False
    if any(name in os.environ for name in _ENVIRONMENT):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    # Setting the mmap threshold first also stops glibc's own adjustment of both thresholds.
    return bool(mallopt(_M_MMAP_THRESHOLD, RETAINED_BYTES) and mallopt(_M_TRIM_THRESHOLD, RETAINED_BYTES))


def aligned_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on an :data:`ALIGN` boundary."""
    dt = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    raw = np.empty(nbytes + ALIGN, dtype=np.uint8)
    skip = -raw.ctypes.data % ALIGN
    out: np.ndarray = raw[skip : skip + nbytes].view(dt).reshape(shape)
    return out
