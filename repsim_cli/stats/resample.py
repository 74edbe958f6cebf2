"""Resampled example indices shared by every cell of a run.

Every replicate's indices come from ``(seed, n, stream)`` alone — never from the cells, layers,
chunk sizes, shard or resume point of the run — so a cell's statistics are the same whichever
run computes it. ``stream`` separates the bootstrap from the permutations so that asking for both
changes neither.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

BOOTSTRAP_STREAM = 1
PERMUTATION_STREAM = 2


def _rng(seed: int, n: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(n), int(stream)])


def bootstrap_indices(seed: int, n: int, replicates: int) -> NDArray[np.intp]:
    """(replicates, n) indices drawn with replacement from range(n); row b is replicate b."""
    return _rng(seed, n, BOOTSTRAP_STREAM).integers(0, n, size=(replicates, n)).astype(np.intp)


def bootstrap_weights(indices: NDArray[np.intp], n: int) -> NDArray[np.float64]:
    """Counts w (n, B) float64 of each example in each replicate: column b sums to n."""
    b = indices.shape[0]
    flat = (indices + (np.arange(b)[:, None] * n)).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n).T.astype(np.float64)


def permutations(seed: int, n: int, count: int) -> NDArray[np.intp]:
    """(count, n) permutations of range(n), applied to the examples of one side (the columns)."""
    rng = _rng(seed, n, PERMUTATION_STREAM)
    return np.stack([rng.permutation(n) for _ in range(count)]).astype(np.intp) if count else np.empty((0, n), np.intp)
