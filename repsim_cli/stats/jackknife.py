"""Leave-one-out values and the jackknife standard error.

The inner-product metrics take their n leave-one-out values from the closed form of
:mod:`repsim_cli.stats.loo` when it is present; :func:`loo_weighted_cka` is the same closed form
derived here from the weighted HSIC of :mod:`repsim_cli.stats.weighted` with w = 1 − e_k
(O(n²) per cell: a few matrix–vector products), used until then and as a cross-check.

Jackknife standard error (Efron & Stein 1981; Efron 1982, "The Jackknife, the Bootstrap and Other
Resampling Plans", ch. 3): se = √((n−1)/n · Σ_k (θ_(k) − θ̄)²).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from .weighted import cka_ratio, without_diagonal

Float64 = NDArray[np.float64]


def jackknife_se(loo: Float64) -> float:
    """√((n−1)/n · Σ(θ_(k) − θ̄)²) over the finite leave-one-out values (NaN when fewer than 2)."""
    v = loo[np.isfinite(loo)]
    n = v.size
    if n < 2:
        return float("nan")
    return float(np.sqrt((n - 1) / n * np.sum((v - v.mean()) ** 2)))


ROW_BLOCK = 128  # rows of K and L reduced together (both blocks stay in cache)


def _row_reductions(k: Float64, l_: Float64, r: Float64, s: Float64) -> tuple[Float64, Float64, Float64]:
    """(Σ_j K_ij L_ij, (L r)_i, (K s)_i) for every row i, in one pass over K and L by row blocks."""
    n = k.shape[0]
    kl1, lr, ks = np.empty(n), np.empty(n), np.empty(n)
    for start in range(0, n, ROW_BLOCK):
        kb, lb = k[start : start + ROW_BLOCK], l_[start : start + ROW_BLOCK]
        kl1[start : start + ROW_BLOCK] = np.einsum("ij,ij->i", kb, lb)
        lr[start : start + ROW_BLOCK] = np.einsum("ij,j->i", lb, r)
        ks[start : start + ROW_BLOCK] = np.einsum("ij,j->i", kb, s)
    return kl1, lr, ks


def _loo_hsic(k: Float64, l_: Float64, unbiased: bool) -> Float64:
    """Scaled HSIC (as :func:`~repsim_cli.stats.weighted.weighted_hsic`) of every leave-one-out
    sample (n,), K and L symmetric (zero diagonals for ``unbiased``).

    With w = 1 − e_k (m = n − 1): wᵀ(K∘L)w = 1ᵀ(K∘L)1 − 2((K∘L)1)_k + K_kk L_kk;
    wᵀKw = 1ᵀK1 − 2r_k + K_kk (r = K1, s = L1); Σ_i w_i (Kw)_i (Lw)_i =
    rᵀs − (Lr)_k − (Ks)_k + ((K∘L)1)_k − (r_k − K_kk)(s_k − L_kk): O(n²) for all k together.
    """
    n = k.shape[0]
    m = n - 1.0
    r, s = k.sum(axis=1), l_.sum(axis=1)
    kl1, lr, ks = _row_reductions(k, l_, r, s)
    dk, dl = np.diag(k).copy(), np.diag(l_).copy()
    trace = kl1.sum() - 2.0 * kl1 + dk * dl
    a = r.sum() - 2.0 * r + dk
    b = s.sum() - 2.0 * s + dl
    cross = float(r @ s) - lr - ks + kl1 - (r - dk) * (s - dl)
    if unbiased:
        out: Float64 = trace + a * b / ((m - 1.0) * (m - 2.0)) - 2.0 / (m - 2.0) * cross
    else:
        out = trace - 2.0 / m * cross + a * b / (m * m)
    return out


def loo_weighted_cka(k: Float64, l_: Float64, *, debiased: bool = False) -> Float64:
    """CKA with each example left out in turn (n,), from two symmetric kernels (n, n)."""
    if debiased:
        k, l_ = without_diagonal(k), without_diagonal(l_)
    return cka_ratio(_loo_hsic(k, l_, debiased), _loo_hsic(k, k, debiased), _loo_hsic(l_, l_, debiased))


def loo_hsic(k: Float64, l_: Float64, *, debiased: bool = False) -> Float64:
    """Leave-one-out HSIC values (n,) of two symmetric kernels, on one scale for every pair of a
    run (the influence module's closed form when installed, else :func:`_loo_hsic`); ratios of
    them are leave-one-out CKA values."""
    try:
        from . import loo  # type: ignore[attr-defined]
    except ImportError:
        if debiased:
            k, l_ = without_diagonal(k), without_diagonal(l_)
        return _loo_hsic(k, l_, debiased)
    out: Float64 = np.asarray(loo.loo_hsic(k, l_, debiased=debiased), dtype=np.float64)
    return out


def loo_cka(k: Float64, l_: Float64, *, debiased: bool = False) -> Float64:
    """Leave-one-out CKA values (n,): the influence module's closed form when installed."""
    try:
        from . import loo  # type: ignore[attr-defined]
    except ImportError:
        return loo_weighted_cka(k, l_, debiased=debiased)
    out: Float64 = np.asarray(loo.loo_cka(k, l_, debiased=debiased), dtype=np.float64)
    return out


def dominating_examples(full: float, loo_values: Float64) -> NDArray[np.intp]:
    """Examples whose removal alone moves the value more than the influence threshold (the
    influence module's rule when installed; else: by more than 0.05 and by more than 10× the
    median shift)."""
    try:
        from . import loo  # type: ignore[attr-defined]
    except ImportError:
        shift = np.abs(loo_values - full)
        ok = np.isfinite(shift)
        if not ok.any():
            return np.empty(0, dtype=np.intp)
        med = float(np.median(shift[ok]))
        return np.flatnonzero(ok & (shift > 0.05) & (shift > 10.0 * med)).astype(np.intp)
    return np.asarray(loo.dominated(full, loo_values), dtype=np.intp)
