"""Sample-side inner products without ever holding an n×n Gram: tile by tile.

For centred layers X_l (n×D_l) split into row blocks B_0…B_{m−1} of ``rows`` samples,

    ⟨Kc_a, Kc_b⟩ = Σ_{i,j} ⟨X_a[B_i] X_a[B_j]ᵀ, X_b[B_i] X_b[B_j]ᵀ⟩,

and the tiles (i, j) and (j, i) contribute equally, so only j ≥ i is computed (weight 2 off the
diagonal). Memory: the row blocks i and j of every layer plus one t×t tile per layer, whatever n.
Each block i of every layer is held while the blocks j ≥ i stream past, so a layer is read about
m(m+1)/2 blocks' worth, (m+1)/2 passes (m = ⌈n/rows⌉). Accumulation is float64; the tiles' GEMMs run in the
engine's compute dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

Float64 = NDArray[np.float64]
# read_block(layer index, start, stop) -> centred rows (stop - start, D) in the compute dtype
BlockReader = Callable[[int, int, int], NDArray[np.floating]]


def tile_rows_for(n: int, widths: Sequence[int], itemsize: int, budget: int) -> int:
    """Largest row-block size t whose working set fits ``budget`` bytes (at least 1):
    see :func:`tile_working_set`."""
    lo, hi = 1, n
    while lo < hi:
        t = (lo + hi + 1) // 2
        if tile_working_set(t, widths, itemsize) <= budget:
            lo = t
        else:
            hi = t - 1
    return lo


def tile_working_set(t: int, widths: Sequence[int], itemsize: int) -> int:
    """Bytes held by :func:`tiled_inner_products` for row blocks of ``t`` rows: two row blocks of
    every layer (compute dtype), the stacked float64 tiles plus one tile in the compute dtype, and
    the copies a block passes through while it is read and centred (stored dtype, two float64)."""
    return (2 * t * sum(widths) * itemsize + len(widths) * t * t * 8 + t * t * itemsize
            + t * max(widths) * 24)


def tiled_inner_products(
    n: int, n_layers: int, rows: int, read_block: BlockReader,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Float64, list[Float64]]:
    """All ⟨Kc_a, Kc_b⟩ (L×L, float64) and every layer's ‖xc_i‖² (n,), from row tiles.

    ``read_block(l, start, stop)`` must return the centred rows of layer ``l``.
    """
    starts = list(range(0, n, rows))
    inner = np.zeros((n_layers, n_layers))
    sqnorms = [np.empty(n) for _ in range(n_layers)]
    total = len(starts) * (len(starts) + 1) // 2
    done = 0
    for bi, i0 in enumerate(starts):
        i1 = min(i0 + rows, n)
        left = [read_block(layer, i0, i1) for layer in range(n_layers)]
        for j0 in starts[bi:]:
            j1 = min(j0 + rows, n)
            right = left if j0 == i0 else [read_block(layer, j0, j1) for layer in range(n_layers)]
            tiles = np.empty((n_layers, (i1 - i0) * (j1 - j0)))
            for layer in range(n_layers):
                tile = left[layer] @ right[layer].T
                tiles[layer] = tile.ravel()
                if j0 == i0:
                    sqnorms[layer][i0:i1] = np.diag(tile)
            weight = 1.0 if j0 == i0 else 2.0
            inner += weight * (tiles @ tiles.T)
            del tiles, right
            done += 1
            if progress is not None:
                progress(done, total)
    return inner, sqnorms
