"""Leave-one-out rowdots of linear CKA straight from the engine's packed Gram triangles.

The biased closed form (:mod:`.jackknife`) needs, per cell, only the Hadamard row sums
h = (K∘L)1 of the two layers' double-centred kernels and their diagonals (their row sums are 0).
Rebuilding every whole n×n kernel from the packed plan's strict upper triangle cost more than the
plain compare (the transposed half is a scatter). Here nothing n×n is built: the triangles are
walked in blocks of rows, each block unpacked once per layer into a dense trapezoid tile
(rows [i0, i1), columns [i0, n), zeros on and below the diagonal) and double-centred on the fly
(the engine's Grams, of centred data, need no centring); an entry (i, j), i < j, of K∘L then
counts in h_i (the tile's row sums) and in h_j (its column sums). For matrices not centred yet a
first sweep gives each layer's row means. Work per pair: n²/2 products, as many as the triangle
holds, shared out between threads.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.typing import NDArray

from ..engine.triangles import triangle_offsets

Float64 = NDArray[np.float64]
# rows per tile: a tile is at most ROWS × n float64 (2 MB at n = 2000); fewer, larger blocks
# (measured: 128 beat 64 and 256 at n = 2000, 12 layers)
ROWS = 128

_STRICT = np.triu(np.ones((ROWS, ROWS)), 1)  # 1 strictly above the diagonal, 0 on and below
TriangleRows = Callable[[int, int, Float64], None]  # (first, stop, out): rows of the triangle


def worker_count(tasks: int) -> int:
    """Threads for the element-wise sweeps (NumPy releases the GIL in them): the process's
    thread cap (``--threads`` sets OPENBLAS_NUM_THREADS) or the usable cores, at most 4 and at
    most ``tasks``."""
    cap = os.environ.get("OPENBLAS_NUM_THREADS", "")
    affinity = getattr(os, "sched_getaffinity", None)
    usable = len(affinity(0)) if affinity is not None else (os.cpu_count() or 1)
    cores = int(cap) if cap.isdigit() and int(cap) > 0 else usable
    return max(1, min(cores, 4, tasks))


def tile_index(offsets: NDArray[np.int64], i0: int, i1: int, n: int) -> NDArray[np.intp]:
    """Where each entry of the (i1 − i0, n − i0) tile of :func:`gather_tile` sits in the packed rows
    [i0, i1) read as one chunk; entries on or below the diagonal point one past the chunk's end
    (a 0 placed there). Shared by every layer of a block."""
    b, width = i1 - i0, n - i0
    r = np.arange(b)[:, None]
    c = np.arange(width)[None, :]
    start = (offsets[i0 : i0 + b] - offsets[i0])[:, None]
    end = int(offsets[min(i1, n - 1)] - offsets[i0])
    return np.where(c > r, start + (c - r - 1), end).astype(np.intp)


def gather_tile(rows: TriangleRows, offsets: NDArray[np.int64], i0: int, i1: int, n: int,
                index: NDArray[np.intp], buf: Float64, out: Float64) -> Float64:
    """Rows [i0, i1) of the strict upper triangle as a dense (i1 − i0, n − i0) tile — entry
    (i, j − i0) is M[i, j] for j > i, 0 for j ≤ i — by one gather (NumPy's take, which runs
    without the GIL) into ``out`` ((i1 − i0)·(n − i0) float64 or more). ``buf``: room for the
    chunk of packed rows and one more entry."""
    end = int(offsets[min(i1, n - 1)] - offsets[i0])
    if end:
        rows(i0, min(i1, n - 1), buf[:end])
    buf[end] = 0.0
    tile = out[: index.size].reshape(index.shape)
    np.take(buf[: end + 1], index, out=tile)
    return tile


def centred_rowdots(layers: Sequence[tuple[TriangleRows, Float64]], pairs: Sequence[tuple[int, int]],
                    n: int, *, centred: bool = False) -> tuple[list[Float64], list[Float64]]:
    """For layers given as (triangle-row reader, diagonal (n,)) of symmetric matrices M, and pairs
    (a, b) of them: the rowdots h = (K_a∘K_b)1 (n,) of each pair, K = HMH the double-centred
    matrix in float64, and each layer's centred diagonal. Returns (h per pair, diagonal per layer).

    ``centred``: the matrices are double-centred already up to round-off — Grams of column-centred
    data, as the engine builds them (its CKA values use them as they are) — so K = M: the sweep
    for the row means and the centring of every tile are skipped. Centring such a Gram again
    would move its entries by its own rounding error only.
    """
    offsets = triangle_offsets(n)
    buf = np.empty(int(offsets[min(ROWS, n - 1)] - offsets[0]) + 1 if n > 1 else 2)
    tiles = np.empty((len(layers), ROWS, n))
    diags = [np.asarray(d, dtype=np.float64) for _, d in layers]
    shifts: list[tuple[Float64, Float64]] = []
    if not centred:
        # sweep 1: row sums of every layer (strict upper part counted for its row and its column)
        sums = [d.copy() for d in diags]
        for i0 in range(0, n, ROWS):
            i1 = min(i0 + ROWS, n)
            index = tile_index(offsets, i0, i1, n)
            for a, (rows, _) in enumerate(layers):
                t = gather_tile(rows, offsets, i0, i1, n, index, buf, tiles[a].reshape(-1))
                sums[a][i0:i1] += t.sum(axis=1)
                sums[a][i0:] += t.sum(axis=0)
        means = [s / n for s in sums]
        grand = [float(m.mean()) for m in means]
        diags = [d - 2.0 * m + g for d, m, g in zip(diags, means, grand, strict=True)]
        shifts = [(m, m - g) for m, g in zip(means, grand, strict=True)]  # K = M − m_i − (m_j − g)
    hs = [diags[a] * diags[b] for a, b in pairs]
    workers = worker_count(len(pairs))
    bufs = [buf] + [np.empty_like(buf) for _ in range(workers - 1)]
    flat = tiles.reshape(len(layers), -1)
    # sweep 2: (centred) tiles, then each pair's row and column sums of their product. Layers and
    # pairs are dealt to the workers in a fixed pattern and each pair's sums are its own, so the
    # result is the same for any number of workers.
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="repsim-rowdots") as pool:
        for i0 in range(0, n, ROWS):
            i1 = min(i0 + ROWS, n)
            b = i1 - i0
            index = tile_index(offsets, i0, i1, n)
            held: list[Float64] = [flat[a, : index.size].reshape(index.shape) for a in range(len(layers))]

            def unpack(k: int, i0: int = i0, i1: int = i1, b: int = b,
                       index: NDArray[np.intp] = index, held: list[Float64] = held) -> None:
                for a in range(k, len(layers), workers):
                    gather_tile(layers[a][0], offsets, i0, i1, n, index, bufs[k], flat[a])
                    if shifts:
                        rows_shift, cols_shift = shifts[a]
                        held[a] -= rows_shift[i0:i1, None]  # in place: no temporary tile
                        held[a] -= cols_shift[None, i0:]
                        held[a][:, :b] *= _STRICT[:b, :b]

            def reduce(k: int, i0: int = i0, i1: int = i1, held: list[Float64] = held) -> None:
                for p in range(k, len(pairs), workers):
                    a, c = pairs[p]
                    hs[p][i0:i1] += np.einsum("ij,ij->i", held[a], held[c])
                    hs[p][i0:] += np.einsum("ij,ij->j", held[a], held[c])

            for task in (unpack, reduce):
                for f in [pool.submit(task, k) for k in range(workers)]:
                    f.result()
    return hs, diags
