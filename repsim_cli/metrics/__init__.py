"""Metrics: the registry and one module per family, each registering its metrics on import."""

from __future__ import annotations

import importlib
import importlib.util

from .contract import Cell, CellBlock, LayerContext, StateCost
from .registry import (
    REGISTRY,
    BlockFn,
    MetricInfo,
    MetricSpec,
    PairFn,
    Param,
    PrepareFn,
    get_metric,
    parse_spec,
    register,
)  # fmt: skip

# Family modules in the order `repsim metrics` lists them. A family whose module is not written yet
# is skipped; one that fails to import raises.
_FAMILIES = (
    "cka", "cka_rbf", "cka_minibatch", "cca", "procrustes", "rsa", "regression", "neighbors", "dcor",
    "readout",
)  # fmt: skip
for _family in _FAMILIES:
    if importlib.util.find_spec(f"{__name__}.{_family}") is not None:
        importlib.import_module(f"{__name__}.{_family}")

__all__ = [
    "REGISTRY", "BlockFn", "Cell", "CellBlock", "LayerContext", "MetricInfo", "MetricSpec", "PairFn",
    "Param", "PrepareFn", "StateCost", "get_metric", "parse_spec", "register",
]  # fmt: skip
