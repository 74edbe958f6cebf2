"""Strategies that hold every layer's Gram in memory: ``stacked`` (whole n×n Grams, for metrics
that need them) and ``packed`` (upper triangles only, in the GEMM dtype, for metrics that need
only the inner products ⟨Kc_a, Kc_b⟩).

Both compute the inner products the same way: layers are grouped by index (INNER_GROUP per
group) and each pair of groups' inner products comes from the Grams' upper triangles in fixed row
chunks (:mod:`repsim_cli.engine.triangles`: one SYRK or GEMM per chunk). Every cell is thus
computed by the same BLAS calls whichever cells a run asks for, so shards and resumed runs
reproduce a single run's values bit for bit, and the two strategies agree exactly.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from ..triangles import (
    CHUNK_ENTRIES,
    pack_upper,
    triangle_inner_block,
    triangle_offsets,
    triangle_size,
    upper_rows,
)
from .base import (
    Float64,
    GramSource,
    SampleGrams,
    SampleStrategy,
    layer_working_set,
    syrk_flops,
)

if TYPE_CHECKING:
    from ..gram import LayerRef
    from ..plan import LayerCost

INNER_GROUP = 16  # layers per group in the inner-product GEMMs


class TriangleGroups(SampleGrams):
    """Grams built for several layers at a time and inner products from their triangles."""

    def __init__(self, source: GramSource) -> None:
        super().__init__(source)
        self._blocks: dict[tuple[int, int], Float64] = {}

    @abstractmethod
    def keep(self, index: int, gram: NDArray[np.floating]) -> None:
        """Keep the Gram (n, n, GEMM dtype) of the layer at ``index`` as this strategy holds it."""

    @abstractmethod
    def triangle_rows(self, layer: int, first: int, stop: int, out: Float64) -> None:
        """Rows [first, stop) of a layer's Gram's strict upper triangle, float64, into ``out``."""

    def build(self, ref: LayerRef, xc: NDArray[np.floating] | None = None) -> None:
        """One layer's SYRK, kept; ``xc`` is the centred layer when already read."""
        gram = self.syrk(ref, xc)
        self.keep(self.source.index(ref), gram)
        self.finish(ref, gram)

    def build_all(self, refs: Sequence[LayerRef]) -> None:
        """The Grams of several layers, reading and centring layer i+1 in a thread while layer i's
        SYRK runs (two centred layers are in memory at once)."""
        todo = [r for r in dict.fromkeys(refs) if r.key not in self.computed]
        if len(todo) < 2:
            for ref in todo:
                self.build(ref)
            return
        for ref in todo:
            self.source.mean(ref)  # in this thread: the stats and the finiteness checks
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="repsim-prefetch") as pool:
            pending = pool.submit(self.source.centered_data, todo[0])
            for i, ref in enumerate(todo):
                xc = pending.result()
                if i + 1 < len(todo):
                    pending = pool.submit(self.source.centered_data, todo[i + 1])
                self.build(ref, xc)
                del xc

    def compute_row_sqnorms(self, ref: LayerRef) -> None:
        self.build_all([ref])

    def export(self, ref: LayerRef) -> tuple[NDArray[np.floating], Float64]:
        """A layer's Gram as (strict upper triangle (n(n−1)/2,) in the GEMM dtype, float64 diagonal
        (n,)), built now if needed: what another process's :meth:`adopt` takes (the Dask backend
        ships Grams between workers this way, a quarter of a float64 Gram for float32 layers)."""
        self.build_all([ref])
        return self.triangle(self.source.index(ref)), self.source.row_sqnorms(ref)

    @abstractmethod
    def triangle(self, index: int) -> NDArray[np.floating]:
        """The strict upper triangle (n(n−1)/2,) of a built Gram in the GEMM dtype (may be a view)."""

    def adopt(self, ref: LayerRef, triangle: NDArray[np.floating], diag: Float64) -> None:
        """Hold a Gram built elsewhere (from :meth:`export`) as if this object had built it; a layer
        already built here is kept as it is. The triangle came from the same SYRK in the same
        dtype, so inner products are the same bits as in the process that built it."""
        if ref.key in self.computed:
            return
        self.keep_triangle(self.source.index(ref), triangle, diag)
        self.source.record_row_sqnorms(ref, diag, replace=False)
        self.computed.add(ref.key)

    @abstractmethod
    def keep_triangle(self, index: int, triangle: NDArray[np.floating], diag: Float64) -> None:
        """Keep a Gram given as its strict upper triangle and float64 diagonal."""

    def inner(self, a: int, b: int) -> float:
        ga, gb = sorted((a // INNER_GROUP, b // INNER_GROUP))
        block = self._blocks.get((ga, gb))
        if block is None:
            refs = self.source.refs
            count = len(refs)
            groups = [range(g * INNER_GROUP, min((g + 1) * INNER_GROUP, count)) for g in (ga, gb)]
            self.build_all([refs[idx] for idx in (*groups[0], *groups[1])])
            diags = [np.stack([self.source.row_sqnorms(refs[i]) for i in g]) for g in groups]
            block = triangle_inner_block(
                self.source.n, groups[0], None if ga == gb else groups[1], self.triangle_rows,
                diags[0], None if ga == gb else diags[1],
            )  # fmt: skip
            self._blocks[(ga, gb)] = block
        lo_a, lo_b = ga * INNER_GROUP, gb * INNER_GROUP
        if a // INNER_GROUP == ga and b // INNER_GROUP == gb:
            return float(block[a - lo_a, b - lo_b])
        return float(block[b - lo_a, a - lo_b])


@dataclass(frozen=True, kw_only=True)
class Stacked(SampleStrategy):
    """Every layer's whole Gram in one (L, n, n) float64 array."""

    name = "stacked"

    @classmethod
    def estimate(
        cls, n: int, layers: Sequence[LayerCost], itemsize: int, n_pairs: int
    ) -> Stacked:
        """Peak: L whole float64 Grams and one layer's working set."""
        peak = float(len(layers) * n * n * 8 + layer_working_set(n, layers, itemsize))
        return cls(peak_bytes=peak, flops=syrk_flops(n, layers, n_pairs))

    def open(self, source: GramSource) -> StackedGrams:
        return StackedGrams(source)


class StackedGrams(TriangleGroups):
    """Holds whole Grams, one slot per layer, allocated on first use."""

    def __init__(self, source: GramSource) -> None:
        super().__init__(source)
        self._grams: Float64 | None = None

    def _slot(self, index: int) -> Float64:
        if self._grams is None:
            n = self.source.n
            self._grams = np.empty((len(self.source.refs), n, n), dtype=np.float64)
        slot: Float64 = self._grams[index]
        return slot

    def keep(self, index: int, gram: NDArray[np.floating]) -> None:
        np.copyto(self._slot(index), gram)

    def triangle(self, index: int) -> NDArray[np.floating]:
        out = np.empty(triangle_size(self.source.n), dtype=self.source.dtype)
        pack_upper(self._slot(index), out)  # the float64 copy of a GEMM-dtype Gram: exact
        return out

    def keep_triangle(self, index: int, triangle: NDArray[np.floating], diag: Float64) -> None:
        slot = self._slot(index)
        upper = np.triu_indices(self.source.n, 1)
        slot[upper] = triangle
        slot.T[upper] = triangle
        np.fill_diagonal(slot, diag)

    def gram(self, ref: LayerRef) -> Float64:
        slot = self._slot(self.source.index(ref))
        if ref.key not in self.computed:
            self.build(ref)
        return slot

    def triangle_rows(self, layer: int, first: int, stop: int, out: Float64) -> None:
        assert self._grams is not None
        upper_rows(self._grams[layer], first, stop, out)

    def close(self) -> None:
        self._grams = None


@dataclass(frozen=True, kw_only=True)
class Packed(SampleStrategy):
    """Every layer's Gram as its strict upper triangle in the GEMM dtype and its float64 diagonal
    (about a quarter of a float64 Gram for float32 layers); no whole Gram is ever given."""

    name = "packed"

    @classmethod
    def estimate(
        cls, n: int, layers: Sequence[LayerCost], itemsize: int, n_pairs: int
    ) -> Packed:
        """Peak: the triangles and diagonals, two groups' chunk buffers and one layer's working
        set; flops: a triangle holds half the entries of the inner products."""
        chunk = min(CHUNK_ENTRIES, max(n, triangle_size(n)))
        held = (len(layers) * (triangle_size(n) * itemsize + n * 8)
                + 2 * min(INNER_GROUP, len(layers)) * chunk * 8)  # fmt: skip
        return cls(
            peak_bytes=float(held + layer_working_set(n, layers, itemsize)),
            flops=syrk_flops(n, layers, n_pairs) - n_pairs * n * n,
        )

    def open(self, source: GramSource) -> PackedGrams:
        return PackedGrams(source)


class PackedGrams(TriangleGroups):
    """Holds the packed (L, n(n−1)/2) triangles, allocated on first use."""

    def __init__(self, source: GramSource) -> None:
        super().__init__(source)
        self._packed: NDArray[np.floating] | None = None
        self._offsets: NDArray[np.int64] | None = None

    def keep(self, index: int, gram: NDArray[np.floating]) -> None:
        if self._packed is None:
            size = triangle_size(self.source.n)
            self._packed = np.empty((len(self.source.refs), size), dtype=self.source.dtype)
        pack_upper(gram, self._packed[index])

    def triangle(self, index: int) -> NDArray[np.floating]:
        assert self._packed is not None
        tri: NDArray[np.floating] = self._packed[index]
        return tri

    def keep_triangle(self, index: int, triangle: NDArray[np.floating], diag: Float64) -> None:
        if self._packed is None:
            size = triangle_size(self.source.n)
            self._packed = np.empty((len(self.source.refs), size), dtype=self.source.dtype)
        self._packed[index] = triangle

    def gram(self, ref: LayerRef) -> Float64:
        raise RuntimeError(
            "the packed plan holds Gram triangles only; a metric asked for a whole Gram"
        )

    def triangle_stack(self, first: int, stop: int) -> NDArray[np.floating] | None:
        refs = self.source.refs[first:stop]
        if self._packed is None or not all(ref.key in self.computed for ref in refs):
            return None
        return self._packed[first:stop]

    def triangle_rows(self, layer: int, first: int, stop: int, out: Float64) -> None:
        assert self._packed is not None
        if self._offsets is None:
            self._offsets = triangle_offsets(self.source.n)
        out[:] = self._packed[layer, self._offsets[first] : self._offsets[stop]]

    def close(self) -> None:
        self._packed = None
