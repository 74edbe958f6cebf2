"""repsim: which layers of which networks represent the data alike?

The library API (the ``repsim`` CLI is a thin layer over it)::

    from repsim_cli import open_store, compare_stores, compare_models, CompareOptions, METRICS
    results = compare_stores("a.h5", "b.h5", ["cka", "cka:debiased=true"])
    zoo = compare_models(["seed0.h5", "seed1.h5", "seed2.h5"], ["cka"], out="zoo.h5",
                         options=CompareOptions(memory=4 * 2**30), pairs="all")
    block = zoo.block("seed0", "seed2")          # one model pair as a Results
"""

from ._version import __version__
from .compare import CompareOptions, compare_models, compare_stores
from .metrics import REGISTRY as METRICS
from .metrics import get_metric, parse_spec
from .results import Results, read_results, write_results
from .store import open_store

__all__ = [
    "METRICS", "CompareOptions", "Results", "__version__", "compare_models", "compare_stores",
    "get_metric", "open_store",
    "parse_spec", "read_results", "write_results",
]  # fmt: skip
