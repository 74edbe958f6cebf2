"""The strategy of a run whose metrics read only the layers' data (CCA, Procrustes, shape and
regression build their states from each centred layer): the engine holds no Grams at all."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .base import READ_AHEAD_BYTES, GramSource, SampleStrategy
from .spilled import SpilledGrams

if TYPE_CHECKING:
    from ..plan import LayerCost


@dataclass(frozen=True, kw_only=True)
class DataOnly(SampleStrategy):
    """No Gram is held or built; the peak is one layer read and centred in float64."""

    name = "data"

    @classmethod
    def estimate(cls, n: int, layers: Sequence[LayerCost]) -> DataOnly:
        widest = max(layer.width for layer in layers)
        return cls(peak_bytes=float(2 * n * widest * 8 + READ_AHEAD_BYTES), flops=0.0)

    def note(self) -> str:
        return "the metrics read each layer's data themselves: no Gram is built"

    def open(self, source: GramSource) -> SpilledGrams:
        # Should a Gram be asked for after all, one at a time through the disk cache.
        return SpilledGrams(source, 1)
