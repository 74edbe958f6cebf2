"""Metrics: the registry and one module per family, each registering its metrics on import."""

from __future__ import annotations

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

# The family modules (cka, cca, …) register their metrics when imported: get_metric imports the
# family of the metric asked for, and reading REGISTRY as a whole imports them all.

__all__ = [
    "REGISTRY", "BlockFn", "Cell", "CellBlock", "LayerContext", "MetricInfo", "MetricSpec", "PairFn",
    "Param", "PrepareFn", "StateCost", "get_metric", "parse_spec", "register",
]  # fmt: skip
