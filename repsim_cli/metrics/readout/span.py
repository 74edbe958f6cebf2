"""The pair spectrum in the span of the two layers' columns, for layers narrower than n.

A layer with data X (n × p, centred as the ``center`` parameter says) has the kernel K = XXᵀ of
rank ≤ p, so Σ' = I + K/(b·tr K) differs from the identity only on the column space of X. With the
thin SVD X = U·diag(s)·Vᵀ (U: n × p orthonormal) and d = s²/(b·tr K),

    Σ' = I + U·diag(d)·Uᵀ.

For a pair (A, B) with p_a + p_b < n every generalised eigenvalue λ ≠ 1 of (Σ'_b, Σ'_a) lives in
span[U_a, U_b] (both matrices are the identity on its orthogonal complement). Write U_b in the
orthonormal basis [U_a, Q] of that span: C = U_aᵀU_b, R = U_b − U_a·C = Q·T (QR, only T kept), so
U_b = [U_a, Q]·P with P = [C; T]. In these coordinates Σ'_a = diag(1 + d_a, 1, …, 1), so whitening
by Σ'_a is a diagonal scaling W, and the shifts μ = λ − 1 are the eigenvalues of the
(p_a + p_b)-square symmetric matrix

    M = W·(P·diag(d_b)·Pᵀ − diag(d_a, 0))·W = F·Fᵀ − diag(d_a/(1 + d_a), 0),   F = W·P·diag(√d_b).

Per layer: one thin SVD of the float64 data (≈ 4n·p² flops, n·p floats kept instead of two n × n
matrices). Per pair: ≈ 4n·p_a·p_b + 2n·p_b² flops and one eigvalsh of order p_a + p_b, instead of
the ≈ (10/3)n³ of :func:`~.spectra.spectral_shifts`. Both give the same shifts up to round-off
(tested against each other).

References
----------
Schütt (2024/2025), "Bayesian comparisons between representations", arXiv:2411.08739 (Σ').
Golub & Van Loan, *Matrix Computations* (the symmetric-definite generalised eigenproblem; QR).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ...errors import DataError, ShapeMismatchError
from .layer import ReadoutLayer
from .spectra import SNAP_ULPS, order_shifts

Float64 = NDArray[np.float64]


@dataclass(frozen=True)
class ReadoutBasis:
    """One layer's prior predictive in factored form: Σ' = I + U·diag(scale·sq)·Uᵀ.

    ``basis`` is U (n, r) float64 with orthonormal columns (r = the layer's width, < n), ``sq``
    the squared singular values s² (r,) of the layer's data, ``trace`` = tr K = Σs², ``scale`` =
    1/(b·tr K), and ``digest`` a hash of U and s² that orders a pair canonically.
    """

    basis: Float64
    sq: Float64
    scale: float
    trace: float
    label: str
    digest: bytes

    @property
    def n(self) -> int:
        return int(self.basis.shape[0])

    @property
    def rank(self) -> int:
        return int(self.basis.shape[1])

    @property
    def weights(self) -> Float64:
        """d = scale·s², the eigenvalues of Σ' − I on the columns of U."""
        return np.asarray(self.scale * self.sq, dtype=np.float64)

    def load_kernel(self) -> Float64:
        """The layer's kernel K = U·diag(s²)·Uᵀ (n, n) float64 (for the dense path)."""
        scaled = self.basis * self.sq
        return np.asarray(scaled @ self.basis.T, dtype=np.float64)


def readout_basis(x: ArrayLike, b: float, label: str = "X") -> ReadoutBasis:
    """Factor a layer's Σ' from its (already centred as wanted) data X (n, p), p < n, in float64.

    One thin SVD of X. Raises :class:`DataError` for tr K = XᵀX's trace = 0 (a dead layer).

    References
    ----------
    Schütt (2024), arXiv:2411.08739 (Σ' = I + K/(b·tr K)).
    """
    import scipy.linalg  # deferred: scipy.linalg costs 0.2 s at start-up

    data = np.asarray(x, dtype=np.float64)
    u, s, _ = scipy.linalg.svd(data, full_matrices=False, check_finite=False)
    sq = s * s
    trace = float(np.sum(sq))
    if not trace > 0:
        raise DataError(
            f"{label}: tr K = {trace:g} (all activations zero?); the Bayesian readout distances "
            "need a kernel with positive trace"
        )
    scale = 0.0 if math.isinf(b) else 1.0 / (b * trace)
    u = np.asfortranarray(u)
    digest = hashlib.blake2b(u.tobytes(order="A") + sq.tobytes(), digest_size=16).digest()
    return ReadoutBasis(u, sq, scale, trace, label, digest)


def snap_tolerance(scale_trace: float) -> float:
    """Round-off level of the shifts: SNAP_ULPS ulps of the bound 1 + scale·tr K on cond(Σ')."""
    return SNAP_ULPS * float(np.finfo(np.float64).eps) * (1.0 + scale_trace)


def span_applies(a: ReadoutBasis | ReadoutLayer, b: ReadoutBasis | ReadoutLayer) -> bool:
    """Whether the pair's spectrum is computed in the span of its columns (both factored, and
    p_a + p_b < n)."""
    return (
        isinstance(a, ReadoutBasis) and isinstance(b, ReadoutBasis) and a.rank + b.rank < a.n
    )


def span_shifts(layer_a: ReadoutBasis, layer_b: ReadoutBasis) -> Float64:
    """Shifts μ = λ − 1 of a pair's generalised eigenvalues, from the span of its columns.

    The same quantity as :func:`~.spectra.spectral_shifts` (the m ≤ p_a + p_b shifts above
    round-off, ordered by |log λ| descending), with the pair put in a canonical order first (by
    the layers' digests), so that swapping the layers gives bitwise the same result.

    Returns
    -------
    ndarray, (m,) float64
    """
    if layer_a.n != layer_b.n:
        raise ShapeMismatchError(
            f"{layer_b.label}: {layer_b.n} stimuli, but {layer_a.label} has {layer_a.n}; the two "
            "kernels must cover the same stimuli"
        )
    first, second = (layer_a, layer_b) if layer_a.digest <= layer_b.digest else (layer_b, layer_a)
    d_a, d_b = first.weights, second.weights
    ra = first.rank
    coupling = first.basis.T @ second.basis  # C (r_a, r_b)
    residual = second.basis - first.basis @ coupling  # R = U_b − U_a·C (n, r_b)
    tri: Float64 = np.asarray(np.linalg.qr(residual, mode="r"))  # T (min(n, r_b), r_b)
    del residual
    factor = np.empty((ra + tri.shape[0], second.rank))
    factor[:ra] = coupling / np.sqrt(1.0 + d_a)[:, None]
    factor[ra:] = tri
    factor *= np.sqrt(d_b)[None, :]
    whitened = factor @ factor.T
    whitened[np.arange(ra), np.arange(ra)] -= d_a / (1.0 + d_a)
    import scipy.linalg  # deferred: scipy.linalg costs 0.2 s at start-up

    mu = scipy.linalg.eigh(whitened, eigvals_only=True, lower=True, overwrite_a=True,
                           check_finite=False, driver="evd")  # fmt: skip
    tol = max(snap_tolerance(float(np.sum(d_a))), snap_tolerance(float(np.sum(d_b))))
    return order_shifts(mu[np.abs(mu) > tol])
