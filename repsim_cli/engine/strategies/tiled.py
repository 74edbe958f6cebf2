"""The ``tiled`` strategy: every ⟨Kc_a, Kc_b⟩ from row tiles, no n×n Gram held.

Chosen when metrics need only inner products and even the packed triangles do not fit the
budget. One tiled pass (:func:`repsim_cli.engine.tiles.tiled_inner_products`) gives every inner
product and row norm; a layer is read about (m+1)/2 times for m row blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from ..tiles import tile_rows_for, tile_working_set, tiled_inner_products
from .base import Float64, GramSource, SampleGrams, SampleStrategy, syrk_flops

if TYPE_CHECKING:
    from ..gram import LayerRef
    from ..plan import LayerCost

MIN_TILE_ROWS = 64  # smaller tiles would be all Python overhead


@dataclass(frozen=True, kw_only=True)
class Tiled(SampleStrategy):
    """Inner products tile by tile, ``rows`` samples per tile."""

    name = "tiled"
    rows: int

    @classmethod
    def estimate(
        cls, n: int, layers: Sequence[LayerCost], itemsize: int, n_pairs: int, budget: int
    ) -> Tiled:
        """The largest tile whose working set, with one stored chunk a partial read may pass
        through, fits 90% of ``budget`` (at least MIN_TILE_ROWS rows, or n)."""
        widths = [layer.width for layer in layers]
        stored_chunk = max(layer.chunk_bytes for layer in layers)
        t = max(tile_rows_for(n, widths, itemsize, int(budget * 0.9) - stored_chunk),
                min(n, MIN_TILE_ROWS))  # fmt: skip
        # block j is read once as the held block and once for each earlier held block
        passes = sum((j + 1) * (min(n, s + t) - s) for j, s in enumerate(range(0, n, t))) / n
        return cls(
            peak_bytes=float(tile_working_set(t, widths, itemsize) + stored_chunk),
            flops=syrk_flops(n, layers, n_pairs) + sum(n * t * layer.width for layer in layers),
            passes=passes,
            rows=t,
        )

    @property
    def tile_rows(self) -> int:
        return self.rows

    def open(self, source: GramSource) -> TiledGrams:
        return TiledGrams(source, self.rows)


class TiledGrams(SampleGrams):
    """The tiled pass's results; a whole Gram, should a metric ask for one, is built on demand
    and only the last one kept."""

    def __init__(self, source: GramSource, rows: int) -> None:
        super().__init__(source)
        self.rows = rows
        self._result: tuple[Float64, list[Float64]] | None = None
        self._last: tuple[str, Float64] | None = None

    def tiled_pass(self) -> tuple[Float64, list[Float64]]:
        """Every ⟨Kc_a, Kc_b⟩ (L, L) and every layer's row norms, from one tiled pass."""
        if self._result is None:
            source = self.source
            refs = source.refs
            for ref in refs:
                source.mean(ref)  # the stats and finiteness checks before the pass

            def read_block(layer: int, start: int, stop: int) -> NDArray[np.floating]:
                return source.centered_rows(refs[layer], start, stop)

            inner, sqnorms = tiled_inner_products(
                source.n, len(refs), self.rows, read_block,
                progress=lambda done, total: source.progress("Gram tiles", done, total),
            )  # fmt: skip
            for ref, q in zip(refs, sqnorms, strict=True):
                source.counts["gram:" + ref.key] += 1
                source.record_row_sqnorms(ref, q, replace=True)
            self._result = (inner, sqnorms)
        return self._result

    def inner(self, a: int, b: int) -> float:
        return float(self.tiled_pass()[0][a, b])

    def compute_row_sqnorms(self, ref: LayerRef) -> None:
        self.tiled_pass()

    def gram(self, ref: LayerRef) -> Float64:
        if self._last is not None and self._last[0] == ref.key:
            return self._last[1]
        self._last = None
        whole = self.build_whole(ref)
        self._last = (ref.key, whole)
        return whole

    def close(self) -> None:
        self._last = None
