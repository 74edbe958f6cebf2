"""Sample-side strategies of the Gram engine, one class per way of holding the centred Grams:
:class:`Stacked`, :class:`Packed`, :class:`Spilled` and :class:`Tiled`, and :class:`DataOnly`
when no metric of the run uses Grams. The planner chooses one
(:func:`repsim_cli.engine.plan.choose_sample_strategy`); the engine runs it through the object
its ``open`` returns (:class:`SampleGrams`)."""

from .base import GramSource, SampleGrams, SampleStrategy
from .data_only import DataOnly
from .held import INNER_GROUP, Packed, PackedGrams, Stacked, StackedGrams
from .spilled import Spilled, SpilledGrams
from .tiled import MIN_TILE_ROWS, Tiled, TiledGrams

__all__ = [
    "INNER_GROUP", "MIN_TILE_ROWS", "DataOnly", "GramSource", "Packed", "PackedGrams", "SampleGrams",
    "SampleStrategy", "Spilled", "SpilledGrams", "Stacked", "StackedGrams", "Tiled", "TiledGrams",
]  # fmt: skip
