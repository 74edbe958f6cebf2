"""Leave-one-out rowdots of linear CKA straight from the engine's packed Gram triangles.

The biased closed form (:mod:`.jackknife`) needs, per cell, only the Hadamard row sums
h = (K_a∘K_b)1 of the two layers' double-centred Grams and their diagonals. The engine's Grams
are of column-centred data, so they are double-centred already (its CKA values use them as they
are), and it holds only their strict upper triangles (row by row) and float64 diagonals.

One dot product per pair and row would stream the triangles once per pair — memory-bound, and
the dominant cost of a jackknife run. Here the layers of a group are stacked instead: a block of
rows [i0, i1) of every layer of the group is unpacked once into a dense trapezoid tile T
(b rows × the columns [i0, n) × the group's layers, layers last, zeros on and below the diagonal),
and an entry (i, j), i < j, of K_a∘K_b counts in h_i and in h_j:

- row i:     Σ_j T[i, j, a] T[i, j, c] for all layer pairs at once is the small Gram TᵢᵀTᵢ
  (|group| × |group|) of the tile's row i — one BLAS call per row;
- column j:  Σ_i T[i, j, a] T[i, j, c], the same for the tile's column j — one call per column.

The work becomes GEMMs (each tile entry is read once per pair of groups, not once per pair of
layers): about 2× faster than per-pair dot products at n = 2000, 12 layers. Groups are the
engine's own (:data:`~repsim_cli.engine.strategies.held.INNER_GROUP` layers by index, fixed by
the layout), tiles are :data:`ROWS` rows, and each row's and column's product is a BLAS call of
a shape fixed by n and the groups alone; the per-tile results are summed in tile order. So a
rowdot has the same bits whichever cells, shard or resume point asked for it, and for any
number of threads.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.typing import NDArray

from ..engine.triangles import triangle_offsets

Float64 = NDArray[np.float64]
# rows per tile: a tile is ROWS × n × |group| float64 (12 MB at n = 2000, 12 layers)
# (measured at n = 2000, 12 layers: 64 and 128 alike, 64 holds half the memory)
ROWS = 64
Position = tuple[int, int]  # (group, layer's place in the group)


def worker_count(tasks: int) -> int:
    """Threads for the tile work (NumPy releases the GIL in copies and BLAS calls): the
    process's thread cap (``--threads`` sets OPENBLAS_NUM_THREADS) or the usable cores, at most
    4 and at most ``tasks``."""
    cap = os.environ.get("OPENBLAS_NUM_THREADS", "")
    affinity = getattr(os, "sched_getaffinity", None)
    usable = len(affinity(0)) if affinity is not None else (os.cpu_count() or 1)
    cores = int(cap) if cap.isdigit() and int(cap) > 0 else usable
    return max(1, min(cores, 4, tasks))


def working_bytes(n: int, group_sizes: Sequence[int], blocks: int) -> int:
    """Memory of :func:`group_rowdots` for groups of these sizes and this many pairs of groups:
    one tile per group, each pair of groups' (n, |a|, |b|) sums and one column scratch."""
    largest = max(group_sizes, default=0)
    return 8 * (sum(ROWS * n * g for g in group_sizes) + (blocks + 1) * n * largest * largest
                + ROWS * largest * largest)  # fmt: skip


