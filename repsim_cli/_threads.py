"""``--threads N``: one cap for every BLAS and OpenMP pool in the process.

threadpoolctl limits the pools of libraries already loaded, and SciPy brings its own OpenBLAS
(loaded with ``scipy.linalg``, which repsim imports lazily). The cap therefore loads SciPy's linear
algebra first, so that a metric importing it later still runs within the limit.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any


def limit_threads(threads: int) -> AbstractContextManager[Any]:
    """A context in which numpy's, SciPy's (and any other loaded) BLAS use at most ``threads``."""
    import scipy.linalg  # noqa: F401  (loads SciPy's BLAS so that the limit covers it)
    from threadpoolctl import threadpool_limits

    limits: AbstractContextManager[Any] = threadpool_limits(limits=threads)
    return limits
