"""Jackknife standard errors from leave-one-out values.

The inner-product metrics take their n leave-one-out values in closed form from
:mod:`repsim_cli.stats.loo` (O(n²) per cell); the others recompute them (the generic path).

Jackknife standard error (Quenouille 1956; Efron & Stein 1981; Efron 1982, "The Jackknife, the
Bootstrap and Other Resampling Plans", ch. 3): se = √((n−1)/n · Σ_k (θ_(k) − θ̄)²).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

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
    """Leave-one-out HSIC values (n,) of two kernels that are already centred (HKH; with a zero
    diagonal when ``debiased``), by the closed form of :mod:`repsim_cli.stats.loo` without its
    re-centring copies. Its matrix–vector products run on one BLAS thread: a threaded GEMV on a
    busy machine costs more in thread wake-ups than the product itself. Ratios of these values
    are leave-one-out CKA values (:func:`repsim_cli.stats.loo.loo_cka`, to round-off)."""
    with threadpool_limits(1):
        return loo._loo_from_centred(k, l_, debiased)


def dominating_examples(full: float, values: Float64) -> NDArray[np.intp]:
    """Examples whose removal alone moves the value beyond the influence threshold, when they are
    a handful (:func:`repsim_cli.stats.loo.dominated`)."""
    return loo.dominated(full, values)
