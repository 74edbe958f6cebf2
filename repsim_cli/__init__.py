"""repsim: which layers of which networks represent the data alike?

The library API (the ``repsim`` CLI is a thin layer over it)::

    from repsim_cli import open_store, compare_stores, METRICS
    results = compare_stores("a.h5", "b.h5", ["cka", "cka:debiased=true"])
"""

from ._version import __version__
from .compare import compare_stores
from .metrics import REGISTRY as METRICS
from .metrics import get_metric, parse_spec
from .results import Results, read_results, write_results
from .store import open_store

__all__ = [
    "METRICS", "Results", "__version__", "compare_stores", "get_metric", "open_store",
    "parse_spec", "read_results", "write_results",
]  # fmt: skip
