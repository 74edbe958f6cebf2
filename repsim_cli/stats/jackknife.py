"""Jackknife standard errors from leave-one-out values.

The inner-product metrics take their n leave-one-out values in closed form (O(n²) per cell), by
the formulas of :mod:`repsim_cli.stats.loo` (the tests check them against ``loo.loo_cka`` and
against recomputation): with A = K₋ₖ, B = L₋ₖ, m = n − 1, r = K1, s = L1, h = (K∘L)1,

    tr(AB) = Σh − 2hₖ + KₖₖLₖₖ,   1ᵀA1 = 1ᵀr − 2rₖ + Kₖₖ,
    1ᵀAB1 = rᵀs − (Lr)ₖ − (Ks)ₖ + hₖ − (rₖ − Kₖₖ)(sₖ − Lₖₖ).

Here they run on kernels prepared once per layer (:class:`LayerTerms`): double-centred in float64
(r = 0, so the biased form needs only h) or, for the unbiased estimator, with the diagonal
removed (r kept per layer, and the products Lr, Ks). The runner takes every pair's h at once as
small GEMMs over groups of layers (:mod:`.packed`), and Lr, Ks as one GEMM per kernel; the other
metrics recompute the n values (the generic path).

Jackknife standard error (Quenouille 1956; Efron & Stein 1981; Efron 1982, "The Jackknife, the
Bootstrap and Other Resampling Plans", ch. 3): se = √((n−1)/n · Σ_k (θ₍ₖ₎ − θ̄)²).
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class LayerTerms:
    """A layer's kernel prepared for leave-one-out: ``k`` double-centred (biased) or centred with
    a zero diagonal (unbiased), its row sums ``r`` (None: zero, the biased case) and diagonal."""

    k: Float64
    r: Float64 | None
    diag: Float64
    unbiased: bool


def loo_layer_terms(centred: Float64, *, unbiased: bool) -> LayerTerms:
    """:class:`LayerTerms` of a double-centred kernel (n, n) (not modified)."""
    if not unbiased:
        return LayerTerms(centred, None, np.diagonal(centred).copy(), False)
    k = np.array(centred, dtype=np.float64, copy=True)
    np.fill_diagonal(k, 0.0)
    return LayerTerms(k, k.sum(axis=1), np.zeros(k.shape[0]), True)


def loo_hsic_biased(h: Float64, dk: Float64, dl: Float64) -> Float64:
    """Leave-one-out biased HSIC values (n,) of two double-centred kernels (row sums 0) from their
    Hadamard row sums h = (K∘L)1 and diagonals: the biased case of :func:`loo.loo_from_sums`."""
    return loo.loo_from_sums(h, dk, dl, debiased=False)


def dominating_examples(full: float, values: Float64) -> NDArray[np.intp]:
    """Examples whose removal alone moves the value beyond the influence threshold, when they are
    a handful (:func:`repsim_cli.stats.loo.dominated`)."""
    return loo.dominated(full, values)
