"""Pair spectra: the generalised eigenvalues λ of (Σ'_b, Σ'_a), computed as shifts μ = λ − 1.

Every readout distance is invariant under a common invertible linear map, so after whitening with
Σ'_a it depends only on λ (Schütt 2024, arXiv:2411.08739). The shifts are the eigenvalues of
L⁻¹(Σ'_b − Σ'_a)L⁻ᵀ, which keeps the directions where the two layers agree (λ ≈ 1) accurate.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ...errors import DataError, ShapeMismatchError
from .layer import ReadoutLayer, readout_layer
from .params import resolve_b

Float64 = NDArray[np.float64]

# Shifts |λ − 1| below this many ulps of the bound 1 + 1/b on cond(Σ') are round-off (measured:
# at most 0.4 ulps for scaled and rotated copies of a layer, n = 20 to 1000).
SNAP_ULPS = 1024.0


def _snap_tolerance(layer: ReadoutLayer) -> float:
    """Round-off level of the shifts μ: SNAP_ULPS ulps of the bound 1 + ‖K̂‖ on cond(Σ')."""
    return SNAP_ULPS * float(np.finfo(np.float64).eps) * (1.0 + layer.scale * layer.trace)


def spectral_shifts(layer_a: ReadoutLayer, layer_b: ReadoutLayer) -> Float64:
    """Shifts μ = λ − 1 of the generalised eigenvalues of a pair, in canonical order.

    Per pair: D = Σ'_b − Σ'_a, M = L⁻¹ D L⁻ᵀ (LAPACK dsygst, ≈ n³) and ``eigvalsh`` (O(n³)).
    The pair is put in a canonical order first (by the sign of the first non-zero entry of D), so
    that swapping the layers gives bitwise the same result. The shifts are therefore those of
    (Σ'_b, Σ'_a) or of (Σ'_a, Σ'_b) (λ ↔ 1/λ), which every symmetric distance here treats alike;
    :func:`readout_eigenvalues` gives the directed ones.

    Returns
    -------
    ndarray, (m,) float64
        The m ≤ n shifts with |μ| above round-off, ordered by |log λ| descending (the order the
        Monte Carlo estimator assigns random numbers in). λ is 1 in the other n − m directions.

    References
    ----------
    Schütt (2024), arXiv:2411.08739; the symmetric-definite generalised eigenproblem reduced by
    a Cholesky factor (Golub & Van Loan, *Matrix Computations*), here in shifted form.
    """
    return _canonical_shifts(layer_a, layer_b)[0]


def _canonical_shifts(layer_a: ReadoutLayer, layer_b: ReadoutLayer) -> tuple[Float64, bool]:
    """The shifts and whether the pair was swapped into canonical order."""
    if layer_a.n != layer_b.n:
        raise ShapeMismatchError(
            f"{layer_b.label}: {layer_b.n} stimuli, but {layer_a.label} has {layer_a.n}; the two "
            "kernels must cover the same stimuli"
        )
    diff = layer_b.scale * layer_b.load_kernel() - layer_a.scale * layer_a.load_kernel()
    # Exactly symmetric afterwards (a no-op for symmetric kernels), and exactly negated by a swap.
    diff = diff + diff.T
    diff *= 0.5
    lead = float(diff.flat[0])  # almost always non-zero: no search over the whole matrix
    if lead == 0.0:
        nonzero = np.flatnonzero(diff)
        if nonzero.size == 0:
            return np.zeros(0), False
        lead = float(diff.flat[nonzero[0]])
    first = layer_a
    swapped = lead < 0
    if swapped:  # canonical order: x − y = −(y − x) exactly in IEEE arithmetic
        first = layer_b
        np.negative(diff, out=diff)
    diff = diff.T  # the Fortran-order view of the same symmetric matrix: no copy
    import scipy.linalg  # deferred: scipy.linalg costs 0.2 s at start-up
    from scipy.linalg.lapack import dsygst  # deferred: scipy.linalg costs 0.2 s at start-up
    # L⁻¹·diff·L⁻ᵀ in the lower triangle by LAPACK's reduction of the symmetric-definite
    # problem (≈ n³ flops, half of two triangular multiplies)
    whitened, info = dsygst(diff, first.chol, itype=1, lower=1, overwrite_a=1)
    if info != 0:  # cannot happen for a valid Cholesky factor; never silent
        raise DataError(f"{first.label}: LAPACK dsygst failed (info={info})")
    del diff
    mu = scipy.linalg.eigh(whitened, eigvals_only=True, lower=True, overwrite_a=True, driver="evd")
    tol = max(_snap_tolerance(layer_a), _snap_tolerance(layer_b))
    return order_shifts(mu[np.abs(mu) > tol]), swapped


def order_shifts(mu: ArrayLike) -> Float64:
    """Drop zero shifts, clip to λ > 0 and order by |log λ| descending (stable), float64 (m,)."""
    m = np.asarray(mu, dtype=np.float64).ravel()
    m = np.maximum(m[m != 0.0], np.nextafter(-1.0, 0.0))
    order = np.argsort(-np.abs(np.log1p(m)), kind="stable")
    return np.asarray(m[order], dtype=np.float64)


def readout_eigenvalues(
    kernel_a: ArrayLike, kernel_b: ArrayLike, b: float | None = None, a: float | None = None
) -> Float64:
    """Generalised eigenvalues λ of (Σ'_b, Σ'_a), Σ'_k = I + K_k/(b·tr K_k); (n,) float64, sorted.

    λ lies in [1/(1 + 1/b), 1 + 1/b]; round-off-level departures from 1 are set to exactly 1.
    Every distance of this module is a function of λ alone (see the ``*_from_eigenvalues``
    functions). Kernels of different sizes raise :class:`ShapeMismatchError`.

    References
    ----------
    Schütt (2024), arXiv:2411.08739.
    """
    ka = np.asarray(kernel_a, dtype=np.float64)
    kb = np.asarray(kernel_b, dtype=np.float64)
    if ka.shape != kb.shape:
        raise ShapeMismatchError(f"kernels differ in shape: {ka.shape} vs {kb.shape}")
    bb = resolve_b(ka.shape[0], b, a)
    mu, swapped = _canonical_shifts(
        readout_layer(ka, bb, "kernel_a"), readout_layer(kb, bb, "kernel_b")
    )
    if swapped:  # the shifts of (Σ'_a, Σ'_b): 1/λ − 1 = −μ/(1 + μ)
        mu = -mu / (1.0 + mu)
    lam = np.ones(ka.shape[0])
    lam[: mu.size] = 1.0 + mu
    return np.sort(lam)


def _shifts_of(lam: ArrayLike) -> Float64:
    lam = np.asarray(lam, dtype=np.float64).ravel()
    if lam.size and not (np.isfinite(lam).all() and lam.min() > 0):
        raise DataError("generalised eigenvalues must be finite and positive")
    return order_shifts(lam - 1.0)
