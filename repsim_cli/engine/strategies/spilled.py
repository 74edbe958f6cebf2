"""The ``spilled`` strategy: whole Grams written once to the disk cache, a few held in memory.

Chosen when metrics need whole Grams but L of them do not fit the budget. Each layer's Gram is
built once, saved to the cache directory and read back when it is needed again; the
``gram_capacity`` most recently used stay in memory. Inner products are dot products of two whole
Grams, one per layer pair, kept.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .base import Float64, GramSource, SampleGrams, SampleStrategy, layer_working_set, syrk_flops

if TYPE_CHECKING:
    from ..gram import LayerRef
    from ..plan import LayerCost


@dataclass(frozen=True, kw_only=True)
class Spilled(SampleStrategy):
    """Whole float64 Grams on disk, ``capacity`` of them in memory at once."""

    name = "spilled"
    capacity: int

    @classmethod
    def estimate(
        cls, n: int, layers: Sequence[LayerCost], itemsize: int, n_pairs: int, budget: int
    ) -> Spilled:
        """As many whole Grams in memory as ``budget`` leaves room for beside one layer's
        working set (the caller checks that enough fit: two when Gram pairs are multiplied)."""
        one_layer = layer_working_set(n, layers, itemsize)
        gram = n * n * 8
        capacity = (budget - one_layer) // gram
        return cls(
            peak_bytes=float(capacity * gram + one_layer),
            flops=syrk_flops(n, layers, n_pairs),
            capacity=int(capacity),
        )

    @property
    def gram_capacity(self) -> int:
        return self.capacity

    def note(self) -> str:
        return f"Grams spill to the disk cache; {self.capacity} held in memory"

    def open(self, source: GramSource) -> SpilledGrams:
        return SpilledGrams(source, self.capacity)


class SpilledGrams(SampleGrams):
    """A least-recently-used set of whole Grams in memory over the ones saved to disk."""

    def __init__(self, source: GramSource, capacity: int) -> None:
        super().__init__(source)
        self.capacity = max(1, capacity)
        self._resident: OrderedDict[str, Float64] = OrderedDict()
        self._pair_inner: dict[tuple[int, int], float] = {}

    def gram(self, ref: LayerRef) -> Float64:
        if ref.key in self._resident:
            self._resident.move_to_end(ref.key)
            return self._resident[ref.key]
        while len(self._resident) >= self.capacity:
            self._resident.popitem(last=False)
        path = self.source.spill_file(ref)
        gram: Float64
        if ref.key in self.computed and path.exists():
            gram = np.load(path)
        else:
            gram = self.build_whole(ref)
            np.save(path, gram)
        self._resident[ref.key] = gram
        return gram

    def inner(self, a: int, b: int) -> float:
        key = (min(a, b), max(a, b))
        if key not in self._pair_inner:
            ka = self.gram(self.source.refs[key[0]]).ravel()
            kb = self.gram(self.source.refs[key[1]]).ravel()
            self._pair_inner[key] = float(np.dot(ka, kb))
        return self._pair_inner[key]

    def compute_row_sqnorms(self, ref: LayerRef) -> None:
        self.gram(ref)

    def close(self) -> None:
        self._resident.clear()
