"""Frobenius inner products of symmetric Grams from their upper triangles.

For symmetric K and L (n×n),

    ⟨K, L⟩_F = 2·Σ_{i<j} K_ij L_ij + Σ_i K_ii L_ii,

so the strict upper triangle (n(n−1)/2 entries, stored row by row: K[0, 1:], K[1, 2:], …) and
the float64 diagonal carry everything the inner products need, in half the memory of the full
matrix. When the Grams come from a float32 SYRK the triangle is kept in float32 without loss,
a quarter of the float64 Gram, and is widened to float64 chunk by chunk, in cache, just before
each chunk's GEMM.

The chunks are runs of whole triangle rows fixed by n alone, so a cell's value is the same
whether its triangles are read from a packed stack or cut from full Grams: the sample-side
``stacked`` and ``packed`` strategies give identical bits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

Float64 = NDArray[np.float64]
# Entries per layer per chunk: a 16-layer float64 chunk is 4 MiB, cache-sized for the GEMM.
CHUNK_ENTRIES = 1 << 15
# fill(layer, first_row, stop_row, out): writes rows [first_row, stop_row) of the layer's strict
# upper triangle, as float64, into the 1-D ``out`` (length offsets[stop] − offsets[first]).
TriangleFill = Callable[[int, int, int, Float64], None]


def triangle_size(n: int) -> int:
    """Entries of the strict upper triangle of an n×n matrix: n(n−1)/2."""
    return n * (n - 1) // 2


def triangle_offsets(n: int) -> NDArray[np.int64]:
    """(n+1,) start of row i's entries M[i, i+1:] in the packed triangle; the last is its size."""
    lengths = np.arange(n - 1, -1, -1, dtype=np.int64)
    return np.concatenate([[0], np.cumsum(lengths)])


def pack_upper(gram: NDArray[np.floating], out: NDArray[np.floating]) -> None:
    """Copy the strict upper triangle of ``gram`` (n, n) into ``out`` (n(n−1)/2,), row by row."""
    upper_rows(gram, 0, max(0, gram.shape[0] - 1), out)


def upper_rows(gram: NDArray[np.floating], first: int, stop: int, out: NDArray[np.floating]) -> None:
    """Rows [first, stop) of the strict upper triangle of ``gram`` (n, n), into ``out`` (1-D),
    cast to ``out``'s dtype."""
    n = gram.shape[0]
    pos = 0
    for i in range(first, stop):
        width = n - 1 - i
        out[pos : pos + width] = gram[i, i + 1 :]
        pos += width


@lru_cache(maxsize=8)
def row_chunks(n: int, max_entries: int) -> tuple[tuple[int, int], ...]:
    """Runs of whole triangle rows [first, stop) of at most ``max_entries`` entries each (a row
    longer than that is a chunk of its own). Depends on n only, so every run uses the same chunks."""
    offsets = triangle_offsets(n)
    chunks = []
    first = 0
    while first < n - 1:
        stop = int(np.searchsorted(offsets, offsets[first] + max_entries, side="right")) - 1
        stop = min(max(stop, first + 1), n - 1)
        chunks.append((first, stop))
        first = stop
    return tuple(chunks)


def triangle_inner_block(
    n: int,
    layers_a: Sequence[int],
    layers_b: Sequence[int] | None,
    fill: TriangleFill,
    diag_a: Float64,
    diag_b: Float64 | None = None,
) -> Float64:
    """⟨K_a, K_b⟩_F for a ∈ ``layers_a`` and b ∈ ``layers_b``, shape (len(a), len(b)), float64.

    ``layers_b=None`` means the block of ``layers_a`` with itself (one SYRK per chunk). ``diag_a``
    (len(a), n) and ``diag_b`` (len(b), n) are the float64 diagonals. Chunk GEMMs accumulate
    in float64 in a fixed order.
    """
    offsets = triangle_offsets(n)
    chunks = row_chunks(n, CHUNK_ENTRIES)
    longest = max((int(offsets[s] - offsets[f]) for f, s in chunks), default=0)
    buf_a = np.empty((len(layers_a), longest))
    buf_b = np.empty((len(layers_b), longest)) if layers_b is not None else buf_a
    acc = np.zeros((len(layers_a), len(layers_b) if layers_b is not None else len(layers_a)))
    for first, stop in chunks:
        width = int(offsets[stop] - offsets[first])
        for row, layer in enumerate(layers_a):
            fill(layer, first, stop, buf_a[row, :width])
        a = buf_a[:, :width]
        if layers_b is None:
            acc += a @ a.T
            continue
        for row, layer in enumerate(layers_b):
            fill(layer, first, stop, buf_b[row, :width])
        acc += a @ buf_b[:, :width].T
    acc *= 2.0
    acc += diag_a @ (diag_a if diag_b is None else diag_b).T
    return acc
