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


def _loo_hsic(k: Float64, l_: Float64, unbiased: bool) -> Float64:
    """Scaled HSIC (as :func:`~repsim_cli.stats.weighted.weighted_hsic`) of every leave-one-out
    sample (n,), K and L symmetric (zero diagonals for ``unbiased``)."""
    n = k.shape[0]
    m = n - 1.0
    kl = k * l_
    kl1 = kl.sum(axis=1)
    r, s = k.sum(axis=1), l_.sum(axis=1)
    dk, dl, dkl = np.diag(k), np.diag(l_), np.diag(kl)
    trace = kl1.sum() - 2.0 * kl1 + dkl
    a = r.sum() - 2.0 * r + dk
    b = s.sum() - 2.0 * s + dl
    cross = float(r @ s) - l_ @ r - k @ s + kl1 - (r - dk) * (s - dl)
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
