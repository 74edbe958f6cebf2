"""The chunked Gram engine: read, centre, accumulate in float64, plan, and hold per-layer Grams
the way the planner's sample-side strategy says (:mod:`.strategies`)."""

from .gram import GramEngine, LayerRef
from .plan import LayerCost, Plan, choose_sample_strategy, default_budget, make_plan
from .strategies import Packed, SampleStrategy, Spilled, Stacked, Tiled

__all__ = [
    "GramEngine", "LayerCost", "LayerRef", "Packed", "Plan", "SampleStrategy", "Spilled", "Stacked",
    "Tiled", "choose_sample_strategy", "default_budget", "make_plan",
]  # fmt: skip
