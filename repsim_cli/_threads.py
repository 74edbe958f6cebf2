"""``--threads N``: one cap for every BLAS and OpenMP pool in the process.

threadpoolctl limits the pools of libraries already loaded (numpy's OpenBLAS). A library loaded
later — SciPy brings its own OpenBLAS, loaded with ``scipy.linalg``, which repsim imports only
where a metric needs it — sizes its pool from the environment when it loads, so the cap also
sets the OpenBLAS/OpenMP/MKL thread variables for the duration (instead of importing SciPy up
front: that costs about 0.2 s of start-up in every run, most of which never use it).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                    "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")  # fmt: skip


@contextlib.contextmanager
def limit_threads(threads: int) -> Iterator[None]:
    """A context in which numpy's, SciPy's (and any other) BLAS use at most ``threads``, whether
    loaded before or inside it."""
    from threadpoolctl import threadpool_limits

    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    os.environ.update(dict.fromkeys(THREAD_VARIABLES, str(threads)))
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
