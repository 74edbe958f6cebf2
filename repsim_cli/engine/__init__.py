"""The chunked Gram engine: read, centre, accumulate in float64, plan, and cache per layer."""

from .gram import GramEngine, LayerRef
from .plan import LayerCost, Plan, default_budget, make_plan

__all__ = ["GramEngine", "LayerCost", "LayerRef", "Plan", "default_budget", "make_plan"]
