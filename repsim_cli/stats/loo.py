"""Closed-form leave-one-out HSIC and CKA, and the rule that says when a few examples dominate.

For symmetric n×n kernel (Gram) matrices K and L of the same n examples, the value "with example
k left out" is the statistic of the (n−1)×(n−1) submatrices K₋ₖ, L₋ₖ (row and column k deleted),
**re-centred over the n−1 examples that remain** — exactly what recomputing the metric from the
n−1 rows of data gives. All n of them come from O(n²) work per pair: the row sums r = K1, s = L1,
the Hadamard row sums h = (K∘L)1, the products Ls, Kr and the diagonals. Writing A = K₋ₖ,
B = L₋ₖ and m = n − 1:

    tr(AB)   = Σ(K∘L) − 2hₖ + KₖₖLₖₖ
    1ᵀA1     = 1ᵀK1 − 2rₖ + Kₖₖ
    1ᵀAB1    = rᵀs − (Lr)ₖ − (Ks)ₖ + hₖ − (rₖ − Kₖₖ)(sₖ − Lₖₖ)

Conventions
-----------
* Biased HSIC (Gretton et al. 2005): tr(HₘAHₘB)/(m − 1)² with Hₘ = I − 11ᵀ/m (for the full data:
  tr(HKHL)/(n − 1)²). ``repsim_cli.metrics.cka`` uses the unnormalised ⟨HKH, HLH⟩; the factor
  cancels in CKA.
* Debiased HSIC: the unbiased estimator of Song et al. (2012), eq. 5, on the kernels with their
  diagonals set to 0 (K̃):
  [tr(ÃB̃) + 1ᵀÃ1·1ᵀB̃1/((m−1)(m−2)) − 2/(m−2)·1ᵀÃB̃1] / (m(m−3)); needs m ≥ 4 (n ≥ 5).
* Centring: both estimators are unchanged when Kᵢⱼ → Kᵢⱼ + aᵢ + aⱼ + c (off the diagonal for
  the debiased one), and such terms stay of that form in every submatrix. So K may be the raw
  Gram XXᵀ, the centred Gram XcXcᵀ or any kernel matrix; the linear kernel's results do not
  depend on the centring. Internally K and L are first double-centred over all n examples
  (HKH, an O(n²) step) so the formulas above work on small, well-scaled numbers. A raw Gram of
  data whose mean is much larger than its spread has already lost precision in its entries:
  pass the centred Gram when you have it.
* CKA = HSIC(K, L)/√(HSIC(K, K)·HSIC(L, L)) (Kornblith et al. 2019); for RBF CKA the kernel
  matrices are fixed (bandwidth from the full data) and passed uncentred or centred.

References
----------
Gretton, Bousquet, Smola & Schölkopf (2005), "Measuring statistical dependence with
Hilbert-Schmidt norms", ALT. Song, Smola, Gretton, Bedo & Borgwardt (2012), "Feature selection via
dependence maximization", JMLR 13 (unbiased HSIC). Kornblith, Norouzi, Lee & Hinton (2019),
"Similarity of Neural Network Representations Revisited", ICML. Quenouille (1956) and Efron &
Stein (1981) for the jackknife the leave-one-out values feed. Davari et al. (2022), "Reliability
of CKA as a similarity measure in deep learning" (a few moved examples decide linear CKA).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import DataError
from .weighted import cka_ratio

Float64 = NDArray[np.float64]

__all__ = [
    "DOMINANT_SHARE",
    "MIN_RELATIVE_CHANGE",
    "cka",
    "dominance_threshold",
    "dominated",
    "dominated_many",
    "hsic",
    "loo_cka",
    "loo_hsic",
]

# The verdict "a handful of examples decides this value" needs at most this share of the examples
# (at least one example) to move it beyond the threshold of :func:`dominance_threshold`.
DOMINANT_SHARE = 0.01
# Below this change relative to the value's scale, no example is said to dominate (round-off,
# identical examples, a metric that is flat in every example).
MIN_RELATIVE_CHANGE = 1e-3
# 1.4826·MAD estimates the standard deviation of Gaussian data (Hampel 1974).
MAD_TO_SD = 1.482602218505602


def _checked(k: ArrayLike, l: ArrayLike, min_n: int) -> tuple[Float64, Float64]:
    a = np.asarray(k, dtype=np.float64)
    b = np.asarray(l, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise DataError(f"K must be a square matrix, got shape {a.shape}")
    if b.shape != a.shape:
        raise DataError(f"K is {a.shape} but L is {b.shape}: kernels of the same examples are needed")
    if a.shape[0] < min_n:
        raise DataError(f"leave-one-out needs at least {min_n} examples here, got n={a.shape[0]}")
    # A NaN or Inf anywhere makes the sum NaN or Inf (no n×n temporary, unlike np.isfinite).
    if not (math.isfinite(float(a.sum())) and math.isfinite(float(b.sum()))):
        raise DataError("a kernel matrix contains NaN or Inf values")
    return a, b


def double_centre(k: Float64, *, copy: bool = True) -> Float64:
    """HKH of a symmetric kernel (n, n) in float64 (in place when ``copy`` is False)."""
    out = np.array(k, dtype=np.float64, copy=True) if copy else k
    row = out.mean(axis=1)
    out -= row[:, None]
    out -= row[None, :]
    out += row.mean()
    return out


def _centred(k: Float64, skip: bool = False) -> Float64:
    """HKH (a copy); ``k`` itself when ``skip``."""
    return k if skip else double_centre(k)


def _min_n(debiased: bool) -> int:
    # leave-one-out leaves m = n − 1 examples: the biased estimator needs m ≥ 2, the unbiased m ≥ 4.
    return 5 if debiased else 3


def _loo_from_centred(kc: Float64, lc: Float64, debiased: bool) -> Float64:
    """Leave-one-out HSIC (n,) of K and L (exact for any K, L; well conditioned when centred).

    For the debiased estimator the diagonals count as 0 (K̃ = K − diag K) without a copy: the
    row sums, Hadamard row sums and products are corrected by their diagonal terms.
    """
    dk, dl = np.diagonal(kc), np.diagonal(lc)
    r, s = kc.sum(axis=1), lc.sum(axis=1)
    h = np.einsum("ij,ij->i", kc, lc)
    if debiased:
        r, s, h = r - dk, s - dl, h - dk * dl
        l_r, k_s = lc @ r - dl * r, kc @ s - dk * s
        dk, dl = np.zeros_like(dk), np.zeros_like(dl)
    else:
        l_r, k_s = lc @ r, kc @ s
    return loo_from_sums(h, dk, dl, debiased=debiased, r=r, s=s, l_r=l_r, k_s=k_s)


def loo_from_sums(h: Float64, dk: Float64, dl: Float64, *, debiased: bool, r: Float64 | None = None,
                  s: Float64 | None = None, l_r: Float64 | None = None,
                  k_s: Float64 | None = None) -> Float64:
    """Leave-one-out HSIC values (n,) from a pair's sums (the module docstring's formulas): the
    Hadamard row sums h = (K∘L)1 and diagonals ``dk``, ``dl``, with the row sums r = K1, s = L1
    and the products ``l_r`` = Lr, ``k_s`` = Ks — all 0 when omitted (double-centred kernels).
    ``debiased``: the unbiased estimator (diagonals already counted as 0 by the caller)."""
    n = h.shape[0]
    m = float(n - 1)
    zero = np.zeros(n)
    r, s = (zero if r is None else r), (zero if s is None else s)
    l_r, k_s = (zero if l_r is None else l_r), (zero if k_s is None else k_s)
    trace_ab = h.sum() - 2.0 * h + dk * dl
    sum_a = r.sum() - 2.0 * r + dk
    sum_b = s.sum() - 2.0 * s + dl
    ones_ab_ones = float(r @ s) - l_r - k_s + h - (r - dk) * (s - dl)
    if debiased:
        out = (trace_ab + sum_a * sum_b / ((m - 1.0) * (m - 2.0))
               - 2.0 / (m - 2.0) * ones_ab_ones) / (m * (m - 3.0))  # fmt: skip
    else:
        out = (trace_ab - 2.0 / m * ones_ab_ones + sum_a * sum_b / (m * m)) / ((m - 1.0) ** 2)
    return np.asarray(out, dtype=np.float64)


def loo_hsic(K: ArrayLike, L: ArrayLike, *, debiased: bool = False, centred: bool = False) -> Float64:
    """HSIC of the n − 1 examples left when example k is left out, for every k.

    Parameters
    ----------
    K, L : (n, n) array_like
        Symmetric kernel (Gram) matrices of the same n examples, centred or not (see the module
        docstring); not modified.
    debiased : bool
        The unbiased estimator of Song et al. (2012) (needs n ≥ 5) instead of the biased
        tr(HKHL)/(n−1)² one (n ≥ 3).
    centred : bool
        True when K and L are already double-centred over the n examples (as the engine's
        Kc = XcXcᵀ is): the internal centring copy (2 n×n matrices) is skipped. The result is
        the same in exact arithmetic for any K; centring only keeps the sums well conditioned.

    Returns
    -------
    (n,) float64
        Entry k is HSIC(K₋ₖ, L₋ₖ), computed in O(n²) in total (no recomputation per example).
    """
    a, b = _checked(K, L, _min_n(debiased))
    return _loo_from_centred(_centred(a, centred), _centred(b, centred), debiased)


def hsic(K: ArrayLike, L: ArrayLike, *, debiased: bool = False) -> float:
    """HSIC of all n examples in the conventions of :func:`loo_hsic` (n ≥ 2; debiased n ≥ 4)."""
    a, b = _checked(K, L, 4 if debiased else 2)
    kc, lc = _centred(a), _centred(b)
    if debiased:
        np.fill_diagonal(kc, 0.0)
        np.fill_diagonal(lc, 0.0)
    n = float(a.shape[0])
    inner = float(np.einsum("ij,ij->", kc, lc))
    if not debiased:
        return inner / (n - 1.0) ** 2
    r, s = kc.sum(axis=1), lc.sum(axis=1)
    total = inner + float(r.sum()) * float(s.sum()) / ((n - 1.0) * (n - 2.0))
    return (total - 2.0 / (n - 2.0) * float(r @ s)) / (n * (n - 3.0))


def loo_cka(K: ArrayLike, L: ArrayLike, *, debiased: bool = False, centred: bool = False) -> Float64:
    """CKA of the n − 1 examples left when example k is left out, for every k: (n,) float64.

    From :func:`loo_hsic` of (K, L), (K, K) and (L, L). For RBF CKA pass the kernel matrices built
    with the full data's bandwidth (they are held fixed). Entries whose self terms are not positive
    (possible for the debiased estimator, or a left-out set that is constant) are NaN.
    ``centred``: as for :func:`loo_hsic`.
    """
    a, b = _checked(K, L, _min_n(debiased))
    kc, lc = _centred(a, centred), _centred(b, centred)
    return cka_ratio(_loo_from_centred(kc, lc, debiased), _loo_from_centred(kc, kc, debiased),
                  _loo_from_centred(lc, lc, debiased))  # fmt: skip


def cka(K: ArrayLike, L: ArrayLike, *, debiased: bool = False) -> float:
    """CKA of all n examples from kernel matrices, in the conventions of :func:`loo_cka`."""
    h = np.array([hsic(K, L, debiased=debiased)])
    return float(cka_ratio(h, np.array([hsic(K, K, debiased=debiased)]),
                        np.array([hsic(L, L, debiased=debiased)]))[0])  # fmt: skip


def dominance_threshold(full: float, loo: ArrayLike) -> float:
    """The change |Δₖ − median Δ| beyond which one example's removal is said to dominate the value.

    Δₖ = looₖ − full. The threshold is √n robust standard deviations of the changes,
    √n·1.4826·MAD(Δ): the jackknife standard error of the value is √((n−1)/n·Σ(Δₖ − Δ̄)²) ≈
    √n·sd(Δ), so an example beyond it moves the value, by itself, by more than the sampling
    uncertainty that the well-behaved examples imply (the MAD is not inflated by the few examples
    it is meant to find). It is never below MIN_RELATIVE_CHANGE × max(|full|, max|loo|) — a floor
    that keeps round-off and flat metrics (MAD ≈ 0) from flagging anything. NaN when no finite
    leave-one-out value exists.
    """
    values = np.asarray(loo, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.any() or not math.isfinite(full):
        return float("nan")
    return float(_rule(np.array([full]), values[finite][None, :], values.size)[0][0])


def _rule(full: Float64, values: Float64, n: int) -> tuple[Float64, Float64, Float64]:
    """The dominance rule for c cells at once: ``full`` (c,), their finite leave-one-out values
    ``values`` (c, m), ``n`` the examples counted (√n and the share). Returns the thresholds (c,),
    the changes Δ (c, m) and their distances from the median change |Δ − median Δ| (c, m)."""
    delta = values - full[:, None]
    centre = np.median(delta, axis=1)
    spread = np.abs(delta - centre[:, None])
    mad = np.median(spread, axis=1)
    scale = np.maximum(np.abs(full), np.abs(values).max(axis=1))
    threshold = np.maximum(math.sqrt(n) * MAD_TO_SD * mad, MIN_RELATIVE_CHANGE * scale)
    return threshold, delta, spread


def _flags(threshold: float, delta: Float64, spread: Float64, n: int) -> NDArray[np.intp]:
    """Positions beyond the threshold, largest |Δ| first — when they are a handful."""
    flagged = np.flatnonzero(spread > threshold)
    if flagged.size == 0 or flagged.size > max(1, int(DOMINANT_SHARE * n)):
        return np.empty(0, dtype=np.intp)
    order = np.argsort(-np.abs(delta[flagged]), kind="stable")
    return np.asarray(flagged[order], dtype=np.intp)


def dominated(full: float, loo: ArrayLike) -> NDArray[np.intp]:
    """The examples whose removal alone moves the value beyond :func:`dominance_threshold`,
    sorted by |Δₖ| (largest first) — empty unless they are a handful.

    Parameters
    ----------
    full : float
        The value on all n examples.
    loo : (n,) array_like
        The leave-one-out values (NaN entries are never flagged).

    Returns
    -------
    (k,) intp
        Indices of the flagged examples when 1 ≤ k ≤ max(1, ⌊DOMINANT_SHARE·n⌋) (at most 1% of
        the examples decide the value); empty otherwise — including when many examples exceed the
        threshold, which is a broad spread of influence (heavy tails), not domination by a few.
    """
    values = np.asarray(loo, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.any() or not math.isfinite(full):
        return np.empty(0, dtype=np.intp)
    kept = np.flatnonzero(finite)
    threshold, delta, spread = _rule(np.array([full]), values[kept][None, :], values.size)
    return np.asarray(kept[_flags(float(threshold[0]), delta[0], spread[0], values.size)], dtype=np.intp)


def dominated_many(full: ArrayLike, loo: ArrayLike) -> list[NDArray[np.intp]]:
    """:func:`dominated` for c cells at once: ``full`` (c,), ``loo`` (c, n). Rows whose values are
    all finite share one pass of the rule (medians along the rows); any other row goes through
    :func:`dominated`. The same result as c calls of it."""
    full_ = np.asarray(full, dtype=np.float64)
    values = np.asarray(loo, dtype=np.float64)
    out = [np.empty(0, dtype=np.intp) for _ in range(values.shape[0])]
    clean = np.isfinite(values).all(axis=1) & np.isfinite(full_)
    rows = np.flatnonzero(clean)
    if rows.size:
        n = values.shape[1]
        threshold, delta, spread = _rule(full_[rows], values[rows], n)
        for k, row in enumerate(rows):
            out[int(row)] = _flags(float(threshold[k]), delta[k], spread[k], n)
    for row in np.flatnonzero(~clean):
        out[int(row)] = dominated(float(full_[row]), values[row])
    return out
