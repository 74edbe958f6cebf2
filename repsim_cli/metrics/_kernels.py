"""Helpers shared by the kernel, RSA, neighbour and distance-correlation metrics.

Everything here works on n×n float64 matrices that the engine provides (the centred Gram
Kc = XcXcᵀ, or the raw / row-centred Gram) or that the in-memory functions build the same way, so
that the chunked engine path and the in-memory path run the same arithmetic after the Gram.

* squared distances from a centred Gram, with round-off residues of identical points set to 0;
* double centring (HKH) and Székely–Rizzo U-centring;
* "alignment" matrices: for metrics of the form ⟨v_a, v_b⟩ / √(⟨v_a, v_a⟩⟨v_b, v_b⟩) over one
  per-layer vector v (a centred kernel, a double-centred distance matrix, centred RDM ranks), the
  per-layer vector is the metric's state (:class:`VectorState`, once per layer) and each pair is
  one dot product.

References
----------
Kornblith, Norouzi, Lee & Hinton (2019), "Similarity of Neural Network Representations Revisited",
ICML (``center_gram``). Székely & Rizzo (2014), "Partial distance correlation with methods for
dissimilarities", Ann. Statist. 42(6) (U-centring).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._warnings import RepsimWarning
from ..engine.gram import CONSTANT_RTOL
from ..engine.stats import double_center
from ..errors import DataError
from .contract import StateCost

Float64 = NDArray[np.float64]

# A squared distance below ROUNDOFF_FACTOR·eps·(q_i + q_j) is indistinguishable from round-off of
# the Gram product it came from (q: the squared row norms), so it is taken as an exact 0.
ROUNDOFF_FACTOR = 64.0

__all__ = [
    "ROUNDOFF_FACTOR",
    "as_matrix",
    "centered_gram_dense",
    "double_center",
    "pair_ratio",
    "ratio_matrix",
    "roundoff_rtol",
    "squared_distances",
    "u_center",
    "vector_cost",
    "vector_ratio",
    "vector_state",
]


def roundoff_rtol(dtype: np.dtype | type = np.float64) -> float:
    """Relative tolerance for "zero up to round-off" of a Gram computed in ``dtype``."""
    return ROUNDOFF_FACTOR * float(np.finfo(dtype).eps)


def as_matrix(x: ArrayLike) -> Float64:
    """``x`` as a float64 (n, D) matrix (trailing feature axes flattened)."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    elif a.ndim > 2:
        a = a.reshape(a.shape[0], -1)
    return a


def centered_gram_dense(x: ArrayLike, label: str, metric: str) -> Float64:
    """Kc = XcXcᵀ (n, n) float64 of an in-memory X (n, D), centred per unit.

    Raises :class:`DataError` for a constant X (‖Xc‖²_F ≤ 1e-20·‖X‖²_F, the engine's test) or one
    holding NaN/Inf, as the engine does for a stored layer.
    """
    a = as_matrix(x)
    if not np.isfinite(a).all():
        raise DataError(f"{label} contains NaN or Inf values")
    xc = a - a.mean(axis=0)
    if not float(np.sum(xc * xc)) > CONSTANT_RTOL * float(np.sum(a * a)):
        raise DataError(f"{label} is constant (zero variance); {metric} is undefined")
    return np.asarray(xc @ xc.T, dtype=np.float64)


def squared_distances(kc: Float64, rtol: float) -> Float64:
    """Squared Euclidean distances D²_ij = q_i + q_j − 2·Kc_ij (n, n) float64, from a Gram.

    ``kc`` is any Gram of the rows (centred or not: distances do not see translations); it is not
    modified. Entries at or below ``rtol``·(q_i + q_j) — residues of the product for identical
    rows, including the tiny negatives a raw "−2XXᵀ + diag" leaves — are set to exactly 0, as is
    the diagonal.
    """
    q = np.diag(kc).copy()
    d2 = squared_distance_tile(kc, q, q, rtol)
    np.fill_diagonal(d2, 0.0)
    return d2


