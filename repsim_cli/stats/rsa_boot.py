"""Bootstrap replicates of RSA with copy–copy pairs excluded, as rsatoolbox does.

A replicate that holds an example twice has, between the two copies, a dissimilarity of 0 that
no pair of distinct stimuli has: it acts like a diagonal entry of the RDM. rsatoolbox's bootstrap
over patterns excludes such pairs from the RDM comparison (Nili et al. 2014; rsatoolbox
``inference.bootstrap``, pattern-pair NaNs ignored by ``compare``). Here each layer's RDM is
computed once from the full sample (``repsim_cli.metrics.rsa``, the same code as the metric);
a replicate takes the entries (idxᵢ, idxⱼ), i < j, with idxᵢ ≠ idxⱼ — the same pairs for every
layer — and compares them as the metric does (ranks, centring, Kendall's τ-b).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..metrics._kernels import (
    VectorState,
    centered_gram_dense,
    roundoff_rtol,
    vector_ratio,
    vector_state,
)
from ..metrics.rsa import _kendall_matrix, _layer_rdm, comparison_vector

Float64 = NDArray[np.float64]


def _square_rdm(x: np.ndarray, rdm: str, label: str) -> tuple[Float64 | None, float]:
    """The layer's full-sample RDM as a square (n, n) float64 matrix and its tie tolerance."""
    z = np.asarray(x, dtype=np.float64).reshape(x.shape[0], -1)
    kc = centered_gram_dense(z, label, "rsa")
    ks = None
    if rdm == "correlation":
        zs = z - z.mean(axis=1, keepdims=True)
        ks = zs @ zs.T
    vec, tolerance = _layer_rdm(kc, ks, z.shape[1], rdm, roundoff_rtol(np.float64), label)
    if vec is None:
        return None, tolerance
    n = z.shape[0]
    square = np.zeros((n, n))
    square[np.triu_indices(n, 1)] = vec
    return square + square.T, tolerance


def rsa_replicates(
    params: Mapping[str, Any], data: Mapping[str, np.ndarray], row_keys: Sequence[str],
    col_keys: Sequence[str], indices: NDArray[np.intp],
) -> Float64:
    """RSA of every replicate (B, len(row_keys), len(col_keys)) with copy–copy pairs excluded;
    ``indices`` (B, n) are the replicates' examples."""
    rdm, compare = str(params["rdm"]), str(params["compare"])
    keys = list(dict.fromkeys([*row_keys, *col_keys]))
    squares = {k: _square_rdm(data[k], rdm, k) for k in keys}
    n = indices.shape[1]
    iu, ju = np.triu_indices(n, 1)
    out = np.full((indices.shape[0], len(row_keys), len(col_keys)), np.nan)
    for b, idx in enumerate(indices):
        a_idx, b_idx = idx[iu], idx[ju]
        keep = a_idx != b_idx
        a_idx, b_idx = a_idx[keep], b_idx[keep]
        states: dict[str, VectorState] = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # degenerate replicates are NaN
            for k in keys:
                square, tolerance = squares[k]
                vec = None if square is None else comparison_vector(square[a_idx, b_idx], compare, tolerance, k)
                states[k] = vector_state(vec)
            for i, ka in enumerate(row_keys):
                for j, kb in enumerate(col_keys):
                    sa, sb = states[ka], states[kb]
                    if compare == "kendall":
                        out[b, i, j] = _kendall_matrix([sa.vector], [sb.vector], same=False)[0, 0]
                    else:
                        out[b, i, j] = vector_ratio(sa, sb)[0]
    return out
