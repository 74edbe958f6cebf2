"""Bootstrap confidence intervals of one cell from its replicates: percentile and BCa.

- Percentile (Efron & Tibshirani 1993, ch. 13): the (1−ci)/2 and (1+ci)/2 quantiles of the
  replicates.
- BCa, bias-corrected and accelerated (Efron 1987, "Better bootstrap confidence intervals",
  JASA 82:171–185; Efron & Tibshirani 1993, ch. 14): the quantiles at the levels
  α₁,₂ = Φ(z₀ + (z₀ + z_α)/(1 − a(z₀ + z_α))), z_α = Φ⁻¹((1∓ci)/2), where the bias correction
  z₀ = Φ⁻¹(share of replicates below the estimate, ties counting one half) and the acceleration
  a = Σd³ / (6 (Σd²)^{3/2}), d_i = θ̄₍.₎ − θ₍ᵢ₎, from the n leave-one-out values θ₍ᵢ₎ (the
  jackknife). The conventions (ties, the linear interpolation of the quantiles) are those of
  ``scipy.stats.bootstrap(method="BCa")``; where SciPy's acceleration is 0/0 — every
  leave-one-out value equal, e.g. a layer against itself — a = 0 here (no skewness to correct)
  instead of an undefined interval.

Replicates and leave-one-out values that are not finite (a degenerate resample, a left-out set
the metric cannot score) are left out, as the jackknife's standard error leaves them; the
interval is NaN when no replicate is left, and a BCa interval is NaN when z₀ is infinite (every
replicate on one side of the estimate) or fewer than two leave-one-out values are finite.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

Float64 = NDArray[np.float64]
METHODS = ("percentile", "bca")
NAN_PAIR = (math.nan, math.nan)


def percentile_interval(reps: Float64, ci: float) -> tuple[float, float]:
    """The percentile interval (low, high) at level ``ci`` of the replicates ``reps`` (B,)."""
    v = reps[np.isfinite(reps)]
    if v.size == 0:
        return NAN_PAIR
    lo, hi = np.quantile(v, [(1.0 - ci) / 2.0, 1.0 - (1.0 - ci) / 2.0])
    return float(lo), float(hi)


def acceleration(loo: Float64) -> float:
    """The BCa acceleration a = Σd³ / (6 (Σd²)^{3/2}) of the finite leave-one-out values ``loo``
    (n,), d = mean − loo; 0 when they are all equal, NaN when fewer than two are finite."""
    loo = loo[np.isfinite(loo)]
    if loo.size < 2:
        return math.nan
    shifted = loo - loo[0]  # exact zeros for equal values (their mean itself may round)
    d = shifted.mean() - shifted
    ss = float(np.sum(d * d))
    return float(np.sum(d**3)) / (6.0 * ss**1.5) if ss > 0.0 else 0.0


def bca_interval(reps: Float64, estimate: float, loo: Float64, ci: float) -> tuple[float, float]:
    """The BCa interval (low, high) at level ``ci`` from the replicates ``reps`` (B,), the
    estimate on the full sample and its ``loo`` (n,) leave-one-out values."""
    # imported when used: SciPy's import takes ~0.18 s, more than a small compare
    from scipy.special import ndtr, ndtri

    v = reps[np.isfinite(reps)]
    a = acceleration(np.asarray(loo, dtype=np.float64))
    if v.size == 0 or not math.isfinite(estimate) or not math.isfinite(a):
        return NAN_PAIR
    below = (np.count_nonzero(v < estimate) + np.count_nonzero(v <= estimate)) / (2.0 * v.size)
    z0 = float(ndtri(below))
    if not math.isfinite(z0):
        return NAN_PAIR
    levels = []
    for tail in ((1.0 - ci) / 2.0, 1.0 - (1.0 - ci) / 2.0):
        shifted = z0 + float(ndtri(tail))
        levels.append(float(ndtr(z0 + shifted / (1.0 - a * shifted))))
    lo, hi = np.quantile(v, levels)
    return float(lo), float(hi)