def squared_distance_tile(kc: Float64, q_rows: Float64, q_cols: Float64, rtol: float) -> Float64:
    """D²_ij = q_i + q_j − 2·Kc_ij for a tile (I, J) of a Gram, new float64 (I, J): ``q_rows``
    and ``q_cols`` are the squared norms of its rows and columns; entries at or below
    ``rtol``·(q_i + q_j) set to 0 as in :func:`squared_distances` (its diagonal is the caller's)."""
    d2 = kc * -2.0
    d2 += q_rows[:, None]
    d2 += q_cols[None, :]
    floor = np.add.outer(q_rows, q_cols)
    floor *= rtol
    d2[d2 <= floor] = 0.0
    return d2


def u_center(k: Float64) -> Float64:
    """Székely–Rizzo U-centring of a symmetric (n, n) matrix, in place and returned (n ≥ 4).

    diag ← 0; m = colsum/(n−2); m ← m − Σm/(2(n−1)); K ← K − m_i − m_j; diag ← 0. Then
    ⟨Ũ(K), Ũ(L)⟩/(n(n−3)) is the unbiased HSIC of Song et al. (2012) (Kornblith's
    ``center_gram(unbiased=True)``).
    """
    n = k.shape[0]
    np.fill_diagonal(k, 0.0)
    col = k.sum(axis=0) / (n - 2.0)
    col -= col.sum() / (2.0 * (n - 1.0))
    k -= col[:, None]
    k -= col[None, :]
    np.fill_diagonal(k, 0.0)
    return k


def ratio_matrix(h_ab: Float64, h_aa: Float64, h_bb: Float64, what: str) -> Float64:
    """h_ab/√(h_aa·h_bb) elementwise (h_aa: (La,), h_bb: (Lb,) broadcast to (La, Lb)).

    A NaN self term means that layer was already reported degenerate (its warning was emitted
    when its statistics were computed): its cells are NaN without a further warning. A self term
    ≤ 0 that is not NaN gives NaN with a :class:`RepsimWarning` naming ``what``.
    """
    denom = h_aa[:, None] * h_bb[None, :]
    known = ~np.isnan(denom)
    bad = known & ~(denom > 0)
    if np.any(bad):
        warnings.warn(
            f"{what}: the self-similarity term of a layer is not positive; the value is NaN",
            RepsimWarning,
            stacklevel=3,
        )
    ok = known & ~bad
    out = np.full(denom.shape, np.nan)
    out[ok] = h_ab[ok] / np.sqrt(denom[ok])
    return out


@dataclass(frozen=True)
class VectorState:
    """Per-layer state of the "alignment" metrics ⟨v_a, v_b⟩/√(⟨v_a, v_a⟩⟨v_b, v_b⟩): the layer's
    1-D float64 vector (None for a layer already reported degenerate, whose cells are NaN) and its
    self inner product."""

    vector: Float64 | None
    self_inner: float


def vector_state(vector: Float64 | None) -> VectorState:
    """Wrap a per-layer vector with its self inner product (NaN for a degenerate layer)."""
    if vector is None:
        return VectorState(None, float("nan"))
    return VectorState(vector, float(np.dot(vector, vector)))


NOT_POSITIVE_NOTE = "the self-similarity term of a layer is not positive; the value is NaN"


def vector_ratio(a: VectorState, b: VectorState) -> tuple[float, str | None]:
    """⟨v_a, v_b⟩/√(h_aa·h_bb) for two states (one dot product); a self term ≤ 0 that is not
    NaN gives NaN with a note."""
    if a.vector is None or b.vector is None:
        return float("nan"), None
    h = a.self_inner if a is b else float(np.dot(a.vector, b.vector))
    denom = a.self_inner * b.self_inner
    if not denom > 0:
        return float("nan"), NOT_POSITIVE_NOTE
    return h / float(np.sqrt(denom)), None


def vector_cost(n: int, width: int, side: str, params: object) -> StateCost:
    """An n×n per-layer matrix built in O(n²) (times a small constant)."""
    return StateCost(bytes=8.0 * n * n, flops=40.0 * n * n)


def pair_ratio(u: Float64 | None, v: Float64 | None, what: str) -> float:
    """⟨u, v⟩/(‖u‖‖v‖) for two per-layer vectors of the in-memory functions (None → NaN)."""
    if u is None or v is None:
        return float("nan")
    h = np.array([[float(np.dot(u, v))]])
    return float(ratio_matrix(h, np.array([np.dot(u, u)]), np.array([np.dot(v, v)]), what)[0, 0])
