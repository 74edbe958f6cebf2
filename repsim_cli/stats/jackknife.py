"""Jackknife standard errors from leave-one-out values.

The inner-product metrics take their n leave-one-out values in closed form from
:mod:`repsim_cli.stats.loo` (O(n²) per cell); the others recompute them (the generic path).

Jackknife standard error (Quenouille 1956; Efron & Stein 1981; Efron 1982, "The Jackknife, the
Bootstrap and Other Resampling Plans", ch. 3): se = √((n−1)/n · Σ_k (θ_(k) − θ̄)²).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from . import loo

Float64 = NDArray[np.float64]


def jackknife_se(values: Float64) -> float:
    """√((n−1)/n · Σ(θ_(k) − θ̄)²) over the finite leave-one-out values (NaN when fewer than 2)."""
    v = values[np.isfinite(values)]
    n = v.size
    if n < 2:
        return float("nan")
    return float(np.sqrt((n - 1) / n * np.sum((v - v.mean()) ** 2)))


def loo_hsic(k: Float64, l_: Float64, *, debiased: bool = False) -> Float64:
    """Leave-one-out HSIC values (n,) of two symmetric kernels (:func:`repsim_cli.stats.loo.loo_hsic`);
    ratios of them are leave-one-out CKA values."""
    return loo.loo_hsic(k, l_, debiased=debiased)


def dominating_examples(full: float, values: Float64) -> NDArray[np.intp]:
    """Examples whose removal alone moves the value beyond the influence threshold, when they are
    a handful (:func:`repsim_cli.stats.loo.dominated`)."""
    return loo.dominated(full, values)
