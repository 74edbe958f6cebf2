"""Per-layer and cross-layer second moments as small frozen records, combined chunk by chunk.

This is the chunk / combine / finalize triad (as in ``dask.array.reductions``): each is a pure
function, and ``functools.reduce(combine, map(chunk_moments, blocks))`` followed by
``finalize`` equals the dense computation. Everything accumulates in float64.

Centring uses a per-column *shift* s (the exact column mean when the store has its sums, else the
first chunk's mean): with Z = X − 1sᵀ, the centred cross-product is
``ZᵀZ − (Zᵀ1)(1ᵀZ)/n``; its cancellation error scales with |mean − s|, not with |mean|.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Float64 = NDArray[np.float64]


@dataclass(frozen=True)
class Moments:
    """Shifted first and second moments of a (rows, D) block.

    ``count``: rows seen; ``sums``: (D,) Σ(x − s); ``cross``: (D, D) Σ(x − s)(x − s)ᵀ; all float64.
    """

    count: int
    sums: Float64
    cross: Float64


def chunk_moments(block: NDArray[np.floating], shift: Float64, dtype: type = np.float64) -> Moments:
    """Moments of one block ``(rows, D)`` about ``shift`` (D,). ``dtype`` is the GEMM precision."""
    z: NDArray[np.floating] = (np.asarray(block, dtype=np.float64) - shift).astype(dtype, copy=False)
    cross = (z.T @ z).astype(np.float64, copy=False)
    return Moments(int(z.shape[0]), z.sum(axis=0, dtype=np.float64), cross)


def combine(a: Moments, b: Moments) -> Moments:
    """Sum of two :class:`Moments` taken about the same shift."""
    return Moments(a.count + b.count, a.sums + b.sums, a.cross + b.cross)


def accumulate(total: Moments, m: Moments) -> Moments:
    """:func:`combine` that adds ``m`` into ``total``'s arrays in place (no third (D, D) array)."""
    np.add(total.sums, m.sums, out=total.sums)
    np.add(total.cross, m.cross, out=total.cross)
    return Moments(total.count + m.count, total.sums, total.cross)


def accumulate_block(total: Moments, block: NDArray[np.floating], shift: Float64, dtype: type) -> Moments:
    """``accumulate(total, chunk_moments(block, shift, dtype))`` without a (D, D) float64 temporary:
    the GEMM output (in ``dtype``) is added straight into the float64 accumulator."""
    z: NDArray[np.floating] = (np.asarray(block, dtype=np.float64) - shift).astype(dtype, copy=False)
    np.add(total.sums, z.sum(axis=0, dtype=np.float64), out=total.sums)
    np.add(total.cross, z.T @ z, out=total.cross)
    return Moments(total.count + int(z.shape[0]), total.sums, total.cross)


def finalize(m: Moments) -> Float64:
    """Centred cross-product matrix XcᵀXc (D, D), float64 (unnormalised: no division by n − 1).

    Corrects ``m.cross`` in place (the rank-one term, in row slabs so that no second (D, D) array
    is allocated) and returns it.
    """
    mean = m.sums / m.count
    for lo in range(0, len(mean), 1024):
        np.subtract(m.cross[lo : lo + 1024], np.outer(mean[lo : lo + 1024], m.sums),
                    out=m.cross[lo : lo + 1024])
    return m.cross


def centered_block(block: NDArray[np.floating], mean: Float64, dtype: type) -> NDArray[np.floating]:
    """``block − mean`` computed in float64 and returned in the GEMM dtype ``dtype``."""
    return (np.asarray(block, dtype=np.float64) - mean).astype(dtype, copy=False)


def double_center(k: Float64) -> Float64:
    """HKH for a symmetric (n, n) matrix, in place and returned. H = I − 11ᵀ/n."""
    row = k.mean(axis=0)
    k -= row[None, :]
    k -= row[:, None]
    k += row.mean()
    return k
