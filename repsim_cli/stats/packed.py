"""Leave-one-out rowdots of linear CKA straight from the engine's packed Gram triangles.

The biased closed form (:mod:`.jackknife`) needs, per cell, only the Hadamard row sums
h = (K∘L)1 of the two layers' double-centred kernels and their diagonals (their row sums are 0).
Rebuilding every whole n×n kernel from the packed plan's strict upper triangle cost more than the
plain compare (the transposed half is a scatter). Here nothing n×n is built: the triangles are
walked in blocks of rows, each block unpacked once per layer into a dense trapezoid tile
(rows [i0, i1), columns [i0, n), zeros on and below the diagonal) and double-centred on the fly;
an entry (i, j), i < j, of K∘L then counts in h_i (the tile's row sums) and in h_j (its column
sums). Two sweeps: the first gives each layer's row means (for the centring), the second the
rowdots of every wanted pair. Work per pair: n²/2 products, as many as the triangle holds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from ..engine.triangles import triangle_offsets

Float64 = NDArray[np.float64]
# rows per tile: a tile is at most ROWS × n float64 (1 MB at n = 2000), two of them stay in cache
ROWS = 64

TriangleRows = Callable[[int, int, Float64], None]  # (first, stop, out): rows of the triangle


def _tile(rows: TriangleRows, offsets: NDArray[np.int64], i0: int, i1: int, n: int,
          buf: Float64, out: Float64) -> Float64:
    """Rows [i0, i1) of the strict upper triangle as a dense (i1 − i0, n − i0) tile: entry
    (i, j − i0) is M[i, j] for j > i, 0 for j ≤ i."""
    width = n - i0
    tile = out[: i1 - i0, :width]
    stop = min(i1, n - 1)
    if stop > i0:
        chunk = buf[: offsets[stop] - offsets[i0]]
        rows(i0, stop, chunk)
        pos = 0
        for i in range(i0, stop):
            w = n - 1 - i
            tile[i - i0, : i - i0 + 1] = 0.0
            tile[i - i0, i - i0 + 1 :] = chunk[pos : pos + w]
            pos += w
    tile[stop - i0 :] = 0.0  # the last row (n − 1) has no strict upper entries
    return tile


def centred_rowdots(layers: Sequence[tuple[TriangleRows, Float64]], pairs: Sequence[tuple[int, int]],
                    n: int, row_sums: Sequence[Float64 | None] | None = None,
                    ) -> tuple[list[Float64], list[Float64]]:
    """For layers given as (triangle-row reader, diagonal (n,)) of symmetric matrices M, and pairs
    (a, b) of them: the rowdots h = (K_a∘K_b)1 (n,) of each pair, K = HMH the double-centred
    matrix in float64, and each layer's centred diagonal. Returns (h per pair, diagonal per layer).
    ``row_sums``: each layer's float64 row sums M1 (n,) where already known (recorded while the
    Gram was whole), else None — those layers' sums take a first sweep over their triangles.
    """
    offsets = triangle_offsets(n)
    buf = np.empty(int(offsets[min(ROWS, n - 1)] - offsets[0]) if n > 1 else 1)
    tiles = np.empty((len(layers), ROWS, n))
    known = list(row_sums) if row_sums is not None else [None] * len(layers)
    # sweep 1: row sums of the layers without them (strict upper part counted for its row and its
    # column)
    sums = [np.array(d, dtype=np.float64, copy=True) if k is None else np.asarray(k, dtype=np.float64)
            for (_, d), k in zip(layers, known, strict=True)]  # fmt: skip
    missing = [a for a, k in enumerate(known) if k is None]
    for i0 in range(0, n, ROWS) if missing else ():
        i1 = min(i0 + ROWS, n)
        for a in missing:
            t = _tile(layers[a][0], offsets, i0, i1, n, buf, tiles[a])
            sums[a][i0:i1] += t.sum(axis=1)
            sums[a][i0:] += t.sum(axis=0)
    means = [s / n for s in sums]
    grand = [float(m.mean()) for m in means]
    diags = [np.asarray(d, dtype=np.float64) - 2.0 * m + g
             for (_, d), m, g in zip(layers, means, grand, strict=True)]  # fmt: skip
    hs = [diags[a] * diags[b] for a, b in pairs]
    prod_buf = np.empty((ROWS, n))
    ones = np.ones(n)
    # sweep 2: centred tiles, then each pair's row and column sums of their product
    for i0 in range(0, n, ROWS):
        i1 = min(i0 + ROWS, n)
        b = i1 - i0
        strict = np.arange(b)[None, :] > np.arange(b)[:, None]  # only the first b columns hold j ≤ i
        centred = []
        for a, (rows, _) in enumerate(layers):
            t = _tile(rows, offsets, i0, i1, n, buf, tiles[a])
            m, g = means[a], grand[a]
            t -= m[i0:i1, None] + (m[None, i0:] - g)
            t[:, :b] *= strict
            centred.append(t)
        # each pair's Hadamard tile once (it stays in cache), then its row and column sums as
        # two matrix-vector products
        product = prod_buf[:b, : n - i0]
        for h, (a, c) in zip(hs, pairs, strict=True):
            np.multiply(centred[a], centred[c], out=product)
            h[i0:i1] += product @ ones[: n - i0]
            h[i0:] += ones[:b] @ product
    return hs, diags