def kernel_working_bytes(n: int, group_sizes: Sequence[int], blocks: int, products: int = 0) -> int:
    """Memory of :func:`kernel_rowdots` for groups of these sizes and this many pairs of groups:
    per worker one tile per group, each pair of groups' (n, |a|, |b|) sums and the rowdots taken
    from them; plus ``products`` arrays (n, |g|) of the unbiased estimator's row-sum products."""
    largest = max(group_sizes, default=0)
    workers = worker_count(-(-n // ROWS))
    return 8 * (workers * sum(ROWS * n * g for g in group_sizes) + 2 * blocks * n * largest * largest
                + products * n * largest)  # fmt: skip


Blocks = dict[tuple[int, int], list[tuple[int, int, int]]]  # (group a, group b) → (pair, place a, place b)


def by_group_pair(pairs: Sequence[tuple[Position, Position]]) -> Blocks:
    """The wanted pairs by the pair of groups that holds them, each in one orientation (the lower
    (group, place) first): (a, b) and (b, a) are the same BLAS result."""
    blocks: Blocks = {}
    for p, (first, second) in enumerate(pairs):
        (ga, ia), (gb, ib) = sorted((first, second))
        blocks.setdefault((ga, gb), []).append((p, ia, ib))
    return blocks


def group_rowdots(stacks: Sequence[NDArray[np.floating]], diags: Sequence[Float64],
                  pairs: Sequence[tuple[Position, Position]], n: int) -> list[Float64]:
    """The rowdots h = (K_a∘K_b)1 (n,) float64 of each pair of layers, from Grams of centred data
    held as strict upper triangles.

    ``stacks[g]``: the triangles (|g|, n(n−1)/2) of group g's layers, row by row (K[0, 1:],
    K[1, 2:], …), any float dtype (widened to float64 tile by tile); ``diags[g]``: their float64
    diagonals (|g|, n), which replace the Grams' own as in the engine's inner products;
    ``pairs``: the two layers of each wanted pair as (group, place in group). Every pair of
    groups holding a wanted pair is computed whole (its bits do not depend on the pairs asked).
    """
    blocks = by_group_pair(pairs)
    used = sorted({g for block in blocks for g in block})
    offsets = triangle_offsets(n)
    tiles = {g: np.empty((ROWS, n, len(stacks[g]))) for g in used}
    sums = {(ga, gb): np.zeros((n, len(stacks[ga]), len(stacks[gb]))) for ga, gb in blocks}
    largest = max(len(stacks[g]) for g in used) if used else 0
    row_part = np.empty((ROWS, largest, largest))
    col_part = np.empty((n, largest, largest))
    starts = list(range(0, n, ROWS))
    workers = worker_count(len(starts) * 4)

    def unpack(k: int, i0: int, b: int) -> None:
        for r in range(k, b, workers):
            i = i0 + r
            for g in used:
                tile = tiles[g]
                tile[r, : r + 1] = 0.0
                if i < n - 1:
                    tile[r, r + 1 : n - i0] = stacks[g][:, offsets[i] : offsets[i + 1]].T

    def products(k: int, ga: int, gb: int, b: int, w: int) -> None:
        a, c = tiles[ga][:b, :w], tiles[gb][:b, :w]
        rows = slice(k * b // workers, (k + 1) * b // workers)
        cols = slice(k * w // workers, (k + 1) * w // workers)
        la, lc = a.shape[2], c.shape[2]
        np.matmul(a[rows].transpose(0, 2, 1), c[rows], out=row_part[rows, :la, :lc])
        np.matmul(a[:, cols].transpose(1, 2, 0), c[:, cols].transpose(1, 0, 2), out=col_part[cols, :la, :lc])

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="repsim-rowdots") as pool:

        def each_worker(task: Callable[..., None], *args: int) -> None:
            for f in [pool.submit(task, k, *args) for k in range(workers)]:
                f.result()

        for i0 in starts:
            b, w = min(ROWS, n - i0), n - i0
            each_worker(unpack, i0, b)
            for (ga, gb), total in sums.items():
                each_worker(products, ga, gb, b, w)
                la, lc = total.shape[1:]
                total[i0 : i0 + b] += row_part[:b, :la, :lc]
                total[i0:] += col_part[:w, :la, :lc]
    out: list[Float64] = [np.empty(0)] * len(pairs)
    for (ga, gb), wanted in blocks.items():
        for p, ia, ib in wanted:
            out[p] = sums[(ga, gb)][:, ia, ib] + diags[ga][ia] * diags[gb][ib]
    return out


def kernel_rowdots(groups: Sequence[Sequence[Float64 | None]], pairs: Sequence[tuple[Position, Position]],
                   n: int) -> list[Float64]:
    """The rowdots h = (K_a∘K_b)1 (n,) float64 of each pair of whole symmetric kernels (n, n)
    float64, held in groups fixed by the layout.

    ``groups[g][p]``: the kernel at place p of group g, or None for a layer of the group this run
    does not hold (its rows are zeros in the tiles: a shape fixed by the layout, whatever is held);
    ``pairs``: the two kernels of each wanted pair as (group, place). Each row i gives a group
    pair's products at once as one BLAS call, R_a,i R_b,iᵀ with R_g,i the group's rows i stacked
    (|g| × n) — so a rowdot has the same bits whichever kernels are held beside it and for any
    number of threads (tiles of :data:`ROWS` rows are dealt to the workers, each row written by
    one of them). Memory: per worker one tile of ROWS × |g| × n float64 per group, and one
    (n, |a|, |b|) result per pair of groups.
    """
    blocks = by_group_pair(pairs)
    used = sorted({g for block in blocks for g in block})
    sums = {(ga, gb): np.empty((n, len(groups[ga]), len(groups[gb]))) for ga, gb in blocks}
    starts = list(range(0, n, ROWS))
    workers = worker_count(len(starts))
    stop = threading.Event()  # set when the caller is interrupted: workers end at the next tile

    def work(k: int) -> None:
        tiles = {g: np.zeros((ROWS, len(groups[g]), n)) for g in used}  # a missing kernel's rows stay 0
        for i0 in starts[k::workers]:
            if stop.is_set():
                return
            i1 = min(i0 + ROWS, n)
            for g in used:
                for place, kernel in enumerate(groups[g]):
                    if kernel is not None:
                        tiles[g][: i1 - i0, place] = kernel[i0:i1]
            for (ga, gb), total in sums.items():
                a, c = tiles[ga][: i1 - i0], tiles[gb][: i1 - i0]
                np.matmul(a, c.transpose(0, 2, 1), out=total[i0:i1])

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="repsim-rowdots") as pool:
        try:
            for f in [pool.submit(work, k) for k in range(workers)]:
                f.result()
        except BaseException:  # Ctrl-C, SIGTERM: leave without computing the rest
            stop.set()
            raise
    out: list[Float64] = [np.empty(0)] * len(pairs)
    for (ga, gb), wanted in blocks.items():
        for p, ia, ib in wanted:
            out[p] = sums[(ga, gb)][:, ia, ib].copy()
    return out
